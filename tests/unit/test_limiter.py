"""The rate-limiter guard over the in-memory store, with a fake wall clock and a fake sleep: RPM
and TPM admissions per window, estimates corrected by usage, refunds for attempts that never
reached the upstream, calls in flight, the short wait on the last candidate, upstream holds,
and the limits table (defaults, overrides, validation)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aurea import errors as e
from aurea.actors.router import Candidate
from aurea.config import LimitsSettings, build_settings
from aurea.inference.calls import CallKind
from aurea.inference.guards import AttemptInfo
from aurea.limits import LimiterGuard, LimiterPermit, LimitsTable
from aurea.providers._base import Usage
from aurea.providers._retry import RateHint, report_rate_headers
from aurea.stores.memory.limiter import MemoryLimiterStore

pytestmark = pytest.mark.timeout(10)


class Clocks:
    """A wall clock and a monotonic clock that move together, only when told (or slept)."""

    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 500.0
        self.slept: list[float] = []

    def advance(self, s: float) -> None:
        self.wall += s
        self.mono += s

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.advance(s)


def settings(**models: dict[str, Any]) -> Any:
    raw = {name: {"provider": "simulated", **m} for name, m in models.items()}
    return build_settings({"models": raw})


class Rig:
    def __init__(self, *, max_wait_s: float = 0.0, default_rpm: int = 0, **models: Any) -> None:
        s = settings(**models)
        self.models = s.models
        self.clocks = Clocks()
        self.store = MemoryLimiterStore()
        self.table = LimitsTable(models=s.models, settings=LimitsSettings(default_rpm=default_rpm))
        self.guard = LimiterGuard(
            table=self.table,
            store=self.store,
            max_wait_s=max_wait_s,
            hold_max_s=3600.0,
            wall_clock=lambda: self.clocks.wall,
            clock=lambda: self.clocks.mono,
            sleep=self.clocks.sleep,
        )

    def cand(self, name: str) -> Candidate:
        return Candidate(model=self.models[name], reason="test")

    def info(self, *, last: str = "", **kw: Any) -> AttemptInfo:
        cands = (self.cand(last),) if last else ()
        return AttemptInfo(
            request_id="r", kind=kw.pop("kind", CallKind.UNARY), candidates=cands, **kw
        )

    async def admit(self, name: str, **kw: Any) -> LimiterPermit:
        return await self.guard.admit(self.info(**kw), self.cand(name))

    async def run(self, name: str, usage: Usage | None = None, exc: Any = None, **kw: Any) -> None:
        """One attempt: admitted, entered, usage observed, ended with ``exc``."""
        permit = await self.admit(name, **kw)
        try:
            async with permit:
                if usage is not None:
                    permit.observe(usage, 0)
                if exc is not None:
                    raise exc
        except BaseException as raised:
            if raised is not exc:
                raise

    async def count_admitted(self, name: str, n: int, **kw: Any) -> int:
        ok = 0
        for _ in range(n):
            try:
                await self.run(name, **kw)
            except e.RateLimited:
                continue
            ok += 1
        return ok


# -- requests per minute ---------------------------------------------------------------------


async def test_rpm_admits_a_minutes_worth_then_refills_continuously() -> None:
    rig = Rig(m={"rpm": 60})
    assert await rig.count_admitted("m", 100) == 60
    with pytest.raises(e.RateLimited) as info:
        await rig.admit("m")
    err = info.value
    assert (err.model, err.limit) == ("m", "rpm")
    assert err.retry_after_s == pytest.approx(1.0)
    assert "rpm limit (60 requests per minute)" in err.message
    rig.clocks.advance(30)
    assert await rig.count_admitted("m", 100) == 30


async def test_limits_are_per_model_and_default_from_config() -> None:
    rig = Rig(default_rpm=5, a={}, b={"rpm": 2})
    assert await rig.count_admitted("a", 10) == 5
    assert await rig.count_admitted("b", 10) == 2


async def test_refused_attempts_take_nothing() -> None:
    rig = Rig(m={"rpm": 3})
    assert await rig.count_admitted("m", 3) == 3
    for _ in range(50):
        with pytest.raises(e.RateLimited):
            await rig.admit("m")
    rig.clocks.advance(20)  # one request's worth of refill
    assert await rig.count_admitted("m", 5) == 1


@pytest.mark.parametrize(
    "exc",
    [
        e.CircuitOpen("open", retry_after_s=3),
        e.Overloaded("cap"),
        e.BudgetExceeded("over", job_id="j", spent_nanos=1, budget_nanos=0),
    ],
    ids=["breaker", "provider_cap", "later_guard"],
)
async def test_attempts_refused_after_admission_are_refunded(exc: e.AureaError) -> None:
    rig = Rig(m={"rpm": 2, "tpm": 1000})
    for _ in range(20):
        await rig.run("m", exc=exc, max_tokens=400)
    assert await rig.count_admitted("m", 5, max_tokens=400) == 2


async def test_an_upstream_failure_keeps_the_request_but_not_the_tokens() -> None:
    rig = Rig(m={"rpm": 3, "tpm": 1000})
    await rig.run("m", exc=e.ProviderServerError("500", provider="p"), max_tokens=500)
    await rig.run("m", exc=e.ProviderServerError("500", provider="p"), max_tokens=500)
    # Both requests count; none of their 1000 estimated tokens does.
    assert await rig.count_admitted("m", 5, max_tokens=900) == 1


async def test_cancelled_attempt_keeps_its_request() -> None:
    rig = Rig(m={"rpm": 2})
    await rig.run("m", exc=asyncio.CancelledError())
    assert await rig.count_admitted("m", 5) == 1


# -- tokens per minute -----------------------------------------------------------------------


async def test_tpm_admits_from_the_estimate_input_plus_max_tokens() -> None:
    rig = Rig(m={"tpm": 1000, "default_max_tokens": 100})
    held = [await rig.admit("m", input_tokens=50, max_tokens=200) for _ in range(4)]
    with pytest.raises(e.RateLimited) as info:
        await rig.admit("m", input_tokens=50, max_tokens=200)  # 4 x 250 = 1000 taken
    assert info.value.limit == "tpm" and "estimated 250" in info.value.message
    del held
    rig2 = Rig(m={"tpm": 1000, "default_max_tokens": 100})
    # max_tokens unset: the model's default_max_tokens bounds the output.
    assert len([await rig2.admit("m", input_tokens=25) for _ in range(8)]) == 8
    with pytest.raises(e.RateLimited):
        await rig2.admit("m", input_tokens=25)


async def test_tokens_are_corrected_by_actual_usage() -> None:
    rig = Rig(m={"tpm": 1000})
    await rig.run("m", Usage(input_tokens=10, output_tokens=40), max_tokens=900)
    # 950 of 1000 are free again: the estimate of 900 became 50.
    await rig.run("m", Usage(input_tokens=10, output_tokens=40), max_tokens=900)
    with pytest.raises(e.RateLimited):
        await rig.admit("m", max_tokens=901)


async def test_usage_beyond_the_estimate_is_charged_after_the_fact() -> None:
    rig = Rig(m={"tpm": 1000})
    await rig.run("m", Usage(input_tokens=700, output_tokens=100), max_tokens=100)
    # 800 used although 100 were estimated: 200 are left, not 900.
    with pytest.raises(e.RateLimited):
        await rig.admit("m", max_tokens=201)
    await rig.run("m", max_tokens=200)


async def test_a_call_larger_than_a_minute_of_tokens_goes_when_the_bucket_is_full() -> None:
    rig = Rig(m={"tpm": 100})
    await rig.run("m", Usage(input_tokens=10, output_tokens=290), max_tokens=300)
    # The debt of 200 beyond the bucket must be repaid before anything else goes.
    with pytest.raises(e.RateLimited) as info:
        await rig.admit("m", max_tokens=1)
    assert info.value.retry_after_s == pytest.approx(120.0, abs=1)


async def test_embeddings_estimate_their_inputs_only() -> None:
    rig = Rig(m={"tpm": 100, "kind": "embedding"})
    for _ in range(4):
        await rig.admit("m", kind=CallKind.EMBED, input_tokens=25)
    with pytest.raises(e.RateLimited):
        await rig.admit("m", kind=CallKind.EMBED, input_tokens=1)


# -- calls in flight -------------------------------------------------------------------------


async def test_max_concurrency_counts_calls_in_flight() -> None:
    rig = Rig(m={"max_concurrency": 2})
    a, b = await rig.admit("m"), await rig.admit("m")
    async with a, b:
        with pytest.raises(e.RateLimited) as info:
            await rig.admit("m")
        assert info.value.limit == "max_concurrency"
    assert rig.guard.in_flight("m") == 0
    await rig.run("m")


# -- waiting on the last candidate ------------------------------------------------------------


async def test_last_candidate_waits_when_the_wait_is_short() -> None:
    rig = Rig(max_wait_s=2.0, m={"rpm": 60})
    await rig.count_admitted("m", 60)
    await rig.run("m", last="m")  # 1 s to the next request's room
    assert rig.clocks.slept == [pytest.approx(1.0)]


async def test_no_wait_when_another_candidate_remains() -> None:
    rig = Rig(max_wait_s=2.0, m={"rpm": 60}, other={})
    await rig.count_admitted("m", 60)
    with pytest.raises(e.RateLimited):
        await rig.run("m", last="other")
    with pytest.raises(e.RateLimited):
        await rig.run("m")  # the candidates are not known: move on
    assert rig.clocks.slept == []


async def test_no_wait_past_max_wait_or_the_deadline() -> None:
    rig = Rig(max_wait_s=0.5, m={"rpm": 60})
    await rig.count_admitted("m", 60)
    with pytest.raises(e.RateLimited):
        await rig.run("m", last="m")  # 1 s > max_wait_s
    rig2 = Rig(max_wait_s=5.0, m={"rpm": 60})
    await rig2.count_admitted("m", 60)
    with pytest.raises(e.RateLimited):
        await rig2.run("m", last="m", deadline=rig2.clocks.mono + 0.9)
    await rig2.run("m", last="m", deadline=rig2.clocks.mono + 1.5)
    assert rig.clocks.slept == [] and len(rig2.clocks.slept) == 1


# -- what the upstream says ------------------------------------------------------------------


async def test_upstream_429_holds_the_model_even_without_local_limits() -> None:
    rig = Rig(m={})
    err = e.ProviderRateLimited("429", provider="p", status=429, retry_after_s=20)
    await rig.run("m", exc=err)
    with pytest.raises(e.RateLimited) as info:
        await rig.admit("m")
    assert info.value.limit == "upstream" and info.value.retry_after_s == pytest.approx(20)
    rig.clocks.advance(20)
    await rig.run("m")


@pytest.mark.parametrize(
    ("headers", "held_s"),
    [
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6s"}, 6.0),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m30s"}, 90.0),
        ({"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "6s"}, 0.0),
        ({"anthropic-ratelimit-requests-remaining": "0"}, 0.0),  # no reset: nothing to go by
    ],
    ids=["requests_exhausted", "tokens_exhausted", "room_left", "no_reset"],
)
async def test_rate_limit_headers_heard_during_an_attempt_hold_the_model(
    headers: dict[str, str], held_s: float
) -> None:
    rig = Rig(m={})
    permit = await rig.admit("m")
    async with permit:
        await report_rate_headers(200, headers)  # what the HTTP layer calls per response
    if held_s:
        with pytest.raises(e.RateLimited) as info:
            await rig.admit("m")
        assert info.value.retry_after_s == pytest.approx(held_s)
    else:
        await rig.run("m")


async def test_headers_outside_an_attempt_go_nowhere() -> None:
    rig = Rig(m={})
    await report_rate_headers(429, {"retry-after": "30"})
    await rig.run("m")


async def test_a_failing_store_does_not_fail_the_call_through_a_hint() -> None:
    rig = Rig(m={})

    async def broken(key: str, until: float) -> None:
        raise e.Unavailable("store down")

    rig.store.hold = broken  # type: ignore[method-assign]
    permit = await rig.admit("m")
    async with permit:
        await report_rate_headers(429, {"retry-after": "30"})


async def test_on_hint_prefers_the_longest_reason() -> None:
    rig = Rig(m={})
    plan = rig.table.plan("m")
    await rig.guard.on_hint(
        plan,
        RateHint(status=429, retry_after_s=2, tokens_remaining=0, tokens_reset_s=40),
    )
    with pytest.raises(e.RateLimited) as info:
        await rig.admit("m")
    assert info.value.retry_after_s == pytest.approx(40)


# -- the limits table --------------------------------------------------------------------------


def test_table_resolves_defaults_and_model_values() -> None:
    s = settings(a={}, b={"rpm": 7, "tpm": 70, "max_concurrency": 3})
    table = LimitsTable(models=s.models, settings=LimitsSettings(default_rpm=5, default_tpm=50))
    a, b = table.get("a"), table.get("b")
    assert (a.rpm, a.tpm, a.max_concurrency, a.overridden) == (5, 50, 0, False)
    assert (b.rpm, b.tpm, b.max_concurrency) == (7, 70, 3)
    names = [m.model for m in table.all()]
    assert names == sorted(s.models) and {"a", "b"} <= set(names)


async def test_set_takes_effect_at_once_and_keeps_unset_values() -> None:
    rig = Rig(m={"rpm": 100, "tpm": 5000})
    now, before = rig.table.set("m", rpm=2)
    assert (before.rpm, now.rpm, now.tpm, now.overridden) == (100, 2, 5000, True)
    assert await rig.count_admitted("m", 10) == 2
    rig.table.set("m", rpm=0)  # 0 removes the limit
    assert await rig.count_admitted("m", 10) == 10


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rpm": -1}, "rpm"),
        ({"tpm": -5}, "tpm"),
        ({"max_concurrency": -1}, "max_concurrency"),
        ({"rpm": 10**10}, "rpm"),
    ],
)
def test_set_refuses_bad_values_naming_the_field(kwargs: dict[str, int], field: str) -> None:
    s = settings(m={})
    table = LimitsTable(models=s.models, settings=LimitsSettings())
    with pytest.raises(e.InvalidRequest) as info:
        table.set("m", **kwargs)
    assert [v.field for v in info.value.violations] == [field]
    assert table.get("m").overridden is False


def test_set_needs_a_catalog_model() -> None:
    table = LimitsTable(models=settings(m={}).models, settings=LimitsSettings())
    with pytest.raises(e.InvalidRequest) as bad:
        table.set("", rpm=1)
    assert bad.value.violations[0].field == "model"
    with pytest.raises(e.UnknownModel):
        table.set("nope", rpm=1)


async def test_upstream_holds_are_capped_and_can_be_turned_off() -> None:
    rig = Rig(m={})
    rig.guard._hold_max_s = 5.0
    await rig.run("m", exc=e.ProviderRateLimited("429", provider="p", retry_after_s=3600))
    with pytest.raises(e.RateLimited) as info:
        await rig.admit("m")
    assert info.value.retry_after_s == pytest.approx(5.0)
    rig.clocks.advance(5)
    await rig.run("m")
    rig.guard._hold_max_s = 0.0
    await rig.run("m", exc=e.ProviderRateLimited("429", provider="p", retry_after_s=30))
    await rig.run("m")


async def test_calls_waiting_for_room_count_against_max_concurrency() -> None:
    rig = Rig(max_wait_s=5.0, m={"rpm": 60, "max_concurrency": 1})
    gate = asyncio.Event()

    async def slow_sleep(s: float) -> None:
        await gate.wait()
        rig.clocks.advance(s)

    rig.guard._sleep = slow_sleep
    await rig.count_admitted("m", 60)
    waiting = asyncio.create_task(rig.admit("m", last="m"))  # no room: waits
    await asyncio.sleep(0)
    with pytest.raises(e.RateLimited) as info:
        await rig.admit("m", last="m")
    assert info.value.limit == "max_concurrency"
    gate.set()
    permit = await waiting
    async with permit:
        pass
    assert rig.guard.in_flight("m") == 0
