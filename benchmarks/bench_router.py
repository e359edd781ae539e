"""What the learning router costs per call: an in-process micro-benchmark.

* ``per_op_ns``: the synchronous work a call does for the router, best of 5 runs: the record
  sink (``RecordInbox``), and ``RoutingTable.route`` for the default model, an explicit model,
  ``auto`` (three candidates, with the breaker-health check) and ``auto`` with one fallback.
* ``in_core``: unary calls through ``aurea.inference.Inference`` against an instant provider,
  interleaved rounds, medians: ``base`` (explicit model, no router sink), ``sink`` (plus the
  sink and a running Router whose pump drains it into the in-memory store) and ``auto`` (plus
  routing ``auto``). The differences to ``base`` are the router's per-call cost, p50 and CPU.
* ``off_path``: what the router does in its own time: folding one outcome into the memory and
  the SQLite store (per outcome, both series), and rebuilding the table (per publish).

The per-guard budget (``benchmarks/README.md``) is <= 10 us p50 per call; reported, not asserted.

    python benchmarks/bench_router.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvloop
from _common import RESULTS_DIR, machine, run_main, source, write_result
from bench_guards import InstantProvider, percentile

from aurea.actors.provider import ProviderActor, ProviderBook
from aurea.actors.router import Router
from aurea.config import RetrySettings, build_settings
from aurea.inference import AttemptRecord, CallKind, CallRecord, GenerateCall, Inference
from aurea.providers._base import ChatMessage, Role
from aurea.routing import AUTO, RecordInbox, RouterView, RoutingTable
from aurea.routing._records import ModelOutcome
from aurea.runtime import ActorSystem
from aurea.stores import Outcome
from aurea.stores.memory.router_stats import MemoryRouterStatsStore
from aurea.stores.sqlite import SqliteDatabase, SqliteRouterStatsStore

RESULTS = RESULTS_DIR / "router.json"
MODELS = ("bench-a", "bench-b", "bench-c")
BUDGET_P50_US_MAX = 10.0


def settings() -> Any:
    prices = {"bench-a": "1", "bench-b": "2", "bench-c": "4"}
    return build_settings(
        {
            "providers": {"bench": {"kind": "simulated"}},
            "models": {
                m: {"provider": "bench", "input_usd_per_mtok": p, "output_usd_per_mtok": p}
                for m, p in prices.items()
            },
            "routing": {
                "default_model": "bench-a",
                "allowed_models": [*MODELS, "sim-embed"],
                "stats_store": "memory",
            },
        }
    )


def best_ns(fn: Callable[[], Any], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter_ns() - t0)
    return best / n


def per_op(n: int) -> dict[str, float]:
    s = settings()
    closed: dict[str, Any] = {}  # like the server's: no breaker has opened

    def health(model: Any) -> bool:
        breaker = closed.get(model.name)
        return breaker is not None

    table = RoutingTable(models=s.models, settings=s.routing, health=health)
    inbox = RecordInbox()
    record = CallRecord(request_id="bench", kind=CallKind.UNARY, latency_s=0.01)
    record.attempts.append(AttemptRecord(model="bench-a", provider="bench", latency_s=0.01))
    count = [0]

    def sink() -> None:
        inbox(record)
        count[0] += 1
        if count[0] % 64 == 0:
            inbox.take()  # what the pump does, off the call path

    return {
        "record_sink_ns": round(best_ns(sink, n), 1),
        "route_default_ns": round(best_ns(lambda: table.route(""), n), 1),
        "route_explicit_ns": round(best_ns(lambda: table.route("bench-b"), n), 1),
        "route_auto_ns": round(best_ns(lambda: table.route(AUTO), n), 1),
        "route_auto_fallback_ns": round(
            best_ns(lambda: table.route(AUTO, fallbacks=("bench-c",)), n), 1
        ),
    }


async def in_core(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    s = settings()
    system = ActorSystem()
    view = RouterView(RoutingTable(models=s.models, settings=s.routing))
    inbox = RecordInbox()
    system.spawn(
        "router",
        lambda: Router(
            models=s.models,
            settings=s.routing,
            view=view,
            store=MemoryRouterStatsStore(),
            inbox=inbox,
            health=lambda m: False,
        ),
    )
    provider = system.spawn(
        "provider:bench",
        lambda: ProviderActor(
            provider=InstantProvider(), kind="bench", max_concurrency=64, book=ProviderBook()
        ),
    )

    def core(sinks: Sequence[Any]) -> Inference:
        return Inference(
            view=view,
            providers={"bench": provider},
            retry=RetrySettings(max_retries=0),
            ask_timeout_s=5.0,
            sinks=sinks,
        )

    messages = (ChatMessage(Role.USER, "Benchmark prompt: say something steady."),)
    configs = {
        "base": (core(()), GenerateCall(request_id="b", messages=messages, model="bench-a")),
        "sink": (core([inbox]), GenerateCall(request_id="b", messages=messages, model="bench-a")),
        "auto": (core([inbox]), GenerateCall(request_id="b", messages=messages, model=AUTO)),
    }
    rounds: dict[str, list[dict[str, float]]] = {}
    perf, cpu = time.perf_counter, time.process_time
    async with system:
        for r in range(args.rounds):
            order = list(configs.items())
            if r % 2:
                order.reverse()
            for name, (c, call) in order:
                for _ in range(args.warmup_calls):
                    await c.generate(call)
                samples: list[float] = []
                gc.collect()
                gc.disable()
                try:
                    c0 = cpu()
                    for _ in range(args.calls):
                        t0 = perf()
                        await c.generate(call)
                        samples.append(perf() - t0)
                    # The pump's share: let it drain what these calls left, inside the CPU window.
                    for _ in range(10_000):
                        if not len(inbox):
                            break
                        await asyncio.sleep(0.001)
                    c1 = cpu()
                finally:
                    gc.enable()
                samples.sort()
                rounds.setdefault(name, []).append(
                    {
                        "p50_us": percentile(samples, 50) * 1e6,
                        "p90_us": percentile(samples, 90) * 1e6,
                        "cpu_us_per_call": (c1 - c0) * 1e6 / args.calls,
                    }
                )
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    out = {
        name: {k: round(statistics.median(x[k] for x in rs), 2) for k in rs[0]}
        for name, rs in rounds.items()
    }
    for name in ("sink", "auto"):
        for k in ("p50_us", "cpu_us_per_call"):
            out[name][f"delta_{k}"] = round(out[name][k] - out["base"][k], 2)
    return out


async def off_path(n: int) -> dict[str, float]:
    s = settings()
    outcomes = [
        ModelOutcome(
            model=MODELS[i % 3],
            outcome=Outcome(success=True, latency_s=0.2, cost_nanos=100, ttft_s=0.05),
            first_token_s=0.05,
        )
        for i in range(n)
    ]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = await SqliteDatabase.open(Path(tmp) / "bench.db")
        try:
            for name, store in (
                ("memory", MemoryRouterStatsStore()),
                ("sqlite", SqliteRouterStatsStore(db)),
            ):
                router = Router(models=s.models, settings=s.routing, store=store)
                t0 = time.perf_counter()
                await router._persist(outcomes)
                out[f"persist_{name}_us_per_outcome"] = round(
                    (time.perf_counter() - t0) / n * 1e6, 2
                )
        finally:
            await db.close()
    router = Router(models=s.models, settings=s.routing)
    t0 = time.perf_counter()
    for _ in range(200):
        router._publish()
    out["publish_us"] = round((time.perf_counter() - t0) / 200 * 1e6, 1)
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Per-call cost of the learning router, in process.")
    p.add_argument("--calls", type=int, default=2000, help="unary calls per config per round")
    p.add_argument("--warmup-calls", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--ops", type=int, default=200_000, help="iterations per micro-op run")
    p.add_argument("--quick", action="store_true", help="2 rounds of 500 calls")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.calls, args.warmup_calls, args.ops = 2, 500, 100, 50_000
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ops = per_op(args.ops)
    core = uvloop.run(in_core(args))
    off = uvloop.run(off_path(3000))
    worst = max(core[n]["delta_p50_us"] for n in ("sink", "auto"))
    result = {
        "benchmark": "router",
        "machine": machine(),
        "source": source(),
        "per_op_ns": ops,
        "in_core": core,
        "off_path": off,
        "budget": {"p50_us_max": BUDGET_P50_US_MAX, "met": worst <= BUDGET_P50_US_MAX},
    }
    write_result(args.output, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
