"""A circuit breaker for one model of one provider: the state machine the ProviderActor runs on
every admission and every released attempt (no locks: only that actor touches it).

closed → open after ``failure_threshold`` consecutive failed attempts → after ``open_timeout_s``
one probe is let through (half-open; every other attempt is refused while it is out) → closed
when the probe succeeds, open again when it fails. Only upstream failures count: a cancelled
attempt or a request the upstream rejected (a 4xx the request caused) says nothing about the
provider's health. Outcomes of attempts admitted before the breaker opened are ignored once it
is open, so a straggler neither closes nor re-opens it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from aurea.errors import CircuitOpen

__all__ = ["Breaker", "BreakerState", "BreakerView", "OnTransition", "Outcome"]

log = structlog.get_logger("aurea.provider")

# The retry hint while a probe is out: its outcome decides, and a call rarely takes longer.
_PROBE_OUT_RETRY_S = 1.0


class Outcome(enum.StrEnum):
    """How one attempt through a provider ended, for its stats and its breaker."""

    OK = "ok"
    FAILED = "failed"  # the upstream failed (any ProviderError but a rejection)
    REJECTED = "rejected"  # the upstream refused the request itself (4xx): not its fault
    CANCELLED = "cancelled"  # the caller went away or Aurea ended it: not the provider's fault


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerView:
    """A breaker as stats show it. ``state`` is the effective one: an open breaker whose
    timeout has passed shows HALF_OPEN (the next attempt is its probe)."""

    model: str
    state: BreakerState
    consecutive_failures: int
    times_opened: int
    last_transition_unix_s: float | None  # wall clock, for display; None: never changed
    half_open_in_s: float | None  # OPEN only: seconds until a probe is let through


# (provider, model, state entered): told on every transition, after the log line (metrics, events).
OnTransition = Callable[[str, str, BreakerState], None]


class Breaker:
    """One model's breaker. ``check`` before admitting (raises ``CircuitOpen``), ``start`` once
    the attempt is admitted, ``record`` when it ends. ``now`` is the actor's monotonic clock,
    ``wall`` the wall clock (only to show when the last transition happened)."""

    __slots__ = (
        "failures",
        "last_transition_unix_s",
        "model",
        "on_transition",
        "open_timeout_s",
        "open_until",
        "probe_out",
        "provider",
        "state",
        "threshold",
        "times_opened",
    )

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        failure_threshold: int,
        open_timeout_s: float,
        on_transition: OnTransition | None = None,
    ) -> None:
        self.on_transition = on_transition
        self.provider = provider
        self.model = model
        self.threshold = failure_threshold
        self.open_timeout_s = open_timeout_s
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.times_opened = 0
        self.open_until = 0.0
        self.probe_out = False
        self.last_transition_unix_s: float | None = None

    def check(self, now: float) -> bool:
        """Whether an attempt may go now: False for a closed breaker, True when it would be
        the half-open probe; raises ``CircuitOpen`` (with the time until a probe) otherwise.
        Changes nothing: ``start`` commits the admission."""
        if self.state is BreakerState.CLOSED:
            return False
        if self.state is BreakerState.OPEN:
            if now < self.open_until:
                wait = self.open_until - now
                raise CircuitOpen(
                    f"the circuit breaker of {self._name()} is open (its calls kept failing); "
                    f"a trial call goes in {wait:.3g} s",
                    retry_after_s=wait,
                )
            return True
        if self.probe_out:
            raise CircuitOpen(
                f"the circuit breaker of {self._name()} is half-open and its one trial call "
                "is in flight",
                retry_after_s=min(_PROBE_OUT_RETRY_S, self.open_timeout_s),
            )
        return True

    def start(self, probe: bool, wall: float) -> None:
        """The attempt ``check`` allowed was admitted: mark the probe out."""
        if probe:
            if self.state is BreakerState.OPEN:
                self._move(BreakerState.HALF_OPEN, wall)
            self.probe_out = True

    def record(self, outcome: Outcome, probe: bool, now: float, wall: float) -> None:
        """An admitted attempt ended (``probe``: it was the half-open trial)."""
        if probe:
            self.probe_out = False
            if self.state is not BreakerState.HALF_OPEN:
                return  # reconfigured or reset meanwhile: nothing to decide
            if outcome is Outcome.OK:
                self.failures = 0
                self._move(BreakerState.CLOSED, wall)
            elif outcome is Outcome.FAILED:
                self._open(now, wall)
            # Cancelled or rejected: no verdict; the next attempt becomes the probe.
            return
        if self.state is not BreakerState.CLOSED:
            return  # a straggler admitted before the breaker opened
        if outcome is Outcome.OK:
            self.failures = 0
        elif outcome is Outcome.FAILED:
            self.failures += 1
            if self.failures >= self.threshold:
                self._open(now, wall)

    def view(self, now: float) -> BreakerView:
        state, wait = self.state, None
        if state is BreakerState.OPEN:
            if now >= self.open_until:
                state = BreakerState.HALF_OPEN
            else:
                wait = self.open_until - now
        return BreakerView(
            model=self.model,
            state=state,
            consecutive_failures=self.failures,
            times_opened=self.times_opened,
            last_transition_unix_s=self.last_transition_unix_s,
            half_open_in_s=wait,
        )

    def _open(self, now: float, wall: float) -> None:
        self.open_until = now + self.open_timeout_s
        self.times_opened += 1
        self._move(BreakerState.OPEN, wall)

    def _move(self, state: BreakerState, wall: float) -> None:
        self.state = state
        self.last_transition_unix_s = wall
        fields: dict[str, object] = {"provider": self.provider, "model": self.model}
        if state is BreakerState.OPEN:
            fields.update(consecutive_failures=self.failures, open_s=self.open_timeout_s)
        event = {
            BreakerState.OPEN: "breaker_opened",
            BreakerState.HALF_OPEN: "breaker_half_open",
            BreakerState.CLOSED: "breaker_closed",
        }[state]
        if state is BreakerState.CLOSED:
            log.info(event, **fields)
        else:
            log.warning(event, **fields)
        if self.on_transition is not None:
            try:
                self.on_transition(self.provider, self.model, state)
            except Exception as exc:  # a listener must not break the actor that decides
                log.error("breaker_listener_failed", error=repr(exc))

    def _name(self) -> str:
        return f"{self.provider}/{self.model}" if self.model else self.provider
