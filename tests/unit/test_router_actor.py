"""The Router actor, driven through asks with a fake wall clock and the in-memory stats store:
learning from call records in batches, weights, optimization, validation, restart, stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from structlog.testing import capture_logs

from aurea import errors as e
from aurea.actors.router import (
    GetWeights,
    ListStats,
    ModelReport,
    OptimizeWeights,
    RecordOutcome,
    Router,
    RouterMsg,
    SetWeights,
    _Recorded,
)
from aurea.config import Settings, build_settings
from aurea.inference.calls import AttemptRecord, CallKind, CallRecord
from aurea.routing import AUTO, RecordInbox, RouterView, RoutingTable, Weights
from aurea.runtime import ActorRef, ActorSystem
from aurea.stores import ModelStats, Outcome, StoreUnavailable
from aurea.stores.memory.router_stats import MemoryRouterStatsStore

pytestmark = pytest.mark.timeout(20)

NOW = 1_800_000_000.0
DEFAULTS = Weights(cost=0.4, quality=0.4, latency=0.2)


def settings(**routing: Any) -> Settings:
    return build_settings(
        {
            "providers": {"p": {"kind": "simulated"}},
            "models": {
                "a": {"provider": "p", "input_usd_per_mtok": "4", "quality": 0.9},
                "b": {"provider": "p", "input_usd_per_mtok": "1", "quality": 0.9},
            },
            "routing": {
                "default_model": "a",
                "allowed_models": ["a", "b", "sim-embed"],
                "stats_store": "memory",
                "min_samples": 3,
                "stats_half_life_s": 3600,
                "publish_interval_s": 0.001,
                **routing,
            },
        }
    )


class CountingView(RouterView):
    """A view that counts how often a table is published."""

    __slots__ = ("publishes",)

    def __init__(self, table: RoutingTable) -> None:
        self.publishes = 0
        super().__init__(table)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "table":
            object.__setattr__(self, "publishes", getattr(self, "publishes", 0) + 1)
        object.__setattr__(self, name, value)


class Rig:
    def __init__(self, s: Settings, store: MemoryRouterStatsStore) -> None:
        self.settings = s
        self.store = store
        self.inbox = RecordInbox()
        self.view = CountingView(RoutingTable(models=s.models, settings=s.routing))
        self.view.publishes = 0
        self.wall = [NOW]
        self.clock = [0.0]
        self.system = ActorSystem()
        self.router: ActorRef[RouterMsg] = self.system.spawn(
            "router",
            lambda: Router(
                models=s.models,
                settings=s.routing,
                view=self.view,
                store=store,
                inbox=self.inbox,
                wall_clock=lambda: self.wall[0],
                clock=lambda: self.clock[0],
            ),
        )

    async def ask(self, msg: Any) -> Any:
        return await self.router.ask(msg, timeout_s=5)

    async def report(self, model: str) -> ModelReport:
        [r] = await self.ask(ListStats(models=(model,)))
        return r  # type: ignore[no-any-return]

    def call(self, *attempts: AttemptRecord, kind: CallKind = CallKind.UNARY, **kw: Any) -> None:
        r = CallRecord(request_id="r", kind=kind, **kw)
        r.attempts.extend(attempts)
        self.inbox(r)


@asynccontextmanager
async def rig(store: MemoryRouterStatsStore | None = None, **routing: Any) -> AsyncIterator[Rig]:
    r = Rig(settings(**routing), store or MemoryRouterStatsStore())
    async with r.system:
        yield r


async def eventually(check: Callable[[], Any], what: str) -> None:
    """Poll ``check`` (sync or async) until truthy; bounded by a count, not a time."""
    for _ in range(4000):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"never happened: {what}")


def ok(model: str, latency_s: float = 0.1) -> AttemptRecord:
    return AttemptRecord(model=model, provider="p", latency_s=latency_s)


def failed(model: str) -> AttemptRecord:
    return AttemptRecord(model=model, provider="p", error="UPSTREAM_SERVER_ERROR", latency_s=0.01)


def outcome(success: bool, latency_s: float, cost: int) -> Outcome:
    return Outcome(success=success, latency_s=latency_s, cost_nanos=cost)


# -- learning from call records -------------------------------------------------------------


async def test_call_records_reach_the_store_and_the_published_table() -> None:
    async with rig() as r:
        # b is cheaper: it leads on priors.
        assert [c.model.name for c in r.view.table.route(AUTO)] == ["b", "a"]
        for _ in range(3):
            r.call(ok("a"), cost_nanos=400)
            r.call(failed("b"), ok("a"), cost_nanos=400)
        await eventually(lambda: r.view.table.scored("b").live, "b's failures published")
        b = r.view.table.scored("b")
        assert b is not None and b.factors.quality == 0.0
        assert [c.model.name for c in r.view.table.route(AUTO)] == ["a", "b"]
        stored = await r.store.get("a")
        assert stored is not None and stored.count == 6 and stored.cost_sum_nanos == 2400


async def test_streams_feed_the_ttft_percentiles() -> None:
    async with rig() as r:
        for i in range(1, 11):
            r.call(ok("a", 1.0), kind=CallKind.STREAM, ttft_s=i / 10, latency_s=1.0)
        await eventually(lambda: _window(r), "ten ttfts in the window")
        rep = await r.report("a")
        assert rep.ttft_p50_s == pytest.approx(0.5) and rep.ttft_p95_s == pytest.approx(1.0)
        assert rep.calls.avg_latency_s == pytest.approx(1.0)
        assert rep.first is not None and rep.first.recent_latency_s == pytest.approx(0.55)


async def _window(r: Rig) -> bool:
    return (await r.report("a")).ttft_window == 10


async def test_a_burst_of_records_is_one_batch_and_one_publish() -> None:
    async with rig(publish_interval_s=30) as r:
        assert r.view.publishes == 1  # at start
        for _ in range(200):
            r.call(ok("a"))
        await eventually(lambda: _count(r, "a", 200), "200 outcomes stored")
        await eventually(lambda: r.view.publishes == 2, "one publish for the batch")
        for _ in range(50):
            r.call(ok("a"))
        for _ in range(20):
            await asyncio.sleep(0)
        # The pump sleeps out its publish interval: nothing more is published or stored yet.
        assert r.view.publishes == 2 and len(r.inbox) == 50
        assert (await r.store.get("a")).count == 200  # type: ignore[union-attr]


async def _count(r: Rig, model: str, n: int) -> bool:
    s = await r.store.get(model)
    return s is not None and s.count == n


async def test_stopping_writes_what_is_still_buffered() -> None:
    store = MemoryRouterStatsStore()
    async with rig(store, publish_interval_s=30) as r:
        r.call(ok("a"))
        await eventually(lambda: _count(r, "a", 1), "first batch stored")
        for _ in range(5):
            r.call(ok("a"))
    s = await store.get("a")
    assert s is not None and s.count == 6


async def test_a_failing_store_loses_a_batch_but_not_the_router() -> None:
    class Flaky(MemoryRouterStatsStore):
        fail = True

        async def record(self, model: str, o: Outcome, *, now: float, half_life_s: float) -> Any:
            if self.fail:
                raise StoreUnavailable("disk full")
            return await super().record(model, o, now=now, half_life_s=half_life_s)

    store = Flaky()
    with capture_logs() as logs:
        async with rig(store) as r:
            r.call(ok("a"))
            await eventually(
                lambda: any(x["event"] == "router_stats_write_failed" for x in logs), "log"
            )
            store.fail = False
            r.call(ok("a"))
            await eventually(lambda: _count(r, "a", 1), "the next batch stored")


async def test_an_unreadable_store_starts_on_priors() -> None:
    class Broken(MemoryRouterStatsStore):
        async def all(self) -> tuple[ModelStats, ...]:
            raise StoreUnavailable("locked")

    with capture_logs() as logs:
        async with rig(Broken()) as r:
            view = await r.ask(GetWeights())
            assert view.defaults and view.weights == DEFAULTS
    assert any(x["event"] == "router_stats_load_failed" for x in logs)


# -- outcomes from elsewhere ----------------------------------------------------------------


async def test_record_outcome_replies_with_the_updated_stats() -> None:
    async with rig() as r:
        rep = await r.ask(
            RecordOutcome(model="b", outcome=outcome(True, 0.25, 70), first_token_s=0.1)
        )
        assert rep.calls.count == 1 and rep.calls.avg_cost_nanos == 70
        assert rep.first is not None and rep.first.recent_latency_s == pytest.approx(0.1)
        assert rep.scored is not None and not rep.scored.live  # 1 < min_samples


async def test_record_outcome_for_an_unknown_model_records_nothing() -> None:
    async with rig() as r:
        with pytest.raises(e.InvalidRequest) as info:
            await r.ask(RecordOutcome(model="ghost", outcome=outcome(True, 0.1, 0)))
        assert [v.field for v in info.value.violations] == ["model"]
        assert await r.store.all() == ()


# -- weights --------------------------------------------------------------------------------


async def test_set_weights_is_stored_applied_and_published() -> None:
    async with rig() as r:
        assert (await r.ask(GetWeights())).defaults
        w = Weights(cost=0.0, quality=0.0, latency=1.0)
        change = await r.ask(SetWeights(weights=w))
        assert change.previous == DEFAULTS and change.weights == w
        view = await r.ask(GetWeights())
        assert view.weights == w and not view.defaults
        assert await r.store.get_weights() == {"cost": 0.0, "quality": 0.0, "latency": 1.0}
        assert r.view.table.weights == w


async def test_bad_weights_change_nothing() -> None:
    async with rig() as r:
        with pytest.raises(e.InvalidRequest) as info:
            await r.ask(SetWeights(weights=Weights(cost=0.5, quality=0.5, latency=0.5)))
        assert [v.field for v in info.value.violations] == ["weights.sum"]
        with pytest.raises(e.InvalidRequest) as info:
            await r.ask(SetWeights(weights=Weights(cost=float("nan"), quality=0.5, latency=0.5)))
        assert [v.field for v in info.value.violations] == ["weights.cost"]
        assert await r.store.get_weights() is None
        assert (await r.ask(GetWeights())).defaults


async def record_hand_example(r: Rig) -> None:
    """a: 4 x (ok, 100 ms, 1000 n$); b: 3 x (ok, 400 ms, 250 n$) and 1 x (failed, 400 ms, free)."""
    for _ in range(4):
        await r.ask(RecordOutcome(model="a", outcome=outcome(True, 0.1, 1000), first_token_s=0.1))
    for _ in range(3):
        await r.ask(RecordOutcome(model="b", outcome=outcome(True, 0.4, 250), first_token_s=0.4))
    await r.ask(RecordOutcome(model="b", outcome=outcome(False, 0.4, 0)))


async def test_optimize_needs_two_live_models_then_weighs_by_variance() -> None:
    async with rig() as r:
        for _ in range(4):
            await r.ask(RecordOutcome(model="a", outcome=outcome(True, 0.1, 1000)))
        with pytest.raises(e.FailedPrecondition):
            await r.ask(OptimizeWeights())
        await record_hand_example(r)
        dry = await r.ask(OptimizeWeights(apply=False))
        assert not dry.applied and dry.models == ("a", "b") and dry.outcomes == 12
        assert dry.weights.cost == pytest.approx(9 / 19)
        assert dry.weights.quality == pytest.approx(1 / 19)
        assert dry.weights.latency == pytest.approx(9 / 19)
        assert (await r.ask(GetWeights())).defaults
        done = await r.ask(OptimizeWeights())
        assert done.applied and done.previous == DEFAULTS
        assert (await r.ask(GetWeights())).weights == done.weights
        assert await r.store.get_weights() == done.weights.as_dict()


async def test_optimize_keeps_the_weights_when_nothing_varies() -> None:
    async with rig() as r:
        for model in ("a", "b"):
            for _ in range(3):
                await r.ask(RecordOutcome(model=model, outcome=outcome(True, 0.1, 10)))
        result = await r.ask(OptimizeWeights())
        assert not result.applied and result.weights == DEFAULTS
        assert "no factor varies" in result.reason
        assert await r.store.get_weights() is None


async def test_the_optimize_timer_applies_optimized_weights() -> None:
    async with rig(optimize_interval_s=0.01) as r:
        await record_hand_example(r)
        await eventually(lambda: r.store.get_weights(), "weights stored by the timer")
        w = (await r.ask(GetWeights())).weights
        assert w.quality == pytest.approx(1 / 19)


# -- restart --------------------------------------------------------------------------------


def _comparable(reports: list[ModelReport]) -> list[tuple[Any, ...]]:
    return [(x.calls, x.first, x.scored) for x in reports]


async def test_stats_and_weights_survive_a_restart_unchanged() -> None:
    store = MemoryRouterStatsStore()
    async with rig(store) as r:
        await record_hand_example(r)
        r.call(ok("a", 0.2), kind=CallKind.STREAM, ttft_s=0.05, latency_s=0.2, cost_nanos=3)
        await eventually(lambda: _count(r, "a", 5), "the call recorded")
        await r.ask(SetWeights(weights=Weights(cost=0.1, quality=0.2, latency=0.7)))
        before = await r.ask(ListStats())
        weights = await r.ask(GetWeights())
    async with rig(store) as again:
        after = await again.ask(ListStats())
        assert _comparable(after) == _comparable(before)
        assert await again.ask(GetWeights()) == weights
        assert [c.model.name for c in again.view.table.route(AUTO)] == [
            c.model.name for c in r.view.table.route(AUTO)
        ]


# -- sharing a store ------------------------------------------------------------------------


async def test_what_a_sibling_process_records_or_sets_is_read_back() -> None:
    store = MemoryRouterStatsStore()  # as two processes on one SQLite file would share it
    async with rig(store) as one, rig(store) as two:
        cost_only = Weights(cost=1.0, quality=0.0, latency=0.0)
        await one.ask(SetWeights(weights=cost_only))
        for _ in range(3):
            await one.ask(RecordOutcome(model="b", outcome=outcome(True, 0.1, 10)))
        assert (await two.ask(GetWeights())).defaults
        assert (await two.report("b")).calls.count == 0
        two.clock[0] += 6  # past the read-back interval
        two.inbox.poke()
        await eventually(lambda: _weights(two, cost_only), "weights read back")
        assert (await two.report("b")).calls.count == 3
        assert two.view.table.weights == cost_only


async def _weights(r: Rig, w: Weights) -> bool:
    return bool((await r.ask(GetWeights())).weights == w)


async def test_a_stale_read_back_never_undoes_weights_set_since() -> None:
    async with rig() as r:
        new = Weights(cost=0.0, quality=1.0, latency=0.0)
        await r.ask(SetWeights(weights=new))
        # A read-back that started before the change (epoch 0) and saw the old weights:
        r.router.post(_Recorded(rows=(), weights=DEFAULTS.as_dict(), epoch=0))
        assert (await r.ask(GetWeights())).weights == new
