"""What one guard costs per attempt: an in-process micro-benchmark of the inference core.

The public API has no knob for adding guards, so this drives ``aurea.inference.Inference``
directly, in one process on uvloop, with the real router and provider actors and an instant
in-memory provider (a 32-token stream, or one completion), and varies only the guards:

* ``noop_N``: N guards (N = 0, 1, 2, 4, 8) whose ``admit`` hands back a fresh permit that does
  nothing: the attempt loop's own cost per guard (admit, ``AsyncExitStack`` entry and exit,
  ``observe`` per usage update);
* ``allow_deny``: the shipped ``AllowDenyGuard`` alone (an in-memory guard, no mailbox hop);
* ``actor_hop``: one guard that asks an in-memory actor per attempt (one mailbox round trip,
  what an in-memory guard costs if it decides inside an actor instead of in the caller's task);
* ``metrics``: no guard, but everything the server records per call in Prometheus: the edge's
  observer around the call (request count and latency, in-flight gauge) and the call record
  sink (tasks, tokens, cost, TTFT, attempts);
* ``tracing``: ``metrics`` plus tracing as the server runs it with an OTLP endpoint set: the call
  span opened and closed by the edge's observer, the attempt span from ``TracingGuard``, the
  record annotating the call span, spans handed to a batch processor (its exporter drops them);
* ``limiter_unlimited``: the rate limiter over the in-memory store for a model with no limits of
  its own (what every model pays: one ``acquire`` of the zero-cost upstream-hold quota, and the
  permit listening for the upstream's rate-limit headers);
* ``limiter_rpm_tpm``: the rate limiter for a model with RPM and TPM limits it never reaches
  (one ``acquire`` of three quotas, and a token refund by actual usage when the attempt ends);
* ``ledger_memory``: the ledger guard over the in-memory ledger store (the reservation decided
  in memory, the lease checked per delta, the settle summed in memory);
* ``ledger_sqlite``: the same over the SQLite ledger store (WAL, its own thread), as the server
  runs it: the settle writes the attempt's spend (one charge, no lease) and is awaited until
  committed, the attempt's one store round trip; settles queued meanwhile share a transaction;
* ``ledger_sqlite_leases``: SQLite with a store lease per attempt (``leases=True``, what a store
  shared by several processes needs): reserve queued at admission, settle awaited, both group
  committed;
* ``ledger_sqlite_unbatched``: the same with one transaction per operation (``max_batch=1``),
  which is how the SQLite ledger ran before group commit: the baseline, in the same run.

The SQLite configurations also report ``tx_per_attempt``: write transactions the database
committed per attempt (counted by ``SqliteDatabase.commits``, not timed). Sequential calls are
concurrency 1; ``--concurrency`` (16) runs a second pass in which that many callers share the
core (``noop_0`` and the ledger configurations only) and reports the wall time per attempt
(elapsed over attempts, i.e. the inverse of throughput), the process CPU per attempt and the
transactions per attempt.

The circuit breaker is not a guard: it decides inside the provider actor's ``Admit``, which every
configuration pays (``noop_0`` included). ``breaker_us_per_attempt`` measures its share directly:
one attempt's ``check`` + ``start`` + ``record`` on a closed breaker, plus building an ``Admit``
whose model defaults to the one in the call's record.

Each configuration runs ``--calls`` sequential calls per round, rounds interleaved across
configurations, and reports per call the wall time (p50, p90) and the process CPU, each the
median over rounds. ``per_guard`` is the least-squares slope over the ``noop_N`` points, i.e.
what each extra no-op guard adds. The per-guard budget (``benchmarks/README.md``): an
in-memory guard adds <= 10 us p50 per attempt; reported, never asserted.

    python benchmarks/bench_guards.py --quick     # about 10 s
    python benchmarks/bench_guards.py             # 5 rounds, about 40 s

Prints one JSON object, also written to ``benchmarks/results/guards.json``. It imports Aurea's
internals, so it follows their refactors; the HTTP-level benchmarks use only the public API.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import uvloop
from _common import RESULTS_DIR, machine, run_main, source, write_result
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from aurea.actors.breaker import Breaker, Outcome
from aurea.actors.provider import Admit, ProviderActor, ProviderBook
from aurea.config import RetrySettings, TelemetrySettings, build_settings
from aurea.inference import AllowDenyGuard, AttemptInfo, GenerateCall, Inference
from aurea.inference.calls import CallKind, CallRecord, current_record
from aurea.ledger import LedgerBook, LedgerGuard
from aurea.ledger._journal import DEFAULT_MAX_BATCH
from aurea.limits import LimiterGuard, LimitsTable
from aurea.providers._base import (
    ChatMessage,
    Completion,
    Embeddings,
    EmbedRequest,
    Finish,
    FinishReason,
    ProviderEvent,
    ProviderRequest,
    Role,
    TextDelta,
    Usage,
    UsageReport,
)
from aurea.routing import Candidate, RouterView, RoutingTable
from aurea.runtime import Actor, ActorSystem, Ask
from aurea.stores.memory import MemoryLedgerStore, MemoryLimiterStore
from aurea.stores.sqlite import SqliteDatabase, SqliteLedgerStore
from aurea.telemetry import metrics
from aurea.telemetry.observer import CallTelemetry
from aurea.telemetry.tracing import TracingGuard, build_tracing

RESULTS = RESULTS_DIR / "guards.json"
MODEL = "bench-model"
TOKENS = 32
NOOP_COUNTS = (0, 1, 2, 4, 8)
BUDGET_IN_MEMORY_GUARD_P50_US_MAX = 10.0
RPCS = ("Generate", "GenerateStream")
OPERATIONS = {rpc: f"aurea.v1.InferenceService/{rpc}" for rpc in RPCS}


class InstantProvider:
    """A Provider that answers at once: 32 deltas then usage and finish, or one completion."""

    name = "bench"

    def __init__(self) -> None:
        self._deltas = [TextDelta(f" t{i}") for i in range(TOKENS)]
        self._usage = Usage(input_tokens=12, output_tokens=TOKENS)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        for d in self._deltas:
            yield d
        yield UsageReport(self._usage)
        yield Finish(FinishReason.STOP)

    async def complete(self, request: ProviderRequest) -> Completion:
        return Completion(text="t" * TOKENS, finish=Finish(FinishReason.STOP), usage=self._usage)

    async def embed(self, request: EmbedRequest) -> Embeddings:
        return Embeddings(vectors=((1.0,),), usage=self._usage)

    async def list_models(self) -> list[str]:
        return [MODEL]

    async def aclose(self) -> None:
        pass


class CountingPermit:
    """What a cheap in-memory guard hands back: a small object, one counter per observe."""

    __slots__ = ("observed",)

    def __init__(self) -> None:
        self.observed = 0

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        self.observed += 1

    async def __aenter__(self) -> CountingPermit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class NoopGuard:
    name = "noop"

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> CountingPermit:
        return CountingPermit()


@dataclass(frozen=True, slots=True, kw_only=True)
class Check(Ask[bool]):
    model: str


class Decider(Actor[Check]):
    """An in-memory decision behind a mailbox: the cost of one ask per attempt."""

    async def receive(self, msg: Check) -> Any:
        return msg.model == MODEL


class HopGuard:
    name = "actor_hop"

    def __init__(self, ref: Any) -> None:
        self._ref = ref

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> CountingPermit:
        await self._ref.ask(Check(model=candidate.model.name), timeout_s=5.0)
        return CountingPermit()


class _DropSpans(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def telemetry(name: str) -> tuple[list[Any], list[Any], CallTelemetry | None]:
    """(extra guards, record sinks, edge observer) of a telemetry configuration."""
    if name == "metrics":
        return [], [metrics.record_call], CallTelemetry(metrics_on=True)
    if name == "tracing":
        tracing = build_tracing(
            TelemetrySettings(), version="bench", exporter=_DropSpans(), batch=True
        )
        assert tracing is not None
        return (
            [TracingGuard(tracing)],
            [metrics.record_call, tracing.record_call],
            CallTelemetry(metrics_on=True, tracing=tracing),
        )
    return [], [], None


TELEMETRY = ("metrics", "tracing")


def configurations(system: ActorSystem) -> dict[str, list[Any]]:
    configs: dict[str, list[Any]] = {
        f"noop_{n}": [NoopGuard() for _ in range(n)] for n in NOOP_COUNTS
    }
    configs["allow_deny"] = [AllowDenyGuard(allowed=(MODEL,), denied=("other",))]
    configs["actor_hop"] = [HopGuard(system.spawn("decider", Decider))]
    for name in TELEMETRY:
        configs[name] = telemetry(name)[0]
    configs["limiter_unlimited"] = [limiter()]
    # Limits far above what the benchmark reaches: every attempt is admitted, then refunded.
    configs["limiter_rpm_tpm"] = [limiter(rpm=10**9, tpm=10**12)]
    return configs


def limiter(**limits: int) -> LimiterGuard:
    """The server's rate limiter over the in-memory store, for the bench model with ``limits``."""
    s = build_settings(
        {
            "providers": {"bench": {"kind": "simulated"}},
            "models": {MODEL: {"provider": "bench", **limits}},
        }
    )
    table = LimitsTable(models=s.models, settings=s.limits)
    return LimiterGuard(table=table, store=MemoryLimiterStore())


