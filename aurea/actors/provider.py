"""The ProviderActor: one per configured provider. It owns the adapter (and so its HTTP pool),
admits each attempt against its models' circuit breakers and the provider's concurrency cap by
granting a permit, and keeps the provider's stats.

The caller runs the upstream call in its own task with the adapter the permit names, so no
running resource ever crosses the mailbox; the permit's release (``async with``) reports the
attempt's outcome. Stats and breakers live in a ``ProviderBook`` made by the composition root, so
they survive a restart of the actor.

An open breaker refuses at once with ``CircuitOpen``, which the classification table maps to
*next candidate*: that is how routing skips an open circuit (no extra hop: every attempt asks
this actor anyway).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, assert_never

import structlog

from aurea.actors.breaker import Breaker, BreakerView, OnTransition, Outcome
from aurea.config import BreakerSettings
from aurea.errors import (
    AureaError,
    Overloaded,
    ProviderError,
    ProviderServerError,
    UpstreamRejected,
)
from aurea.providers._base import Provider, Usage
from aurea.runtime import Actor, ActorRef, Ask

if TYPE_CHECKING:
    from aurea.inference.calls import CallRecord

log = structlog.get_logger("aurea.provider")


def outcome_of(exc: BaseException | None) -> Outcome:
    """A request the upstream refused as bad (``UpstreamRejected``: context length, content
    policy, other 4xx) is the caller's doing, so it is not a failure of the provider."""
    if exc is None:
        return Outcome.OK
    if isinstance(exc, UpstreamRejected):
        return Outcome.REJECTED
    if isinstance(exc, ProviderError):
        return Outcome.FAILED
    return Outcome.CANCELLED


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderStats:
    name: str
    kind: str
    requests: int
    successes: int
    failures: int
    cancelled: int
    rejected: int  # requests the upstream refused as bad (not failures)
    input_tokens: int
    output_tokens: int
    cost_nanos: int
    total_latency_s: float  # of finished (succeeded or failed) attempts only
    in_flight: int
    last_request_unix_s: float | None  # wall clock, for display only
    last_ok: bool | None  # the outcome of the latest finished call; None before any
    breakers: tuple[BreakerView, ...] = ()  # per model that has had an attempt, by name


_record_var: ContextVar[CallRecord | None] | None = None


def _attempted_model() -> str:
    """The model the current call is attempting, from the call's record (the attempt loop sets
    ``record.model`` before each candidate's attempts): the default of ``Admit.model``, so
    breakers are per model even where an asker does not name it."""
    global _record_var
    if _record_var is None:
        # Imported late: aurea.inference imports this module.
        from aurea.inference.calls import current_record

        _record_var = current_record
    record = _record_var.get()
    return record.model if record is not None else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Admit(Ask["ProviderPermit"]):
    """Ask for a slot for one attempt on ``model``; refused with ``CircuitOpen`` while that
    model's breaker is open and with ``Overloaded`` at the concurrency cap."""

    request_id: str = ""
    model: str = field(default_factory=_attempted_model)  # "" : the provider as a whole


@dataclass(frozen=True, slots=True, kw_only=True)
class Released:
    """Posted by a permit when its attempt ends (never refused: it settles a grant)."""

    outcome: Outcome
    usage: Usage
    cost_nanos: int
    latency_s: float
    model: str = ""
    probe: bool = False  # the attempt was its breaker's half-open trial


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStats(Ask[ProviderStats]):
    pass


ProviderMsg = Admit | Released | GetStats


class ProviderBook:
    """A provider's counters. Made once per provider by the composition root and handed to each
    actor incarnation, so a restart keeps the stats and the count of permits still out."""

    __slots__ = (
        "breakers",
        "cancelled",
        "cost_nanos",
        "failures",
        "in_flight",
        "input_tokens",
        "last_ok",
        "last_request_unix_s",
        "output_tokens",
        "rejected",
        "requests",
        "successes",
        "total_latency_s",
    )

    def __init__(self) -> None:
        self.requests = self.successes = self.failures = self.cancelled = self.rejected = 0
        self.input_tokens = self.output_tokens = self.cost_nanos = 0
        self.total_latency_s = 0.0
        self.in_flight = 0
        self.last_request_unix_s: float | None = None
        self.last_ok: bool | None = None
        self.breakers: dict[str, Breaker] = {}  # by model name


class ProviderPermit:
    """One admitted attempt: names the adapter to call, observes usage, and reports the outcome
    when released. Usable once, as ``async with permit:``; ``abandon()`` releases a permit whose
    asker left before receiving it."""

    __slots__ = (
        "_clock",
        "_cost",
        "_model",
        "_probe",
        "_ref",
        "_released",
        "_t0",
        "_usage",
        "provider",
    )

    def __init__(
        self,
        ref: ActorRef[ProviderMsg],
        provider: Provider,
        clock: Callable[[], float],
        *,
        model: str = "",
        probe: bool = False,
    ) -> None:
        self._ref = ref
        self.provider = provider
        self._clock = clock
        self._model = model
        self._probe = probe
        self._t0 = clock()
        self._usage = Usage()
        self._cost = 0
        self._released = False

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        self._usage = usage
        self._cost = cost_nanos

    def _released_msg(self, exc: BaseException | None) -> Released | None:
        if self._released:
            return None
        self._released = True
        return Released(
            outcome=outcome_of(exc),
            usage=self._usage,
            cost_nanos=self._cost,
            latency_s=self._clock() - self._t0,
            model=self._model,
            probe=self._probe,
        )

    def release(self, exc: BaseException | None) -> None:
        msg = self._released_msg(exc)
        if msg is not None:
            self._ref.post(msg)

    def abandon(self) -> Released | None:
        """The asker left before receiving this permit: the message that gives the slot back
        (the runtime has the actor handle it before its next message)."""
        return self._released_msg(asyncio.CancelledError())

    async def __aenter__(self) -> ProviderPermit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release(exc)


