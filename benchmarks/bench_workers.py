"""``aurea serve --workers N`` on one Redis: requests/s and p50 of ``Generate`` at concurrency 64
for 1 and 2 workers, against the floor (a bare grpc.aio server answering Aurea's captured bytes).

Every server runs in its own process on 127.0.0.1; Aurea keeps its limiter, ledger, router stats
and task queue in a ``redis-server`` started for the run (``[redis] url``), the simulated
provider answers at zero delay. The client (this process, uvloop) spreads its 64 closed-loop
callers over 16 gRPC connections, so the kernel's SO_REUSEPORT balancing has connections to
spread. On this 2-core machine the client competes with the servers for the cores: the figures
compare configurations measured the same way in one run, nothing more. Reported, never
asserted. Prints one JSON object, also written to ``benchmarks/results/workers.json``.

    python benchmarks/bench_workers.py            # 3 rounds x 3 s
    python benchmarks/bench_workers.py --quick    # 1 round x 2 s
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import uvloop
from _common import (
    RESULTS_DIR,
    Server,
    free_port,
    machine,
    run_main,
    servers_stopped,
    source,
    spawn,
    wait_serving,
    write_result,
)
from bench_inference import PROMPT, aurea_config, capture, start_floor

from aurea.testing.redis import RedisServer
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

RESULTS = RESULTS_DIR / "workers.json"
CONCURRENCY = 64
CONNECTIONS = 16


async def _load(target: str, duration_s: float, warmup_s: float) -> dict[str, float]:
    """64 closed-loop callers over 16 connections; rps and latency over the measured window."""
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CONNECTIONS)
    ]
    stubs = [inference_pb2_grpc.InferenceServiceStub(c) for c in channels]
    request = pb.GenerateRequest(prompt=PROMPT)
    latencies: list[float] = []
    errors = 0
    start = time.monotonic()
    measure_from = start + warmup_s
    end = measure_from + duration_s

    async def caller(i: int) -> None:
        nonlocal errors
        stub = stubs[i % CONNECTIONS]
        while True:
            t0 = time.monotonic()
            if t0 >= end:
                return
            try:
                await stub.Generate(request, timeout=10)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            t1 = time.monotonic()
            if t0 >= measure_from and t1 <= end:
                latencies.append(t1 - t0)

    try:
        await asyncio.gather(*(caller(i) for i in range(CONCURRENCY)))
    finally:
        for c in channels:
            await c.close()
    latencies.sort()
    n = len(latencies)
    return {
        "rps": round(n / duration_s, 1),
        "p50_ms": round(latencies[n // 2] * 1e3, 3) if n else 0.0,
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1e3, 3) if n else 0.0,
        "errors": errors,
    }


def _start_workers(workdir: Path, n: int, port: int, redis_url: str) -> Server:
    cfg = workdir / f"workers{n}.toml"
    cfg.write_text(
        aurea_config(port, "warning")
        + f'\n[redis]\nurl = "{redis_url}"\nkey_prefix = "bench{n}"\n\n[cache]\nenabled = false\n'
    )
    log_path = workdir / f"workers{n}.log"
    cmd = [sys.executable, "-m", "aurea.cli", "serve", "--config", str(cfg), "--workers", str(n)]
    server = Server(f"aurea-{n}w", spawn(cmd, log_path=log_path, cpu=None), port, log_path)
    try:
        wait_serving(server)
    except BaseException:
        server.stop()
        raise
    return server


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 round of 2 s runs")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    runs: dict[str, list[dict[str, float]]] = {"floor": [], "workers_1": [], "workers_2": []}
    started: list[Server] = []
    with (
        tempfile.TemporaryDirectory(prefix="aurea-bench-workers-") as tmp,
        RedisServer.start() as redis,
        servers_stopped(started),
    ):
        workdir = Path(tmp)
        servers: dict[str, Server] = {}
        for n in (1, 2):
            servers[f"workers_{n}"] = _start_workers(workdir, n, free_port(), redis.url)
            started.append(servers[f"workers_{n}"])
        payload = capture(servers["workers_1"].target)
        servers["floor"] = start_floor(workdir, payload, None)
        started.append(servers["floor"])
        for _ in range(args.rounds):
            for name in ("floor", "workers_1", "workers_2"):
                r = uvloop.run(_load(servers[name].target, args.duration, args.warmup))
                runs[name].append(r)
                print(
                    f"{name:10} c{CONCURRENCY} {r['rps']:>8.1f} rps  p50 {r['p50_ms']:7.3f} ms",
                    file=sys.stderr,
                )
    out: dict[str, Any] = {
        "config": {
            "rpc": "Generate",
            "concurrency": CONCURRENCY,
            "connections": CONNECTIONS,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "state": "redis",
        }
    }
    for name, rs in runs.items():
        out[name] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
    floor_rps = out["floor"]["rps"] or 1.0
    for name in ("workers_1", "workers_2"):
        out[name]["rps_vs_floor"] = round(out[name]["rps"] / floor_rps, 3)
    out["workers_2"]["rps_vs_1_worker"] = round(
        out["workers_2"]["rps"] / (out["workers_1"]["rps"] or 1.0), 3
    )
    out["machine"] = machine()
    out["source"] = source()
    write_result(args.output, out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
