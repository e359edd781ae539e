"""The circuit breaker inside ProviderActor, driven through ``ask`` with a fake clock: states,
exactly one half-open probe, what counts as a failure, per-model isolation, stats and logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from aurea import errors as e
from aurea.actors.breaker import BreakerState, Outcome
from aurea.actors.provider import (
    Admit,
    GetStats,
    ProviderActor,
    ProviderBook,
    ProviderPermit,
    ProviderStats,
    outcome_of,
)
from aurea.config import BreakerSettings
from aurea.runtime import ActorRef, ActorSystem

pytestmark = pytest.mark.timeout(10)

THRESHOLD = 3
OPEN_S = 30.0


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Idle:
    """A provider the tests never call: the permits are released by hand."""

    name = "p"

    async def aclose(self) -> None:
        pass


class Harness:
    def __init__(self, *, max_concurrency: int = 100) -> None:
        self.clock = Clock()
        self.system = ActorSystem()
        self.book = ProviderBook()
        provider: Any = Idle()
        self.ref: ActorRef[Any] = self.system.spawn(
            "provider:p",
            lambda: ProviderActor(
                provider=provider,
                kind="fake",
                max_concurrency=max_concurrency,
                book=self.book,
                breaker=BreakerSettings(failure_threshold=THRESHOLD, open_timeout_s=OPEN_S),
                clock=self.clock,
                wall_clock=lambda: 1_700_000_000.0 + self.clock.now,
            ),
        )

    async def admit(self, model: str = "m") -> ProviderPermit:
        permit: ProviderPermit = await self.ref.ask(Admit(model=model))
        return permit

    async def attempt(self, exc: BaseException | None, model: str = "m") -> None:
        """One admitted attempt that ends with ``exc`` (None: success)."""
        permit = await self.admit(model)
        try:
            async with permit:
                if exc is not None:
                    raise exc
        except BaseException as raised:
            if raised is not exc:
                raise

    async def stats(self) -> ProviderStats:
        stats: ProviderStats = await self.ref.ask(GetStats())
        return stats

    async def state(self, model: str = "m") -> BreakerState:
        for b in (await self.stats()).breakers:
            if b.model == model:
                return b.state
        return BreakerState.CLOSED


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    async with harness.system:
        yield harness


def fail() -> e.ProviderError:
    return e.ProviderServerError("p: HTTP 500", provider="p", status=500)


async def test_opens_after_threshold_consecutive_failures(h: Harness) -> None:
    for _ in range(THRESHOLD - 1):
        await h.attempt(fail())
    assert await h.state() is BreakerState.CLOSED
    await h.attempt(fail())
    assert await h.state() is BreakerState.OPEN
    with pytest.raises(e.CircuitOpen) as info:
        await h.admit()
    assert info.value.retry_after_s == pytest.approx(OPEN_S)
    h.clock.now += 10
    with pytest.raises(e.CircuitOpen) as info:
        await h.admit()
    assert info.value.retry_after_s == pytest.approx(OPEN_S - 10)
    stats = await h.stats()
    assert stats.requests == THRESHOLD and stats.in_flight == 0  # refusals are not requests


async def test_a_success_resets_the_consecutive_count(h: Harness) -> None:
    for _ in range(THRESHOLD - 1):
        await h.attempt(fail())
    await h.attempt(None)
    for _ in range(THRESHOLD - 1):
        await h.attempt(fail())
    assert await h.state() is BreakerState.CLOSED
    (view,) = (await h.stats()).breakers
    assert view.consecutive_failures == THRESHOLD - 1 and view.times_opened == 0


@pytest.mark.parametrize(
    "exc",
    [
        e.UpstreamRejected("p: HTTP 400: bad", provider="p", status=400),
        e.ContextLengthExceeded("p: too long", provider="p", status=400),
        e.ContentFiltered("p: policy", provider="p", status=400),
        asyncio.CancelledError(),
        e.BudgetExceeded("over", job_id="j", spent_nanos=2, budget_nanos=1),
    ],
    ids=["rejected", "context_length", "content_filter", "cancelled", "guard_refusal"],
)
async def test_rejections_and_cancellations_are_not_failures(
    h: Harness, exc: BaseException
) -> None:
    for _ in range(THRESHOLD * 2):
        await h.attempt(exc)
    assert await h.state() is BreakerState.CLOSED
    stats = await h.stats()
    assert stats.failures == 0 and stats.breakers[0].consecutive_failures == 0


def test_outcome_of_classifies_upstream_rejections_apart() -> None:
    assert outcome_of(None) is Outcome.OK
    assert outcome_of(e.UpstreamRejected("x", provider="p")) is Outcome.REJECTED
    assert outcome_of(e.ContextLengthExceeded("x", provider="p")) is Outcome.REJECTED
    assert outcome_of(e.ProviderRateLimited("x", provider="p")) is Outcome.FAILED
    assert outcome_of(e.ProviderTimeout("x", provider="p")) is Outcome.FAILED
    assert outcome_of(e.ProviderAuthError("x", provider="p")) is Outcome.FAILED
    assert outcome_of(asyncio.CancelledError()) is Outcome.CANCELLED
    assert outcome_of(e.CircuitOpen("x")) is Outcome.CANCELLED


async def open_breaker(h: Harness, model: str = "m") -> None:
    for _ in range(THRESHOLD):
        await h.attempt(fail(), model)
    assert await h.state(model) is BreakerState.OPEN


async def test_half_open_admits_exactly_one_probe(h: Harness) -> None:
    await open_breaker(h)
    h.clock.now += OPEN_S
    assert await h.state() is BreakerState.HALF_OPEN  # shown as due for a probe
    probe = await h.admit()
    results = await asyncio.gather(*(h.admit() for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, e.CircuitOpen) for r in results)
    assert all(0 < r.retry_after_s <= 1.0 for r in results if isinstance(r, e.CircuitOpen))
    async with probe:
        pass
    assert await h.state() is BreakerState.CLOSED
    await h.attempt(None)  # closed: calls flow again
    assert (await h.stats()).breakers[0].times_opened == 1


async def test_failed_probe_opens_again_for_a_full_timeout(h: Harness) -> None:
    await open_breaker(h)
    h.clock.now += OPEN_S + 5
    await h.attempt(fail())  # the probe
    assert await h.state() is BreakerState.OPEN
    with pytest.raises(e.CircuitOpen) as info:
        await h.admit()
    assert info.value.retry_after_s == pytest.approx(OPEN_S)
    h.clock.now += OPEN_S
    await h.attempt(None)  # the next window's probe succeeds
    assert await h.state() is BreakerState.CLOSED
    assert (await h.stats()).breakers[0].times_opened == 2


@pytest.mark.parametrize(
    "exc",
    [asyncio.CancelledError(), e.UpstreamRejected("p: 400", provider="p", status=400)],
    ids=["cancelled", "rejected"],
)
async def test_inconclusive_probe_frees_the_slot_for_another(
    h: Harness, exc: BaseException
) -> None:
    await open_breaker(h)
    h.clock.now += OPEN_S
    await h.attempt(exc)  # the probe says nothing about the provider's health
    assert await h.state() is BreakerState.HALF_OPEN
    await h.attempt(None)  # the next attempt is the probe
    assert await h.state() is BreakerState.CLOSED


async def test_abandoned_probe_permit_frees_the_slot(h: Harness) -> None:
    """A probe whose asker left before receiving the permit must not wedge the breaker."""
    await open_breaker(h)
    h.clock.now += OPEN_S
    for _ in range(600):  # busy the actor so the ask expires before it is answered
        h.ref.tell(GetStats())
    with pytest.raises(e.Unavailable):
        await h.ref.ask(Admit(model="m"), timeout_s=0)
    await h.attempt(None)
    assert await h.state() is BreakerState.CLOSED


async def test_stragglers_admitted_before_opening_do_not_decide(h: Harness) -> None:
    straggler_ok = await h.admit()
    straggler_bad = await h.admit()
    await open_breaker(h)
    async with straggler_ok:
        pass
    assert await h.state() is BreakerState.OPEN  # a late success does not close it
    h.clock.now += OPEN_S
    probe = await h.admit()
    with pytest.raises(e.ProviderServerError):
        async with straggler_bad:
            raise fail()
    assert await h.state() is BreakerState.HALF_OPEN  # a late failure does not re-open it
    async with probe:
        pass
    assert await h.state() is BreakerState.CLOSED


async def test_breakers_are_per_model(h: Harness) -> None:
    await open_breaker(h, "m1")
    await h.attempt(None, "m2")
    with pytest.raises(e.CircuitOpen, match="p/m1"):
        await h.admit("m1")
    assert await h.state("m2") is BreakerState.CLOSED
    names = [b.model for b in (await h.stats()).breakers]
    assert names == ["m1", "m2"]


async def test_open_circuit_refuses_before_the_concurrency_cap() -> None:
    h = Harness(max_concurrency=1)
    async with h.system:
        await open_breaker(h)
        held = await h.admit("other")  # the provider is now at its cap
        with pytest.raises(e.CircuitOpen):
            await h.admit("m")
        h.clock.now += OPEN_S
        with pytest.raises(e.Overloaded):
            await h.admit("m")  # at the cap: not admitted, so not the probe
        async with held:
            pass
        await h.attempt(None, "m")  # the probe
        assert await h.state("m") is BreakerState.CLOSED


async def test_breaker_state_survives_an_actor_restart(h: Harness) -> None:
    await open_breaker(h)
    fresh = ProviderActor(
        provider=Idle(),  # type: ignore[arg-type]
        kind="fake",
        max_concurrency=4,
        book=h.book,
        clock=h.clock,
    )
    assert fresh._book.breakers["m"].state is BreakerState.OPEN


async def test_transitions_are_logged_with_the_last_transition_time(h: Harness) -> None:
    with capture_logs() as logs:
        await open_breaker(h)
        opened_at = h.clock.now
        h.clock.now += OPEN_S
        await h.attempt(None)
        await h.stats()  # the release was posted: let the actor handle it
    events = [(x["event"], x["model"]) for x in logs if x["event"].startswith("breaker_")]
    assert events == [("breaker_opened", "m"), ("breaker_half_open", "m"), ("breaker_closed", "m")]
    opened = next(x for x in logs if x["event"] == "breaker_opened")
    assert opened["provider"] == "p" and opened["consecutive_failures"] == THRESHOLD
    (view,) = (await h.stats()).breakers
    assert view.last_transition_unix_s == 1_700_000_000.0 + opened_at + OPEN_S


async def test_transitions_are_told_to_the_listener() -> None:
    told: list[tuple[str, str, str]] = []

    def listener(provider: str, model: str, state: BreakerState) -> None:
        told.append((provider, model, str(state)))
        raise RuntimeError("a broken listener must not break the actor")

    h = Harness()
    provider: Any = Idle()
    h.ref = h.system.spawn(
        "provider:q",
        lambda: ProviderActor(
            provider=provider,
            kind="fake",
            max_concurrency=10,
            breaker=BreakerSettings(failure_threshold=THRESHOLD, open_timeout_s=OPEN_S),
            on_breaker=listener,
            clock=h.clock,
        ),
    )
    async with h.system:
        await open_breaker(h)
        h.clock.now += OPEN_S
        await h.attempt(None)
        assert await h.state() is BreakerState.CLOSED
    assert told == [("p", "m", "open"), ("p", "m", "half_open"), ("p", "m", "closed")]
