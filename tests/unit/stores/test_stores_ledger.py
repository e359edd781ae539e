"""The LedgerStore contract, run against every implementation (see conftest.py)."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from store_helpers import RETENTION_S, T0

from aurea.stores import (
    ChargeOp,
    ExpireOp,
    ExtendOp,
    LeaseEnd,
    LeaseState,
    LedgerStore,
    ReleaseOp,
    Reservation,
    ReserveOp,
    ReserveStatus,
    SettleOp,
    Spend,
)
from aurea.stores.ledger import SUMMARY_BUCKET_S

TTL = 30.0


async def reserve(
    ledger: LedgerStore,
    lease: str,
    amount: int,
    *,
    job: str = "j",
    now: float = T0,
    default: int | None = 1_000,
    model: str = "m",
    provider: str = "p",
) -> ReserveStatus:
    r = await ledger.reserve(
        job,
        lease,
        amount,
        TTL,
        now=now,
        default_budget_nanos=default,
        model=model,
        provider=provider,
    )
    return r.status


async def test_reserve_refuses_exactly_past_the_remaining_budget(ledger: LedgerStore) -> None:
    r = await ledger.reserve("j", "a", 600, TTL, now=T0, default_budget_nanos=1_000)
    assert (r.status, r.budget_nanos, r.spent_nanos, r.reserved_nanos) == ("granted", 1000, 0, 600)
    assert r.lease_nanos == 600 and r.remaining_nanos == 400
    refused = await ledger.reserve("j", "b", 401, TTL, now=T0, default_budget_nanos=1_000)
    assert refused.status is ReserveStatus.OVER_BUDGET and not refused.granted
    assert (refused.budget_nanos, refused.spent_nanos, refused.reserved_nanos) == (1000, 0, 600)
    assert await ledger.get_lease("b") is None
    assert await reserve(ledger, "c", 400) is ReserveStatus.GRANTED
    view = await ledger.get_job("j")
    assert view is not None
    assert (view.reserved_nanos, view.active_leases, view.remaining_nanos) == (1000, 2, 0)


async def test_budgets_default_unlimited_and_zero(ledger: LedgerStore) -> None:
    assert await reserve(ledger, "a", 10**15, job="free", default=None) is ReserveStatus.GRANTED
    assert (await ledger.get_job("free")).budget_nanos is None  # type: ignore[union-attr]
    await ledger.set_budget("zero", 0, now=T0)
    assert await reserve(ledger, "b", 1, job="zero") is ReserveStatus.OVER_BUDGET
    assert await reserve(ledger, "c", 0, job="zero") is ReserveStatus.GRANTED  # spends nothing
    # The default applies only to a job seen for the first time.
    assert await reserve(ledger, "d", 5, job="zero", default=None) is ReserveStatus.OVER_BUDGET


async def test_set_budget_below_spent_refuses_new_reservations(ledger: LedgerStore) -> None:
    await reserve(ledger, "a", 500)
    view = await ledger.set_budget("j", 100, now=T0 + 1)
    assert (view.budget_nanos, view.reserved_nanos, view.remaining_nanos) == (100, 500, 0)
    assert await reserve(ledger, "b", 1) is ReserveStatus.OVER_BUDGET
    unlimited = await ledger.set_budget("j", None, now=T0 + 2)
    assert unlimited.remaining_nanos is None and unlimited.updated_at == T0 + 2
    assert await reserve(ledger, "b", 10**12) is ReserveStatus.GRANTED


async def test_settle_moves_the_reservation_to_spent_as_told(ledger: LedgerStore) -> None:
    await reserve(ledger, "a", 300)
    await reserve(ledger, "b", 300, model="m2", provider="p2")
    spend = Spend(cost_nanos=120, input_tokens=10, output_tokens=5)
    assert await ledger.settle("a", spend, now=T0 + 1) is LeaseEnd.CLOSED
    # More than was reserved: the store records what it is told.
    over = Spend(cost_nanos=450, input_tokens=1, output_tokens=2, calls=0)
    assert await ledger.settle("b", over, now=T0 + 2) is LeaseEnd.CLOSED
    view = await ledger.get_job("j")
    assert view is not None
    assert (view.spent_nanos, view.reserved_nanos, view.active_leases) == (570, 0, 0)
    assert [
        (t.model, t.provider, t.calls, t.input_tokens, t.output_tokens, t.cost_nanos)
        for t in view.by_model
    ] == [("m", "p", 1, 10, 5, 120), ("m2", "p2", 0, 1, 2, 450)]
    lease = await ledger.get_lease("a")
    assert lease is not None and lease.state is LeaseState.SETTLED and lease.spent_nanos == 120


async def test_settle_and_release_are_idempotent(ledger: LedgerStore) -> None:
    await reserve(ledger, "a", 300)
    await reserve(ledger, "b", 300)
    assert await ledger.settle("a", Spend(cost_nanos=100), now=T0) is LeaseEnd.CLOSED
    assert await ledger.settle("a", Spend(cost_nanos=100), now=T0) is LeaseEnd.ALREADY
    assert await ledger.release("a", now=T0) is LeaseEnd.ALREADY
    assert await ledger.release("b", now=T0) is LeaseEnd.CLOSED
    assert await ledger.release("b", now=T0) is LeaseEnd.ALREADY
    assert await ledger.settle("b", Spend(cost_nanos=100), now=T0) is LeaseEnd.ALREADY
    assert await ledger.settle("nope", Spend(cost_nanos=1), now=T0) is LeaseEnd.UNKNOWN
    assert await ledger.release("nope", now=T0) is LeaseEnd.UNKNOWN
    view = await ledger.get_job("j")
    assert view is not None and (view.spent_nanos, view.reserved_nanos) == (100, 0)
    assert sum(t.cost_nanos for t in view.by_model) == 100


async def test_a_repeated_reserve_of_one_lease_holds_once(ledger: LedgerStore) -> None:
    assert await reserve(ledger, "a", 300) is ReserveStatus.GRANTED
    again = await ledger.reserve("j", "a", 300, TTL, now=T0, default_budget_nanos=1_000)
    assert again.granted and again.reserved_nanos == 300 and again.lease_nanos == 300
    await ledger.release("a", now=T0)
    assert await reserve(ledger, "a", 300) is ReserveStatus.LEASE_CLOSED
    view = await ledger.get_job("j")
    assert view is not None and view.reserved_nanos == 0


async def test_expire_returns_reservations_and_a_late_settle_still_spends(
    ledger: LedgerStore,
) -> None:
    await reserve(ledger, "a", 300, now=T0)
    await reserve(ledger, "b", 200, now=T0)
    await reserve(ledger, "c", 100, now=T0 + 20)
    assert await ledger.expire(now=T0 + TTL - 1) == 0
    assert await ledger.expire(now=T0 + TTL) == 2  # expiry is inclusive
    view = await ledger.get_job("j")
    assert view is not None and (view.reserved_nanos, view.active_leases) == (100, 1)
    assert (await ledger.get_lease("a")).state is LeaseState.EXPIRED  # type: ignore[union-attr]
    assert await ledger.settle("a", Spend(cost_nanos=250), now=T0 + 40) is LeaseEnd.LATE
    assert await ledger.release("b", now=T0 + 40) is LeaseEnd.LATE
    assert await ledger.settle("a", Spend(cost_nanos=250), now=T0 + 41) is LeaseEnd.ALREADY
    view = await ledger.get_job("j")
    assert view is not None and (view.spent_nanos, view.reserved_nanos) == (250, 100)
    assert await ledger.expire(now=T0 + 100) == 1
    assert await ledger.expire(now=T0 + 100) == 0


async def test_expire_all_frees_every_active_lease_and_forgets_nothing(
    ledger: LedgerStore,
) -> None:
    for i in range(5):
        await reserve(ledger, f"l{i}", 100, now=T0 + i)
    await ledger.settle("l0", Spend(cost_nanos=40), now=T0 + 5)
    await ledger.extend("l1", 0, 10 * TTL, now=T0 + 5)
    assert await ledger.expire_all(now=T0 + 6) == 4
    view = await ledger.get_job("j")
    assert view is not None and (view.spent_nanos, view.reserved_nanos) == (40, 0)
    assert (await ledger.get_lease("l0")).state is LeaseState.SETTLED  # type: ignore[union-attr]
    assert (await ledger.get_lease("l1")).state is LeaseState.EXPIRED  # type: ignore[union-attr]
    assert await ledger.settle("l0", Spend(cost_nanos=40), now=T0 + 7) is LeaseEnd.ALREADY
    assert await ledger.expire_all(now=T0 + 8) == 0


async def test_extend_grows_and_renews_a_lease_within_budget(ledger: LedgerStore) -> None:
    await reserve(ledger, "a", 300, now=T0)
    grown = await ledger.extend("a", 500, TTL, now=T0 + 20)
    assert grown.granted and (grown.lease_nanos, grown.reserved_nanos) == (800, 800)
    refused = await ledger.extend("a", 201, TTL, now=T0 + 21)
    assert refused.status is ReserveStatus.OVER_BUDGET and refused.lease_nanos == 800
    assert await ledger.expire(now=T0 + TTL) == 0  # renewed to T0 + 50
    assert (await ledger.extend("a", 0, TTL, now=T0 + 49)).granted  # heartbeat: to T0 + 79
    assert await ledger.expire(now=T0 + 78) == 0
    assert await ledger.expire(now=T0 + 79) == 1
    closed = await ledger.extend("a", 0, TTL, now=T0 + 80)
    assert closed.status is ReserveStatus.LEASE_CLOSED and closed.job_id == "j"
    unknown = await ledger.extend("zz", 0, TTL, now=T0)
    assert unknown.status is ReserveStatus.LEASE_CLOSED and unknown.reserved_nanos == 0


async def test_renewing_a_lease_needs_no_headroom(ledger: LedgerStore) -> None:
    await reserve(ledger, "a", 600, now=T0)
    await ledger.set_budget("j", 100, now=T0 + 1)  # now over budget
    assert (await ledger.extend("a", 1, TTL, now=T0 + 2)).status is ReserveStatus.OVER_BUDGET
    renewed = await ledger.extend("a", 0, TTL, now=T0 + 2)
    assert renewed.granted and renewed.lease_nanos == 600
    assert await ledger.expire(now=T0 + TTL + 1) == 0


async def test_closed_leases_are_forgotten_after_the_retention(ledger: LedgerStore) -> None:
    await reserve(ledger, "a", 100, now=T0)
    await ledger.settle("a", Spend(cost_nanos=10), now=T0 + 1)
    await ledger.expire(now=T0 + 1 + RETENTION_S - 1)
    assert await ledger.settle("a", Spend(cost_nanos=10), now=T0 + 2) is LeaseEnd.ALREADY
    await ledger.expire(now=T0 + 1 + RETENTION_S)
    assert await ledger.get_lease("a") is None
    view = await ledger.get_job("j")
    assert view is not None and view.spent_nanos == 10  # spend outlives the lease record


async def test_list_jobs_pages_by_id_with_a_literal_prefix(ledger: LedgerStore) -> None:
    ids = ["a%1", "a%2", "a_3", "ab", "b"]
    for job_id in ids:
        await ledger.set_budget(job_id, 7, now=T0)
    page = await ledger.list_jobs(limit=2)
    assert [v.job_id for v in page.items] == ["a%1", "a%2"] and page.next_cursor
    page = await ledger.list_jobs(after=page.next_cursor, limit=2)
    assert [v.job_id for v in page.items] == ["a_3", "ab"]
    page = await ledger.list_jobs(after=page.next_cursor, limit=2)
    assert [v.job_id for v in page.items] == ["b"] and page.next_cursor is None
    percent = await ledger.list_jobs(prefix="a%")
    assert [v.job_id for v in percent.items] == ["a%1", "a%2"]
    assert [v.job_id for v in (await ledger.list_jobs(prefix="a_")).items] == ["a_3"]
    assert (await ledger.list_jobs(limit=5)).next_cursor is None


async def test_summary_sums_by_model_and_provider_over_whole_buckets(ledger: LedgerStore) -> None:
    base = (T0 // SUMMARY_BUCKET_S) * SUMMARY_BUCKET_S
    plan = [
        ("a", "gpt", "openai", base + 10, 100),
        ("b", "gpt", "openai", base + 20, 50),
        ("c", "claude", "anthropic", base + SUMMARY_BUCKET_S + 5, 70),
        ("d", "gpt", "azure", base + 2 * SUMMARY_BUCKET_S, 30),
    ]
    for lease, model, provider, at, cost in plan:
        await reserve(
            ledger,
            lease,
            0,
            job=f"job-{lease}",
            now=at,
            model=model,
            provider=provider,
            default=None,
        )
        await ledger.settle(lease, Spend(cost_nanos=cost, input_tokens=1, output_tokens=2), now=at)
    everything = await ledger.summary()
    assert everything.total.cost_nanos == 250 and everything.total.calls == 4
    assert [(r.model, r.provider, r.cost_nanos) for r in everything.by_model] == [
        ("claude", "anthropic", 70),
        ("gpt", "azure", 30),
        ("gpt", "openai", 150),
    ]
    assert [(r.provider, r.cost_nanos, r.output_tokens) for r in everything.by_provider] == [
        ("anthropic", 70, 2),
        ("azure", 30, 2),
        ("openai", 150, 4),
    ]
    # since/until widen to whole buckets: [base+15, base+bucket+1) covers the first two buckets.
    middle = await ledger.summary(since=base + 15, until=base + SUMMARY_BUCKET_S + 1)
    assert middle.total.cost_nanos == 220
    assert (await ledger.summary(since=base + SUMMARY_BUCKET_S)).total.cost_nanos == 100
    assert (await ledger.summary(until=base)).total.cost_nanos == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.reserve("j", "a", -1, TTL, now=T0, default_budget_nanos=1),
        lambda s: s.reserve("j", "a", 1, math.nan, now=T0, default_budget_nanos=1),
        lambda s: s.reserve("j", "a", 1, 0.0, now=T0, default_budget_nanos=1),
        lambda s: s.reserve("", "a", 1, TTL, now=T0, default_budget_nanos=1),
        lambda s: s.reserve("j", "", 1, TTL, now=T0, default_budget_nanos=1),
        lambda s: s.reserve("j", "a", 1, TTL, now=math.inf, default_budget_nanos=1),
        lambda s: s.reserve("j", "a", 1, TTL, now=T0, default_budget_nanos=-5),
        lambda s: s.reserve("j", "a", 2**63, TTL, now=T0, default_budget_nanos=None),
        lambda s: s.set_budget("j", -1, now=T0),
        lambda s: s.settle("a", Spend(cost_nanos=-1), now=T0),
        lambda s: s.settle("a", Spend(cost_nanos=1, input_tokens=-1), now=T0),
        lambda s: s.extend("a", -1, TTL, now=T0),
        lambda s: s.expire(now=math.nan),
        lambda s: s.expire(now=math.inf),
        lambda s: s.expire_all(now=math.nan),
        lambda s: s.list_jobs(limit=0),
        lambda s: s.list_jobs(limit=1001),
        lambda s: s.apply([_charge("", 1)]),
        lambda s: s.apply([_charge("j", -1)]),
        lambda s: s.apply(
            [
                ChargeOp(
                    job_id="j", spend=Spend(cost_nanos=1), now=math.nan, default_budget_nanos=None
                )
            ]
        ),
        lambda s: s.apply([_charge("j", 1, default=-1)]),
        lambda s: s.apply([ExpireOp(now=math.inf)]),
        lambda s: s.apply(["reserve"]),
        # One bad operation refuses the whole sequence: the good ones before it are not applied.
        lambda s: s.apply([_reserve_op("a", 1), _charge("j", 5), ReleaseOp(lease_id="", now=T0)]),
    ],
)
async def test_nonsense_arguments_raise_value_error(ledger: LedgerStore, call: object) -> None:
    with pytest.raises(ValueError):
        await call(ledger)  # type: ignore[operator]
    assert await ledger.get_job("j") is None  # nothing half-created


async def test_hundreds_of_concurrent_reserves_never_exceed_the_budget(
    ledger: LedgerStore,
) -> None:
    budget, amount, n = 3_000, 7, 600  # 428 fit
    await ledger.set_budget("hot", budget, now=T0)
    results = await asyncio.gather(
        *(
            ledger.reserve("hot", f"l{i}", amount, TTL, now=T0, default_budget_nanos=0)
            for i in range(n)
        )
    )
    granted = [i for i, r in enumerate(results) if r.granted]
    assert len(granted) == budget // amount  # exactly as many as fit, not one more or less
    assert all(r.reserved_nanos <= budget for r in results)
    view = await ledger.get_job("hot")
    assert view is not None and view.reserved_nanos == len(granted) * amount
    # Settle half (for less than reserved), release the rest, concurrently.
    ends = await asyncio.gather(
        *(
            ledger.settle(f"l{i}", Spend(cost_nanos=3), now=T0 + 1)
            if i % 2
            else ledger.release(f"l{i}", now=T0 + 1)
            for i in granted
        )
    )
    assert set(ends) == {LeaseEnd.CLOSED}
    view = await ledger.get_job("hot")
    assert view is not None
    settled = sum(1 for i in granted if i % 2)
    assert (view.reserved_nanos, view.active_leases, view.spent_nanos) == (0, 0, 3 * settled)


async def test_interleaved_reserve_settle_extend_keep_every_invariant(
    ledger: LedgerStore,
) -> None:
    budget = 50_000
    await ledger.set_budget("mix", budget, now=T0)
    rng = random.Random(7)

    async def call(i: int) -> int:
        """One attempt's life; returns what it spent (0 if refused)."""
        amount = rng.randint(1, 900)
        lease = f"l{i}"
        r = await ledger.reserve("mix", lease, amount, TTL, now=T0, default_budget_nanos=0)
        if not r.granted:
            return 0
        await asyncio.sleep(0)
        ext = await ledger.extend(lease, rng.randint(0, 300), TTL, now=T0 + 1)
        held = ext.lease_nanos
        await asyncio.sleep(0)
        if i % 3 == 0:
            await ledger.release(lease, now=T0 + 2)
            return 0
        cost = rng.randint(0, held)  # never more than held, so the budget is never crossed
        await ledger.settle(lease, Spend(cost_nanos=cost), now=T0 + 2)
        return cost

    spent = await asyncio.gather(*(call(i) for i in range(400)))
    view = await ledger.get_job("mix")
    assert view is not None
    assert (view.reserved_nanos, view.active_leases) == (0, 0)
    assert view.spent_nanos == sum(spent) <= budget