LEDGERS = ("ledger_memory", "ledger_sqlite", "ledger_sqlite_leases", "ledger_sqlite_unbatched")
SQLITE_LEDGERS = {  # name -> (a lease per attempt, operations per transaction at most)
    "ledger_sqlite": (False, DEFAULT_MAX_BATCH),
    "ledger_sqlite_leases": (True, DEFAULT_MAX_BATCH),
    "ledger_sqlite_unbatched": (True, 1),
}


async def ledger_guards(
    tmp: Path,
) -> tuple[dict[str, list[Any]], dict[str, LedgerBook], dict[str, SqliteDatabase]]:
    """The ledger guard over each store, on an unlimited job (no call is ever refused); each
    SQLite configuration on its own file, so its transactions are counted apart."""
    books = {
        "ledger_memory": LedgerBook(
            MemoryLedgerStore(), default_budget_nanos=None, lease_ttl_s=60, durable=False
        )
    }
    dbs: dict[str, SqliteDatabase] = {}
    for name, (leases, max_batch) in SQLITE_LEDGERS.items():
        db = dbs[name] = await SqliteDatabase.open(tmp / f"{name}.db")
        books[name] = LedgerBook(
            SqliteLedgerStore(db),
            default_budget_nanos=None,
            lease_ttl_s=60,
            durable=True,
            leases=leases,
            max_batch=max_batch,
            on_stop=db.close,
        )
    for book in books.values():
        await book.start()
    guards: dict[str, list[Any]] = {name: [LedgerGuard(b)] for name, b in books.items()}
    return guards, books, dbs


