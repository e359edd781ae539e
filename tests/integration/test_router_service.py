"""The learning router through gRPC: calls shift to what the weights favour, SetWeights and
OptimizeWeights (with weights worked out by hand), a failing model losing traffic and regaining
it, an open breaker skipped, validation that records nothing, and stats and weights that survive
a restart."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from aurea import testing
from aurea.config import Settings
from aurea.server import AureaServer
from aurea.testing import RunningServer, running_server
from aurea.testing.fakes import FakeOpenAI, Fault, FaultKind
from aurea.v1 import inference_pb2 as ipb
from aurea.v1 import inference_pb2_grpc, router_pb2_grpc
from aurea.v1 import router_pb2 as pb

pytestmark = pytest.mark.integration

KEY_ENV = "AUREA_TEST_ROUTER_UPSTREAM_KEY"
KEY = "sk-router-test"
ONE_YEAR_S = 3e7  # a half-life so long that nothing decays during a test


def routing(**over: Any) -> dict[str, Any]:
    return {
        "default_model": "",
        "stats_store": "memory",
        "min_samples": 3,
        "stats_half_life_s": ONE_YEAR_S,
        "publish_interval_s": 0.01,
        **over,
    }


def two_simulated(**route: Any) -> Settings:
    """Two models: "quick" answers at once at 8 $/Mtok; "cheap" waits 150 ms for its first token
    at 1 $/Mtok."""
    sized = {"token_delay_ms": 1, "min_tokens": 4, "max_tokens": 4}
    return testing.test_settings(
        {
            "providers": {
                "fastp": {"kind": "simulated", "options": sized},
                "slowp": {"kind": "simulated", "options": {**sized, "first_token_delay_ms": 150}},
            },
            "models": {
                "quick": {
                    "provider": "fastp",
                    "input_usd_per_mtok": "8",
                    "output_usd_per_mtok": "8",
                    "quality": 0.9,
                },
                "cheap": {
                    "provider": "slowp",
                    "input_usd_per_mtok": "1",
                    "output_usd_per_mtok": "1",
                    "quality": 0.9,
                },
            },
            "routing": routing(allowed_models=["quick", "cheap", "sim-embed"], **route),
        }
    )


class Client:
    def __init__(self, rs: RunningServer) -> None:
        self.rs = rs
        self.inference = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        self.router = router_pb2_grpc.RouterServiceStub(rs.channel)

    async def generate(self, model: str) -> str:
        r = await self.inference.Generate(ipb.GenerateRequest(prompt="hi", model=model), timeout=10)
        return r.model

    async def stream(self, model: str) -> ipb.StreamStarted:
        started = None
        req = ipb.GenerateStreamRequest(request=ipb.GenerateRequest(prompt="hi", model=model))
        async for ev in self.inference.GenerateStream(req, timeout=10):
            if ev.HasField("started"):
                started = ev.started
        assert started is not None
        return started

    async def stats(self, *models: str) -> dict[str, pb.ModelStats]:
        r = await self.router.ListModelStats(pb.ListModelStatsRequest(models=models), timeout=5)
        return {s.model: s for s in r.stats}

    async def select(self, target: str = "") -> pb.SelectModelResponse:
        return await self.router.SelectModel(pb.SelectModelRequest(target=target), timeout=5)

    async def set_weights(self, cost: float, quality: float, latency: float) -> None:
        w = pb.RoutingWeights(cost_weight=cost, quality_weight=quality, latency_weight=latency)
        await self.router.SetWeights(pb.SetWeightsRequest(weights=w), timeout=5)

    async def record(self, model: str, ok: bool, latency_ms: float, cost: int, **kw: Any) -> None:
        req = pb.RecordOutcomeRequest(
            model=model, success=ok, latency_ms=latency_ms, cost_nanos=cost, **kw
        )
        await self.router.RecordOutcome(req, timeout=5)


async def until(check: Callable[[], Any], what: str, tries: int = 500) -> None:
    """Poll until ``check()`` is truthy; bounded by a number of tries, never asserted on time."""
    import asyncio

    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


async def all_live(c: Client, *models: str) -> bool:
    stats = await c.stats(*models)
    return all(stats[m].live for m in models)


# -- weights steer the traffic --------------------------------------------------------------


async def test_calls_shift_to_what_the_weights_favour() -> None:
    async with running_server(two_simulated(groups={"lane": ["cheap", "quick"]})) as rs:
        c = Client(rs)
        for model in ("quick", "cheap"):  # every call is recorded: streams by their ttft
            for _ in range(3):
                await c.stream(model)
        await until(lambda: all_live(c, "quick", "cheap"), "both models live")
        stats = await c.stats("quick", "cheap")
        assert stats["cheap"].recent_ttft_ms > stats["quick"].recent_ttft_ms
        assert stats["cheap"].avg_cost_nanos < stats["quick"].avg_cost_nanos

        await c.set_weights(cost=0.0, quality=0.0, latency=1.0)
        sel = await c.select()
        assert sel.model == "quick" and sel.weights.latency_weight == 1.0
        assert [a.model for a in sel.alternatives] == ["cheap"]
        assert sel.score >= sel.alternatives[0].score
        assert [await c.generate("auto") for _ in range(4)] == ["quick"] * 4
        started = await c.stream("auto")
        assert started.model == "quick"
        assert "score" in started.route_reason and "latency 1.00x1.00" in started.route_reason

        await c.set_weights(cost=1.0, quality=0.0, latency=0.0)
        assert (await c.select("auto")).model == "cheap"
        assert [await c.generate("auto") for _ in range(4)] == ["cheap"] * 4
        # A route group keeps its own order whatever the weights.
        await c.set_weights(cost=0.0, quality=0.0, latency=1.0)
        assert await c.generate("lane") == "cheap"
        assert [m.model for m in (await c.select("lane")).alternatives] == ["quick"]


async def test_optimize_weights_gives_the_variance_proportional_weights() -> None:
    async with running_server(two_simulated()) as rs:
        c = Client(rs)
        # quick: 4 x ok, 100 ms, 1000 n$; cheap: 3 x ok at 250 n$ and 1 x failed (free), 400 ms.
        for _ in range(4):
            await c.record("quick", True, 100, 1000)
        for _ in range(3):
            await c.record("cheap", True, 400, 250)
        await c.record("cheap", False, 400, 0)
        # By hand: cost scores 0.25 and 1 (variance 0.140625), latency 1 and 0.25 (0.140625),
        # success 1 and 0.75 (0.015625): weights 9/19, 1/19, 9/19.
        dry = await rs_optimize(c, validate_only=True)
        assert not dry.applied
        assert dry.weights.cost_weight == pytest.approx(9 / 19, rel=1e-6)
        assert dry.weights.quality_weight == pytest.approx(1 / 19, rel=1e-6)
        assert dry.weights.latency_weight == pytest.approx(9 / 19, rel=1e-6)
        assert sorted(dry.models) == ["cheap", "quick"] and dry.outcomes_considered == 8
        spreads = {s.factor: s for s in dry.spreads}
        assert spreads[pb.ROUTING_FACTOR_COST].variance == pytest.approx(0.140625, rel=1e-6)
        assert spreads[pb.ROUTING_FACTOR_QUALITY].variance == pytest.approx(0.015625, rel=1e-6)
        assert spreads[pb.ROUTING_FACTOR_LATENCY].mean == pytest.approx(0.625, rel=1e-6)
        before = await c.router.GetWeights(pb.GetWeightsRequest(), timeout=5)
        assert before.defaults

        done = await rs_optimize(c)
        assert done.applied and done.previous_weights == before.weights
        now = await c.router.GetWeights(pb.GetWeightsRequest(), timeout=5)
        assert not now.defaults and now.weights == done.weights


async def rs_optimize(c: Client, validate_only: bool = False) -> pb.OptimizeWeightsResponse:
    req = pb.OptimizeWeightsRequest(validate_only=validate_only)
    return await c.router.OptimizeWeights(req, timeout=5)


# -- a failing model ------------------------------------------------------------------------


@pytest_asyncio.fixture
async def upstreams(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[FakeOpenAI, FakeOpenAI]]:
    monkeypatch.setenv(KEY_ENV, KEY)
    async with FakeOpenAI(api_key=KEY) as a, FakeOpenAI(api_key=KEY) as b:
        yield a, b


def upstream_settings(
    a: FakeOpenAI, b: FakeOpenAI, *, breaker: dict[str, Any], **route: Any
) -> Settings:
    """Two upstream models: "a" at 1 $/Mtok, "b" at 4 $/Mtok, same quality: "a" leads while
    it is healthy."""

    def model(provider: str, price: str) -> dict[str, Any]:
        return {
            "provider": provider,
            "upstream": "gpt-4o-mini",
            "input_usd_per_mtok": price,
            "output_usd_per_mtok": price,
            "quality": 0.9,
        }

    return testing.test_settings(
        {
            "providers": {
                "up-a": {"kind": "openai", "base_url": a.base_url, "api_key_env": KEY_ENV},
                "up-b": {"kind": "openai", "base_url": b.base_url, "api_key_env": KEY_ENV},
            },
            "models": {"a": model("up-a", "1"), "b": model("up-b", "4")},
            "routing": routing(allowed_models=["a", "b", "sim-embed"], **route),
            "retry": {"max_retries": 0},
            "breaker": breaker,
        }
    )


async def test_a_failing_model_loses_traffic_and_regains_it_after_recovery(
    upstreams: tuple[FakeOpenAI, FakeOpenAI],
) -> None:
    fake_a, fake_b = upstreams
    # Only the learning acts here (the breaker never opens); outcomes count half after 1 s.
    s = upstream_settings(
        fake_a, fake_b, breaker={"failure_threshold": 1_000_000}, stats_half_life_s=1.0
    )
    async with running_server(s) as rs:
        c = Client(rs)
        assert [await c.generate("auto") for _ in range(3)] == ["a"] * 3

        fake_a.inject(*[Fault(FaultKind.SERVER_ERROR) for _ in range(10_000)])
        for _ in range(60):  # each call: "a" fails, "b" answers; until the router learns
            assert await c.generate("auto") == "b"
            if (await c.select("auto")).model == "b":
                break
        else:
            raise AssertionError("the router kept choosing the failing model")
        stats = await c.stats("a")
        assert stats["a"].live and stats["a"].recent_success_rate < 0.5
        tried = fake_a.request_count
        assert await c.generate("auto") == "b"
        assert fake_a.request_count == tried  # "b" first now: "a" was not even tried

        fake_a.faults.clear()  # "a" recovers; left alone, its failures fade into the priors
        answered: list[str] = []
        for _ in range(600):
            answered.append(await c.generate("auto"))
            if answered[-3:] == ["a"] * 3:
                break
            await _sleep(0.02)
        else:
            raise AssertionError(f"the recovered model never regained traffic: {answered[-10:]}")


async def _sleep(s: float) -> None:
    import asyncio

    await asyncio.sleep(s)


async def test_a_model_whose_breaker_is_open_is_skipped_and_tried_again_after(
    upstreams: tuple[FakeOpenAI, FakeOpenAI],
) -> None:
    fake_a, fake_b = upstreams
    now = [1000.0]
    s = upstream_settings(
        fake_a,
        fake_b,
        breaker={"failure_threshold": 2, "open_timeout_s": 30},
        min_samples=1000,  # scores stay on the priors: only the breaker acts
    )
    server = AureaServer(s, clock=lambda: now[0])
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        c = Client(RunningServer(server, "", channel))
        fake_a.inject(Fault(FaultKind.SERVER_ERROR), Fault(FaultKind.SERVER_ERROR))
        assert [await c.generate("auto") for _ in range(2)] == ["b", "b"]  # a failed twice
        sel = await c.select("auto")
        assert sel.model == "b"
        assert [(m.model, m.available) for m in sel.alternatives] == [("a", False)]
        tried = fake_a.request_count
        assert await c.generate("auto") == "b"
        assert fake_a.request_count == tried  # skipped, not refused after a try

        now[0] += 31  # the open timeout passes: "a" may take a probe
        sel = await c.select("auto")
        assert sel.model == "a" and sel.available
        assert await c.generate("auto") == "a"
        assert await c.generate("auto") == "a"  # the probe closed the breaker
    finally:
        await channel.close()
        await server.stop(grace_s=0)


# -- validation -----------------------------------------------------------------------------


@pytest_asyncio.fixture
async def plain() -> AsyncIterator[RunningServer]:
    async with running_server(two_simulated()) as rs:
        yield rs


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"model": "quick", "latency_ms": math.nan}, "latency_ms"),
        ({"model": "quick", "latency_ms": -1.0}, "latency_ms"),
        ({"model": "quick", "latency_ms": math.inf}, "latency_ms"),
        ({"model": "quick", "latency_ms": 5.0, "cost_nanos": -3}, "cost_nanos"),
        ({"model": "quick", "latency_ms": 5.0, "cost_nanos": 2**62}, "cost_nanos"),
        ({"model": "quick", "latency_ms": 1e300}, "latency_ms"),
        ({"model": "ghost", "latency_ms": 5.0}, "model"),
        ({"model": "", "latency_ms": 5.0}, "model"),
        ({"model": "quick", "latency_ms": 5.0, "ttft_ms": 6.0}, "ttft_ms"),
        ({"model": "quick", "latency_ms": 5.0, "ttft_ms": math.nan}, "ttft_ms"),
    ],
)
async def test_bad_outcomes_are_refused_naming_the_field_and_nothing_is_recorded(
    plain: RunningServer,
    details: Callable[[grpc.RpcError], Any],
    fields: dict[str, Any],
    bad: str,
) -> None:
    c = Client(plain)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await c.router.RecordOutcome(pb.RecordOutcomeRequest(success=True, **fields), timeout=5)
    d = details(info.value)
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT and bad in d.fields
    assert (await c.stats("quick"))["quick"].calls == 0


@pytest.mark.parametrize(
    ("weights", "bad"),
    [
        (None, "weights"),
        ((0.5, 0.5, 0.5), "weights"),
        ((0.3, 0.3, 0.3), "weights"),
        ((-0.1, 0.6, 0.5), "weights.cost_weight"),
        ((0.5, math.nan, 0.5), "weights.quality_weight"),
        ((0.0, 0.0, 1.5), "weights.latency_weight"),
    ],
)
async def test_bad_weights_are_refused_naming_the_field_and_change_nothing(
    plain: RunningServer,
    details: Callable[[grpc.RpcError], Any],
    weights: tuple[float, float, float] | None,
    bad: str,
) -> None:
    c = Client(plain)
    req = pb.SetWeightsRequest()
    if weights is not None:
        req.weights.CopyFrom(
            pb.RoutingWeights(
                cost_weight=weights[0], quality_weight=weights[1], latency_weight=weights[2]
            )
        )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await c.router.SetWeights(req, timeout=5)
    d = details(info.value)
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT and bad in d.fields
    now = await c.router.GetWeights(pb.GetWeightsRequest(), timeout=5)
    assert now.defaults and now.weights.cost_weight == 0.4


async def test_model_stats_page_by_name(plain: RunningServer, details: Any) -> None:
    c = Client(plain)
    first = await c.router.ListModelStats(pb.ListModelStatsRequest(page_size=1), timeout=5)
    assert [s.model for s in first.stats] == ["cheap"] and first.next_page_token
    rest = await c.router.ListModelStats(
        pb.ListModelStatsRequest(page_size=10, page_token=first.next_page_token), timeout=5
    )
    assert [s.model for s in rest.stats] == ["quick", "sim-embed", "sim-large", "sim-small"]
    assert rest.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await c.router.ListModelStats(pb.ListModelStatsRequest(page_token="nope"), timeout=5)
    assert details(info.value).fields == ["page_token"]


# -- restart --------------------------------------------------------------------------------


def _durable(stats: dict[str, pb.ModelStats]) -> dict[str, pb.ModelStats]:
    """The stats without what is kept in memory only (the ttft window) or moves with the clock
    (the decayed sample weight, compared apart)."""
    out = {}
    for name, s in stats.items():
        copy = pb.ModelStats()
        copy.CopyFrom(s)
        for field in ("p50_ttft_ms", "p95_ttft_ms", "ttft_samples", "recent_samples"):
            copy.ClearField(field)
        out[name] = copy
    return out


async def test_stats_and_weights_are_the_same_after_a_restart(tmp_path: Path) -> None:
    s = two_simulated(stats_store="sqlite", sqlite_path=str(tmp_path / "router.db"))
    async with running_server(s) as rs:
        c = Client(rs)
        for _ in range(3):
            await c.stream("quick")
            await c.generate("cheap")
        await c.record("cheap", False, 900, 0)
        await until(lambda: _calls(c, {"quick": 3, "cheap": 4}), "every call recorded", tries=1000)
        await c.set_weights(cost=0.25, quality=0.25, latency=0.5)
        before = await c.stats()
        weights = await c.router.GetWeights(pb.GetWeightsRequest(), timeout=5)
        chosen = await c.select("auto")
    async with running_server(s) as rs:
        c = Client(rs)
        after = await c.stats()
        assert _durable(after) == _durable(before)
        for name in before:
            assert after[name].recent_samples == pytest.approx(
                before[name].recent_samples, rel=1e-3
            )
        assert await c.router.GetWeights(pb.GetWeightsRequest(), timeout=5) == weights
        again = await c.select("auto")
        assert (again.model, again.score) == (chosen.model, pytest.approx(chosen.score))


async def _calls(c: Client, want: dict[str, int]) -> bool:
    stats = await c.stats(*want)
    return all(stats[m].calls == n for m, n in want.items())