def _reserve_op(lease: str, amount: int, *, job: str = "j", now: float = T0) -> ReserveOp:
    return ReserveOp(
        job_id=job,
        lease_id=lease,
        amount_nanos=amount,
        ttl_s=TTL,
        now=now,
        default_budget_nanos=1_000,
        model="m",
        provider="p",
    )


def _charge(
    job: str,
    cost: int,
    *,
    now: float = T0,
    model: str = "m",
    provider: str = "p",
    calls: int = 1,
    default: int | None = 1_000,
) -> ChargeOp:
    return ChargeOp(
        job_id=job,
        spend=Spend(cost_nanos=cost, input_tokens=2 * calls, output_tokens=3 * calls, calls=calls),
        now=now,
        default_budget_nanos=default,
        model=model,
        provider=provider,
    )


async def test_apply_runs_each_operation_as_its_method_would_in_order(
    ledger: LedgerStore,
) -> None:
    results = await ledger.apply(
        [
            _reserve_op("a", 600),
            _reserve_op("b", 500),  # refused: a holds 600 of 1000
            ExtendOp(lease_id="a", add_nanos=100, ttl_s=TTL, now=T0 + 1),
            SettleOp(lease_id="a", spend=Spend(cost_nanos=200), now=T0 + 2),
            _reserve_op("b", 500),  # fits now: 200 spent, nothing held
            ReleaseOp(lease_id="b", now=T0 + 3),
            ReleaseOp(lease_id="b", now=T0 + 3),
            _reserve_op("c", 10, now=T0 + 4),
            ExpireOp(now=T0 + 4 + TTL),
        ]
    )
    reserved = [r for r in results if isinstance(r, Reservation)]
    assert [(r.status, r.lease_nanos, r.reserved_nanos) for r in reserved] == [
        (ReserveStatus.GRANTED, 600, 600),
        (ReserveStatus.OVER_BUDGET, 0, 600),
        (ReserveStatus.GRANTED, 700, 700),
        (ReserveStatus.GRANTED, 500, 500),
        (ReserveStatus.GRANTED, 10, 10),
    ]
    assert results[3] is LeaseEnd.CLOSED
    assert results[5:7] == (LeaseEnd.CLOSED, LeaseEnd.ALREADY)
    assert results[-1] == 1  # c expired
    view = await ledger.get_job("j")
    assert view is not None
    assert (view.spent_nanos, view.reserved_nanos, view.active_leases) == (200, 0, 0)
    assert await ledger.apply([]) == ()