def breaker_us_per_attempt(n: int = 200_000) -> float:
    """One attempt's breaker work on a closed breaker (check, start, record) plus building an
    ``Admit`` whose model comes from the call's record, in microseconds (best of 5 runs)."""
    b = Breaker(provider="bench", model=MODEL, failure_threshold=5, open_timeout_s=30.0)
    token = current_record.set(CallRecord(request_id="bench", kind=CallKind.UNARY, model=MODEL))
    best = math.inf
    try:
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                Admit(request_id="bench")
                probe = b.check(1.0)
                b.start(probe, 1.0)
                b.record(Outcome.OK, probe, 1.0, 1.0)
            best = min(best, time.perf_counter() - t0)
    finally:
        current_record.reset(token)
    return best / n * 1e6


def percentile(sorted_values: list[float], q: float) -> float:
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    settings = build_settings(
        {
            "providers": {"bench": {"kind": "simulated"}},
            "models": {
                MODEL: {"provider": "bench", "input_usd_per_mtok": "1", "output_usd_per_mtok": "2"}
            },
            "routing": {"default_model": MODEL},
        }
    )
    system = ActorSystem()
    view = RouterView(RoutingTable(models=settings.models, settings=settings.routing))
    provider = system.spawn(
        "provider:bench",
        lambda: ProviderActor(
            provider=InstantProvider(), kind="bench", max_concurrency=64, book=ProviderBook()
        ),
    )
    configs = configurations(system)
    tmp = tempfile.TemporaryDirectory(prefix="aurea-bench-")
    ledgers, books, dbs = await ledger_guards(Path(tmp.name))
    configs.update(ledgers)
    cores = {
        name: Inference(
            view=view,
            providers={"bench": provider},
            retry=RetrySettings(max_retries=0),
            ask_timeout_s=5.0,
            guards=guards,
            sinks=telemetry(name)[1],
        )
        for name, guards in configs.items()
    }
    observers = {name: telemetry(name)[2] for name in configs}
    messages = (ChatMessage(Role.USER, "Benchmark prompt: say something steady."),)
    unary_call = GenerateCall(request_id="bench", messages=messages, model=MODEL)
    stream_call = GenerateCall(
        request_id="bench", messages=messages, model=MODEL, usage_interval=16
    )

    async def emit(ev: Any) -> None:
        return None

    rounds: dict[tuple[str, str], list[dict[str, float]]] = {}
    rounds_c: dict[tuple[str, str], list[dict[str, float]]] = {}
    concurrent_configs = ["noop_0", *LEDGERS]
    deadline = time.monotonic() + args.max_seconds
    truncated = False
    perf, cpu = time.perf_counter, time.process_time
    async with system:
        for r in range(args.rounds):
            if time.monotonic() > deadline:
                truncated = True
                break
            for rpc in args.rpc:
                n_calls = args.calls if rpc == "Generate" else max(1, args.calls // 4)
                order = list(cores.items())
                if r % 2:
                    order.reverse()  # cancel out any drift within a round
                for name, core in order:
                    obs = observers[name]
                    for _ in range(args.warmup_calls):
                        await _one(core, rpc, unary_call, stream_call, emit, obs)
                    samples: list[float] = []
                    # Collect first and pause the collector while sampling, as timeit does,
                    # so a collection does not land on one configuration only.
                    gc.collect()
                    gc.disable()
                    db = dbs.get(name)
                    tx0 = db.commits if db is not None else 0
                    try:
                        c0 = cpu()
                        for _ in range(n_calls):  # bounded in count; rounds bound the time
                            t0 = perf()
                            await _one(core, rpc, unary_call, stream_call, emit, obs)
                            samples.append(perf() - t0)
                        c1 = cpu()
                    finally:
                        gc.enable()
                    samples.sort()
                    row = {
                        "p50_us": percentile(samples, 50) * 1e6,
                        "p90_us": percentile(samples, 90) * 1e6,
                        "cpu_us_per_call": (c1 - c0) * 1e6 / n_calls,
                    }
                    if db is not None:
                        await books[name].journal.drain(10)
                        row["tx_per_attempt"] = (db.commits - tx0) / n_calls
                    rounds.setdefault((rpc, name), []).append(row)
                if args.concurrency > 1:
                    for name in order_of(concurrent_configs, r):
                        rounds_c.setdefault((rpc, name), []).append(
                            await _concurrent(
                                cores[name],
                                rpc,
                                unary_call,
                                stream_call,
                                emit,
                                workers=args.concurrency,
                                calls=n_calls,
                                db=dbs.get(name),
                                book=books.get(name),
                            )
                        )
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    for book in books.values():
        await book.stop()
    tmp.cleanup()
    return {
        "results": _medians(rounds),
        f"results_concurrency_{args.concurrency}": _medians(rounds_c),
        "truncated": truncated,
    }


def _medians(
    rounds: dict[tuple[str, str], list[dict[str, float]]],
) -> dict[str, dict[str, dict[str, float]]]:
    results: dict[str, dict[str, dict[str, float]]] = {}
    for (rpc, name), rs in rounds.items():
        results.setdefault(rpc, {})[name] = {
            key: round(statistics.median(x[key] for x in rs), 3 if key.startswith("tx") else 2)
            for key in rs[0]
        } | {"rounds": len(rs)}
    return results


def order_of(names: list[str], r: int) -> list[str]:
    """Every other round in reverse, to cancel out any drift within a round."""
    return list(reversed(names)) if r % 2 else list(names)


async def _concurrent(
    core: Inference,
    rpc: str,
    unary_call: GenerateCall,
    stream_call: GenerateCall,
    emit: Any,
    *,
    workers: int,
    calls: int,
    db: SqliteDatabase | None,
    book: LedgerBook | None,
) -> dict[str, float]:
    """``workers`` callers sharing the core, ``calls`` attempts in all (after a short warm-up):
    wall and process CPU per attempt, and SQLite transactions per attempt."""
    per = max(1, calls // workers)

    async def worker(n: int) -> None:
        for _ in range(n):
            await _one(core, rpc, unary_call, stream_call, emit)

    await asyncio.gather(*(worker(2) for _ in range(workers)))
    if book is not None:
        await book.journal.drain(10)
    gc.collect()
    gc.disable()
    tx0 = db.commits if db is not None else 0
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(per) for _ in range(workers)))
        t1, c1 = time.perf_counter(), time.process_time()
    finally:
        gc.enable()
    n = per * workers
    row = {"us_per_attempt": (t1 - t0) * 1e6 / n, "cpu_us_per_attempt": (c1 - c0) * 1e6 / n}
    if db is not None and book is not None:
        await book.journal.drain(10)
        row["tx_per_attempt"] = (db.commits - tx0) / n
    return row