class ProviderActor(Actor[ProviderMsg]):
    def __init__(
        self,
        *,
        provider: Provider,
        kind: str,
        max_concurrency: int,
        book: ProviderBook | None = None,
        breaker: BreakerSettings | None = None,
        on_breaker: OnTransition | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.kind = kind
        self.max_concurrency = max_concurrency
        self._book = book if book is not None else ProviderBook()
        self._breaker = breaker if breaker is not None else BreakerSettings()
        self._on_breaker = on_breaker
        self._clock = clock
        self._wall = wall_clock

    async def on_start(self) -> None:
        # Providers with a process to run (the local model) start now, in the background, so
        # the first call does not pay for loading a model; calls before it is ready wait.
        start = getattr(self.provider, "start", None)
        if start is not None:
            # A child task, not an attempt: warming up takes no concurrency slot.
            self.spawn_child(self._warm_up(start), name=f"start:{self.provider.name}")

    async def _warm_up(self, start: Callable[[], Awaitable[None]]) -> None:
        try:
            await start()
        except Exception as exc:  # the next call retries the start and reports the error
            log.warning("provider_start_failed", provider=self.provider.name, error=str(exc))

    async def on_stop(self) -> None:
        await self.provider.aclose()

    async def receive(self, msg: ProviderMsg) -> Any:
        b = self._book
        match msg:
            case Admit(model=model):
                breaker = b.breakers.get(model)
                if breaker is None:
                    breaker = b.breakers[model] = Breaker(
                        provider=self.provider.name,
                        model=model,
                        failure_threshold=self._breaker.failure_threshold,
                        open_timeout_s=self._breaker.open_timeout_s,
                        on_transition=self._on_breaker,
                    )
                # First, so an open circuit is what the caller hears (with the time until a
                # probe), not a saturation it did not cause.
                probe = breaker.check(self._clock())
                # The adapter's HTTP layer has a semaphore of the same size that makes callers
                # wait; this check comes first and refuses instead, so a saturated provider
                # answers at once and the attempt loop moves to the next candidate rather than
                # queueing callers without bound.
                if b.in_flight >= self.max_concurrency:
                    raise Overloaded(
                        f"provider {self.provider.name} is at its concurrency cap "
                        f"({self.max_concurrency} calls)",
                        retry_after_s=0.1,
                    )
                wall = self._wall()
                breaker.start(probe, wall)
                b.in_flight += 1
                b.requests += 1
                b.last_request_unix_s = wall
                return ProviderPermit(
                    self.ref, self.provider, self._clock, model=model, probe=probe
                )
            case Released():
                b.in_flight -= 1
                released = b.breakers.get(msg.model)
                if released is not None:
                    released.record(msg.outcome, msg.probe, self._clock(), self._wall())
                match msg.outcome:
                    case Outcome.CANCELLED:
                        b.cancelled += 1
                    case Outcome.REJECTED:
                        # The upstream answered (so it is up) but refused the request itself.
                        b.rejected += 1
                    case Outcome.OK:
                        b.successes += 1
                        b.last_ok = True
                        b.total_latency_s += msg.latency_s
                    case Outcome.FAILED:
                        b.failures += 1
                        b.last_ok = False
                        b.total_latency_s += msg.latency_s
                    case _:
                        assert_never(msg.outcome)
                b.input_tokens += msg.usage.input_tokens
                b.output_tokens += msg.usage.output_tokens
                b.cost_nanos += msg.cost_nanos
                return None
            case GetStats():
                return ProviderStats(
                    name=self.provider.name,
                    kind=self.kind,
                    requests=b.requests,
                    successes=b.successes,
                    failures=b.failures,
                    cancelled=b.cancelled,
                    rejected=b.rejected,
                    input_tokens=b.input_tokens,
                    output_tokens=b.output_tokens,
                    cost_nanos=b.cost_nanos,
                    total_latency_s=b.total_latency_s,
                    in_flight=b.in_flight,
                    last_request_unix_s=b.last_request_unix_s,
                    last_ok=b.last_ok,
                    breakers=tuple(b.breakers[m].view(self._clock()) for m in sorted(b.breakers)),
                )
            case _:
                assert_never(msg)


def adapter_failure(provider: str, exc: BaseException) -> AureaError:
    """The one mapping of an adapter's unexpected exception (a bug, or a foreign exception that
    escaped its boundary) to an error: an ``AureaError`` passes as is, anything else becomes a
    retryable server error that names the provider and the exception's type."""
    if isinstance(exc, AureaError):
        return exc
    err = ProviderServerError(
        f"provider {provider} failed unexpectedly: {type(exc).__name__}", provider=provider
    )
    err.__cause__ = exc
    return err
