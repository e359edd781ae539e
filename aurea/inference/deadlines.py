"""The time limits of one attempt: each model's connect, time-to-first-token, stall and total
limits (its provider's where the catalog sets none), and the watchdog that turns a silent or
stalled stream into an error the attempt loop moves on from.

Why the core and not the adapters enforces time to first token and stalls: only the core sees
*tokens* for every kind of adapter (an HTTP upstream can send headers, pings and empty chunks
for ever without a token; a local process or a polled endpoint has no bytes to time at all), and
only the core knows whether output has begun, which decides between moving on and mid-stream
failover. The adapters still get the same numbers (``ProviderRequest.timeouts``) for what only
they can see: the connect and the bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aurea.config import ModelSpec
from aurea.errors import ProviderSilent, ProviderStalled, ProviderTimeout
from aurea.providers._base import Timeouts

__all__ = ["Deadlines", "Watchdog"]

_DEFAULT = Timeouts()
_RECHECK_S = 0.001  # a look again while the task is busy elsewhere


class Deadlines:
    """Each model's limits, resolved against its provider's ``Timeouts`` (cached per model)."""

    __slots__ = ("_cache", "_providers")

    def __init__(self, providers: Mapping[str, Timeouts] | None = None) -> None:
        self._providers = dict(providers or {})
        self._cache: dict[str, tuple[ModelSpec, Timeouts]] = {}

    def of(self, model: ModelSpec) -> Timeouts:
        """``first_byte_s`` is the model's time-to-first-token limit, ``idle_s`` its stall limit."""
        hit = self._cache.get(model.name)
        if hit is not None and hit[0] is model:
            return hit[1]
        base = self._providers.get(model.provider, _DEFAULT)
        limits = Timeouts(
            connect_s=model.connect_timeout_s or base.connect_s,
            first_byte_s=model.ttft_timeout_s or base.first_byte_s,
            idle_s=model.stall_timeout_s or base.idle_s,
            total_s=model.total_timeout_s or base.total_s,
        )
        self._cache[model.name] = (model, limits)
        return limits


class Watchdog:
    """Silence limits of one streaming attempt, run in the caller's task without a timer per
    chunk: one timer that, when it fires, compares the clock with the limit in force and either
    cancels the task (as ``asyncio.timeout`` does) or re-arms itself.

    Silence counts only while the body waits on the upstream (``waiting``, with ``since`` the
    start of that wait), so a slow client's back-pressure is never taken for a stalled upstream.
    Until the first token (``first``) the time-to-first-token limit applies, counted from the
    attempt's start; then the stall limit; the attempt's total limit throughout.
    """

    __slots__ = (
        "_base",
        "_end",
        "_fired",
        "_handle",
        "_limits",
        "_loop",
        "_provider",
        "_task",
        "_ttft_at",
        "first",
        "since",
        "waiting",
    )

    def __init__(self, limits: Timeouts, provider: str) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None, "a watchdog guards the task it is created in"
        now = loop.time()
        self._loop = loop
        self._task = task
        self._base = task.cancelling()
        self._limits = limits
        self._provider = provider
        self._ttft_at = now + limits.first_byte_s
        self._end = now + limits.total_s
        self._fired = ""
        self.first = True
        self.since = now
        self.waiting = False
        self._handle = loop.call_at(min(self._ttft_at, self._end), self._check)

    def _due(self) -> tuple[float, str]:
        at, kind = (
            (self._ttft_at, "ttft") if self.first else (self.since + self._limits.idle_s, "stall")
        )
        return (at, kind) if at <= self._end else (self._end, "total")

    def _check(self) -> None:
        now = self._loop.time()
        due, kind = self._due()
        if self.waiting:
            if now >= due:
                self._fired = kind
                self._task.cancel()
                return
            at = due
        else:
            # Busy writing to the client: the soonest silence can run out is one stall limit
            # after the next wait begins.
            stall = 0.0 if self.first else self._limits.idle_s
            at = max(min(now + stall, self._end), now + _RECHECK_S)
        self._handle = self._loop.call_at(at, self._check)

    def expired(self) -> ProviderTimeout | None:
        """After a ``CancelledError`` from the upstream: the error for the limit that ran out,
        when this watchdog's cancel caused it and nobody else cancelled the task; else None."""
        if not self._fired:
            return None
        kind, self._fired = self._fired, ""
        if self._task.uncancel() > self._base:
            return None  # cancelled by someone else too (the caller, the call's deadline)
        p, lim = self._provider, self._limits
        if kind == "ttft":
            return ProviderSilent(
                f"{p}: no first token within {lim.first_byte_s:g} s (ttft_timeout_s)", provider=p
            )
        if kind == "stall":
            return ProviderStalled(
                f"{p}: the stream went silent for {lim.idle_s:g} s (stall_timeout_s)", provider=p
            )
        return ProviderTimeout(
            f"{p}: the attempt did not finish within {lim.total_s:g} s (total_timeout_s)",
            provider=p,
        )

    def close(self) -> None:
        self._handle.cancel()
        if self._fired:  # fired, but its cancel never surfaced: do not leave it counted
            self._fired = ""
            self._task.uncancel()