async def _one(
    core: Inference,
    rpc: str,
    unary_call: GenerateCall,
    stream_call: GenerateCall,
    emit: Any,
    obs: CallTelemetry | None = None,
) -> None:
    if obs is None:
        if rpc == "Generate":
            await core.generate(unary_call)
        else:
            await core.stream(stream_call, emit)
        return
    # what the edge does around a call when telemetry is on (the CallTelemetry hooks)
    t0 = time.monotonic()
    obs.opened(OPERATIONS[rpc], {}, "bench", "grpc")
    try:
        if rpc == "Generate":
            await core.generate(unary_call)
        else:
            await core.stream(stream_call, emit)
    finally:
        obs.finished("OK", time.monotonic() - t0)


def summarize(
    results: dict[str, dict[str, dict[str, float]]],
    measured_c: dict[str, dict[str, dict[str, float]]] | None = None,
    concurrency: int = 16,
) -> dict[str, Any]:
    measured_c = measured_c or {}
    per_guard: dict[str, Any] = {}
    met: dict[str, Any] = {}
    for rpc, by_config in results.items():
        base = by_config["noop_0"]
        row: dict[str, Any] = {}
        for key in ("p50_us", "cpu_us_per_call"):
            pts = [(float(n), by_config[f"noop_{n}"][key]) for n in NOOP_COUNTS]
            row[f"noop_guard_{key}"] = round(slope(pts), 2)
            row[f"allow_deny_guard_{key}"] = round(by_config["allow_deny"][key] - base[key], 2)
            row[f"actor_hop_guard_{key}"] = round(by_config["actor_hop"][key] - base[key], 2)
            for name in ("limiter_unlimited", "limiter_rpm_tpm", *LEDGERS):
                row[f"{name}_guard_{key}"] = round(by_config[name][key] - base[key], 2)
            for name in TELEMETRY:
                if name in by_config:
                    row[f"{name}_per_call_{key}"] = round(by_config[name][key] - base[key], 2)
        for name in SQLITE_LEDGERS:
            row[f"{name}_tx_per_attempt"] = by_config[name].get("tx_per_attempt")
        conc = measured_c.get(rpc, {})
        if "noop_0" in conc:
            cbase = conc["noop_0"]
            for name in LEDGERS:
                if name in conc:
                    c = conc[name]
                    row[f"c{concurrency}_{name}_guard_us_per_attempt"] = round(
                        c["us_per_attempt"] - cbase["us_per_attempt"], 2
                    )
                    row[f"c{concurrency}_{name}_guard_cpu_us_per_attempt"] = round(
                        c["cpu_us_per_attempt"] - cbase["cpu_us_per_attempt"], 2
                    )
                    if "tx_per_attempt" in c:
                        row[f"c{concurrency}_{name}_tx_per_attempt"] = c["tx_per_attempt"]
        per_guard[rpc] = row
        limit = BUDGET_IN_MEMORY_GUARD_P50_US_MAX
        met[rpc] = {
            "noop_guard_p50_us": row["noop_guard_p50_us"] <= limit,
            "allow_deny_guard_p50_us": row["allow_deny_guard_p50_us"] <= limit,
            "limiter_unlimited_guard_p50_us": row["limiter_unlimited_guard_p50_us"] <= limit,
            "limiter_rpm_tpm_guard_p50_us": row["limiter_rpm_tpm_guard_p50_us"] <= limit,
            "ledger_memory_guard_p50_us": row["ledger_memory_guard_p50_us"] <= limit,
        }
    return {
        "per_guard": per_guard,
        "budget": {"in_memory_guard_p50_us_max": BUDGET_IN_MEMORY_GUARD_P50_US_MAX, "met": met},
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Per-guard cost of the attempt loop, in process.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--calls", type=int, default=2000, help="unary calls per config per round")
    p.add_argument("--warmup-calls", type=int, default=200, help="unmeasured calls first")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians (5)")
    p.add_argument("--rpc", action="append", choices=RPCS, help="repeatable (default: both)")
    p.add_argument("--max-seconds", type=float, default=300.0, help="stop starting rounds after")
    p.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="callers in the concurrent pass over noop_0 and the ledgers (16; 1: no such pass)",
    )
    p.add_argument("--quick", action="store_true", help="2 rounds of 500 calls")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    args = p.parse_args(argv)
    if args.quick:
        args.calls, args.warmup_calls, args.rounds = 500, 50, 2
    args.calls, args.rounds = max(1, args.calls), max(1, args.rounds)
    args.rpc = args.rpc or list(RPCS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = round(os.getloadavg()[0], 2)
    t0 = time.monotonic()
    out: dict[str, Any] = {"machine": machine(), "source": source()}
    out["config"] = {
        "calls_per_round": args.calls,
        "stream_calls_per_round": max(1, args.calls // 4),
        "rounds": args.rounds,
        "tokens_per_stream": TOKENS,
        "noop_guard_counts": list(NOOP_COUNTS),
        "concurrency": args.concurrency,
        "loop": "uvloop",
    }
    measured = uvloop.run(measure(args))
    out.update(measured)
    conc = measured.get(f"results_concurrency_{args.concurrency}", {})
    out.update(summarize(measured["results"], conc, args.concurrency))
    out["breaker_us_per_attempt"] = round(breaker_us_per_attempt(), 3)
    out["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    out["machine"]["loadavg_1m_at_start"] = load_at_start
    out["wall_s"] = round(time.monotonic() - t0, 1)
    write_result(args.output, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