async def test_charge_records_spend_without_a_lease_or_a_budget_check(
    ledger: LedgerStore,
) -> None:
    base = (T0 // SUMMARY_BUCKET_S) * SUMMARY_BUCKET_S
    results = await ledger.apply(
        [
            _charge("j", 600, now=base + 1),
            _reserve_op("a", 500, now=base + 1),  # sees the charge before it: 400 left
            _charge("j", 100, now=base + 2),
            _charge("j", 50, now=base + 2, model="m2", provider="p2"),
            _charge("k", 7, now=base + SUMMARY_BUCKET_S, default=None),
            _reserve_op("b", 250, now=base + 3),  # 1000 - 750 spent: exactly fits
            _charge("j", 900, now=base + 4),  # past the budget: recorded as told
        ]
    )
    assert results[0] is None and results[2:5] == (None, None, None)
    assert isinstance(results[1], Reservation) and results[1].status is ReserveStatus.OVER_BUDGET
    assert isinstance(results[5], Reservation) and results[5].granted
    view = await ledger.get_job("j")
    assert view is not None
    assert (view.budget_nanos, view.spent_nanos, view.reserved_nanos) == (1000, 1650, 250)
    assert [
        (t.model, t.calls, t.input_tokens, t.output_tokens, t.cost_nanos) for t in view.by_model
    ] == [
        ("m", 3, 6, 9, 1600),
        ("m2", 1, 2, 3, 50),
    ]
    k = await ledger.get_job("k")
    assert k is not None and (k.budget_nanos, k.spent_nanos, k.active_leases) == (None, 7, 0)
    assert (await ledger.summary(until=base + 1)).total.cost_nanos == 1650
    assert (await ledger.summary(since=base + SUMMARY_BUCKET_S)).total.cost_nanos == 7
    # The same charges one at a time give the same figures (``apply`` sums runs of charges).
    await ledger.apply([_charge("k", 3, now=base + SUMMARY_BUCKET_S)])
    k = await ledger.get_job("k")
    assert k is not None and (k.spent_nanos, k.by_model[0].calls) == (10, 2)


async def test_an_empty_charge_only_creates_the_job(ledger: LedgerStore) -> None:
    await ledger.apply([_charge("new", 0, calls=0, default=42)])
    view = await ledger.get_job("new")
    assert view is not None
    assert (view.budget_nanos, view.spent_nanos, view.by_model) == (42, 0, ())
    await ledger.set_budget("new", 7, now=T0)
    await ledger.apply([_charge("new", 0, calls=0, default=42)])  # an existing job keeps its own
    again = await ledger.get_job("new")
    assert again is not None and again.budget_nanos == 7
    assert (await ledger.summary()).by_model == ()


async def test_hundreds_of_concurrent_applies_never_exceed_the_budget(
    ledger: LedgerStore,
) -> None:
    """Concurrent batches of reserve + settle/charge: the store's figures stay exact."""
    budget = 10_000
    await ledger.set_budget("hot", budget, now=T0)

    async def batch(i: int) -> int:
        lease = f"l{i}"
        reserve = ReserveOp(
            job_id="hot",
            lease_id=lease,
            amount_nanos=40,
            ttl_s=TTL,
            now=T0,
            default_budget_nanos=0,
        )
        first = (await ledger.apply([reserve]))[0]
        assert isinstance(first, Reservation)
        if not first.granted:
            return 0
        await asyncio.sleep(0)
        await ledger.apply(
            [
                SettleOp(lease_id=lease, spend=Spend(cost_nanos=30), now=T0 + 1),
                ChargeOp(
                    job_id="hot",
                    spend=Spend(cost_nanos=5, calls=0),
                    now=T0 + 1,
                    default_budget_nanos=0,
                ),
            ]
        )
        return 35

    spent = await asyncio.gather(*(batch(i) for i in range(400)))
    view = await ledger.get_job("hot")
    assert view is not None
    assert (view.reserved_nanos, view.active_leases) == (0, 0)
    assert view.spent_nanos == sum(spent)
    assert sum(t.cost_nanos for t in view.by_model) == view.spent_nanos
