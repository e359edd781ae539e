"""Closed-loop load generator: C workers on one grpc.aio channel (uvloop), each calling one RPC
back to back for a warm-up and then a measured window, recording per-call latency (and, for
streams, time to first delta). Prints one JSON object on stdout.

Run by ``bench_inference.py`` as a separate process, so the client's CPU is not the server's:

    python benchmarks/_loadgen.py --target 127.0.0.1:50051 --rpc Generate --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
import time
from dataclasses import dataclass, field

import grpc
import uvloop

from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

RPCS = ("Generate", "GenerateStream")


@dataclass
class Tally:
    latencies_s: list[float] = field(default_factory=list)
    ttfd_s: list[float] = field(default_factory=list)
    events: int = 0  # stream messages received in the window
    errors: dict[str, int] = field(default_factory=dict)
    calls: int = 0  # every call started, warm-up included

    def error(self, exc: grpc.RpcError) -> None:
        code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
        self.errors[code] = self.errors.get(code, 0) + 1


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in [0, 100])."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def summary_ms(values_s: list[float], prefix: str = "") -> dict[str, float]:
    s = sorted(values_s)
    return {
        f"{prefix}p50_ms": round(percentile(s, 50) * 1e3, 3),
        f"{prefix}p90_ms": round(percentile(s, 90) * 1e3, 3),
        f"{prefix}p99_ms": round(percentile(s, 99) * 1e3, 3),
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    channel = grpc.aio.insecure_channel(args.target)
    await asyncio.wait_for(channel.channel_ready(), timeout=10)
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    tally = Tally()
    now = time.perf_counter
    t_start = now()
    t_measure = t_start + args.warmup
    t_end = t_measure + args.duration
    per_worker = max(1, args.max_calls // args.concurrency)

    async def unary_worker() -> None:
        req = pb.GenerateRequest(prompt=args.prompt)
        for _ in range(per_worker):
            t0 = now()
            if t0 >= t_end:
                return
            tally.calls += 1
            try:
                await stub.Generate(req, timeout=args.timeout)
            except grpc.RpcError as exc:
                tally.error(exc)
                continue
            t1 = now()
            if t0 >= t_measure and t1 <= t_end:
                tally.latencies_s.append(t1 - t0)

    async def stream_worker() -> None:
        req = pb.GenerateStreamRequest(prompt=args.prompt)
        for _ in range(per_worker):
            t0 = now()
            if t0 >= t_end:
                return
            tally.calls += 1
            first = 0.0
            n = 0
            try:
                async for ev in stub.GenerateStream(req, timeout=args.timeout):
                    n += 1
                    if not first and ev.WhichOneof("event") == "delta":
                        first = now()
            except grpc.RpcError as exc:
                tally.error(exc)
                continue
            t1 = now()
            if t0 >= t_measure and t1 <= t_end:
                tally.latencies_s.append(t1 - t0)
                tally.events += n
                if first:
                    tally.ttfd_s.append(first - t0)

    worker = unary_worker if args.rpc == "Generate" else stream_worker
    cpu0 = 0.0

    async def cpu_mark() -> None:
        nonlocal cpu0
        await asyncio.sleep(max(0.0, t_measure - now()))
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = ru.ru_utime + ru.ru_stime

    mark = asyncio.ensure_future(cpu_mark())
    bound_s = args.warmup + args.duration + args.timeout + 5
    try:
        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(args.concurrency))), timeout=bound_s
        )
    finally:
        await mark
        ru = resource.getrusage(resource.RUSAGE_SELF)
        await channel.close()
    # Calls in flight at t_end finish after it; the window still counts only calls inside it.
    n = len(tally.latencies_s)
    out: dict[str, object] = {
        "rpc": args.rpc,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "calls": n,
        "calls_total": tally.calls,
        "rps": round(n / args.duration, 1),
        **summary_ms(tally.latencies_s),
        "errors": tally.errors,
        "client_cpu_ms_per_call": round((ru.ru_utime + ru.ru_stime - cpu0) * 1e3 / max(n, 1), 3),
        "client_cpu_s_total": round(ru.ru_utime + ru.ru_stime, 3),
    }
    if args.rpc == "GenerateStream":
        out.update(summary_ms(tally.ttfd_s, "ttfd_"))
        out["events_per_stream"] = round(tally.events / max(n, 1), 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target", required=True, help="host:port (127.0.0.1 only)")
    p.add_argument("--rpc", choices=RPCS, required=True)
    p.add_argument("--concurrency", type=int, default=1, help="closed-loop workers")
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    p.add_argument("--max-calls", type=int, default=2_000_000, help="cap on calls, all workers")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call deadline in seconds")
    p.add_argument("--prompt", default="Benchmark prompt: say something steady.")
    args = p.parse_args()
    if not args.target.startswith(("127.0.0.1:", "localhost:")):
        p.error("the load generator only targets 127.0.0.1")
    result = uvloop.run(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
