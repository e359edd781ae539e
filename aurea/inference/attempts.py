"""The one attempt loop, shared by stream, unary and embed calls.

For each candidate in order, and each retry of it: enter every guard's permit and the provider's
own permit on one ``AsyncExitStack``, run the call's body with the adapter the provider permit
names, and on error let the classification table decide: retry this candidate (backoff with
jitter, Retry-After honoured up to ``retry.backoff_max_s``, never past the call's deadline), move
to the next candidate, or fail the call. Permits are released in reverse order on every exit
path. After a context-length rejection only candidates with a larger known context window are
tried. A stream's ``Failover`` hooks decide what happens once output has reached the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

import structlog

from aurea.actors.provider import Admit, ProviderMsg, ProviderPermit
from aurea.actors.router import Candidate
from aurea.config import ModelSpec, RetrySettings
from aurea.errors import AureaError, ContextLengthExceeded
from aurea.inference.calls import AttemptRecord, CallRecord, FallbackEvent
from aurea.inference.classify import Action, backoff_s, classify, final_error
from aurea.inference.guards import NOOP_PERMIT, AttemptInfo, Guard, Permit
from aurea.providers._base import Provider, Usage
from aurea.runtime import ActorRef

log = structlog.get_logger("aurea.inference")
T = TypeVar("T")


class Attempt:
    """One attempt as its body sees it: the adapter to call, and the permits to tell about
    usage. ``committed`` is set once output has reached the caller: from then on an error is
    not retried as if nothing happened (only a ``Failover`` may move the answer elsewhere);
    ``prefilled`` when the attempt continues a partial answer sent as a prefill."""

    __slots__ = ("committed", "number", "permits", "prefilled", "provider")

    def __init__(self, number: int) -> None:
        self.number = number
        self.permits: list[Permit | ProviderPermit] = []
        self.provider: Provider | None = None
        self.committed = False
        self.prefilled = False

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        for p in self.permits:
            p.observe(usage, cost_nanos)

    @property
    def adapter(self) -> Provider:
        assert self.provider is not None, "the body runs only after the provider admitted it"
        return self.provider


Body = Callable[[Candidate, Attempt], Awaitable[T]]
OnFallback = Callable[[FallbackEvent], Awaitable[None]]
_UNKNOWN_WINDOW = 1 << 62  # a model whose window is unknown refused: no window is known larger


class Failover(Protocol):
    """What a body whose output may already have reached the caller adds to the loop."""

    def accepts(self, cand: Candidate) -> bool:
        """Whether ``cand`` may serve next, given what the caller already holds."""
        ...

    async def on_error(
        self, err: AureaError, action: Action, attempt: Attempt, cand: Candidate
    ) -> Action:
        """The action for ``err`` (the table's is ``action``)."""
        ...

    def final(self, err: AureaError) -> AureaError:
        """The error the call ends with, given the one the loop would end it with."""
        ...


def _fits(floor: int, model: ModelSpec) -> bool:
    """After context-length rejections: is ``model``'s window known and larger than ``floor``
    (the largest window that was too small)?"""
    return floor < 0 or (model.context_window > 0 and model.context_window > floor)


class AttemptLoop:
    """Holds the guards, the provider actors and the retry settings; no per-call state."""

    def __init__(
        self,
        *,
        guards: Sequence[Guard],
        providers: Mapping[str, ActorRef[ProviderMsg]],
        retry: RetrySettings,
        ask_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._guards = tuple(guards)
        self._providers = providers
        self._retry = retry
        self._timeout = ask_timeout_s
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter

    async def run(
        self,
        info: AttemptInfo,
        candidates: Sequence[Candidate],
        body: Body[T],
        record: CallRecord,
        *,
        deadline: float,
        on_fallback: OnFallback | None = None,
        failover: Failover | None = None,
    ) -> T:
        """The body's result from the first attempt that succeeds; else the call's error."""
        clock, retry_cfg = self._clock, self._retry
        failed: list[tuple[str, AureaError]] = []
        number = 0
        floor = -1  # the largest context window that was too small (-1: none was)
        left: tuple[ModelSpec, AureaError] | None = None  # the model last left, and why
        for cand in candidates:
            model = cand.model
            if left is not None:
                if not _fits(floor, model) or (failover is not None and not failover.accepts(cand)):
                    continue
                record.fallbacks += 1
                if on_fallback is not None:
                    await on_fallback(
                        FallbackEvent(
                            from_model=left[0].name,
                            to_model=model.name,
                            to_provider=model.provider,
                            cause=left[1].reason,
                            message=left[1].message,
                            attempt=number + 1,
                        )
                    )
            record.model, record.provider = model.name, model.provider
            retries = 0
            while True:
                number += 1
                attempt = Attempt(number)
                t0 = clock()
                try:
                    async with contextlib.AsyncExitStack() as stack:
                        for guard in self._guards:
                            permit = await guard.admit(info, cand)
                            if permit is NOOP_PERMIT:
                                # Nothing to enter, observe or release (a guard that decided
                                # at admission): skipped, not stacked, on every attempt.
                                continue
                            await stack.enter_async_context(permit)
                            attempt.permits.append(permit)
                        ref = self._providers[model.provider]
                        pp = await ref.ask(
                            Admit(request_id=info.request_id, model=model.name),
                            timeout_s=self._timeout,
                        )
                        await stack.enter_async_context(pp)
                        attempt.permits.append(pp)
                        attempt.provider = pp.provider
                        value = await body(cand, attempt)
                except AureaError as exc:
                    err = exc
                except BaseException as exc:
                    # Cancellation, or a bug: the call ends here; the edge reports it.
                    reason = "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "BUG"
                    record.attempts.append(
                        AttemptRecord(
                            model=model.name,
                            provider=model.provider,
                            error=reason,
                            latency_s=clock() - t0,
                        )
                    )
                    raise
                else:
                    record.attempts.append(
                        AttemptRecord(
                            model=model.name, provider=model.provider, latency_s=clock() - t0
                        )
                    )
                    return value
                record.attempts.append(
                    AttemptRecord(
                        model=model.name,
                        provider=model.provider,
                        error=err.reason,
                        latency_s=clock() - t0,
                    )
                )
                action = classify(err)
                if failover is not None:
                    action = await failover.on_error(err, action, attempt, cand)
                elif attempt.committed:
                    action = Action.FAIL
                if action is Action.FAIL:
                    raise err if failover is None else failover.final(err)
                if action is Action.AGAIN:
                    continue
                if action is Action.RETRY and retries < retry_cfg.max_retries:
                    retries += 1
                    delay = backoff_s(
                        retries,
                        err,
                        base_s=retry_cfg.backoff_base_s,
                        max_s=retry_cfg.backoff_max_s,
                        jitter=self._jitter(),
                    )
                    # A long Retry-After, or one past the call's deadline: try elsewhere, or
                    # let the caller decide (the status carries RetryInfo), not hold the call.
                    if delay <= retry_cfg.backoff_max_s and clock() + delay < deadline:
                        log.info(
                            "upstream_retry",
                            model=model.name,
                            attempt=number,
                            error=err.reason,
                            delay_s=round(delay, 3),
                        )
                        await self._sleep(delay)
                        continue
                failed.append((model.name, err))
                left = (model, err)
                if isinstance(err, ContextLengthExceeded) and not attempt.prefilled:
                    floor = max(floor, model.context_window or _UNKNOWN_WINDOW)
                break
        err = final_error(failed)
        raise err if failover is None else failover.final(err)
