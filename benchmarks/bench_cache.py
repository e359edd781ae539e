"""The cache-hit path: requests/s and latency of ``Generate`` and ``GenerateStream`` answered
from Aurea's response cache, against the floor, and against Aurea's full path on the same
server (a call that is not cacheable goes to the simulated provider).

Every party runs in its own process on 127.0.0.1:

* **Aurea**: ``aurea serve`` with the simulated provider at zero delay and a 32-token answer;
  the memory cache (default), or with ``--redis`` a ``redis-server`` started for the run
  (``[cache] redis_url``): then each hit is one Redis ``GET``;
* the **floor** (``_floor_server.py``): a bare grpc.aio server answering with the exact bytes of
  Aurea's cache-hit responses (captured first), so both send the same messages;
* the **load generator** (``_loadgen.py``): C closed-loop workers; ``--temperature 0`` makes
  every call cacheable (one priming call stores the answer, then every call is a hit).

For each RPC and concurrency, the floor, the hit path and the full path run back to back, in
``--rounds`` interleaved rounds; each figure is the median. Reported, never asserted. One JSON
object is printed and written to ``benchmarks/results/cache.json``.

    python benchmarks/bench_cache.py                  # 3 rounds x 1.5 s at c1, c16, c64
    python benchmarks/bench_cache.py --quick          # 1 round x 1 s at c1, c16
    python benchmarks/bench_cache.py --redis          # hits from a real redis-server
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from _common import (
    RESULTS_DIR,
    Server,
    busy_cpu_seconds,
    cpu_seconds,
    free_port,
    machine,
    median_of,
    noise,
    run_loadgen,
    run_main,
    servers_stopped,
    source,
    start_aurea,
    write_result,
)
from bench_inference import PROMPT, aurea_config, ratios, start_floor

from aurea.testing.redis import RedisServer
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

RESULTS = RESULTS_DIR / "cache.json"
RPCS = ("Generate", "GenerateStream")


def capture_hits(target: str) -> dict[str, Any]:
    """Prime the cache, then capture one hit of each RPC (the floor's answers)."""
    import base64

    with grpc.insecure_channel(target) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)
        request = pb.GenerateRequest(prompt=PROMPT, temperature=0.0)
        stub.Generate(request, timeout=10)  # the miss that stores the answer
        hit = stub.Generate(request, timeout=10)
        events = list(stub.GenerateStream(pb.GenerateStreamRequest(request=request), timeout=10))
    if not hit.cache_hit or not events[0].started.cache_hit:
        raise RuntimeError("the priming calls did not make the next ones cache hits")
    kinds = [e.WhichOneof("event") for e in events]
    return {
        "generate": base64.b64encode(hit.SerializeToString()).decode(),
        "stream": [base64.b64encode(e.SerializeToString()).decode() for e in events],
        "shape": {k: kinds.count(k) for k in dict.fromkeys(kinds)},
        "output_tokens": 0,
    }


def load(
    server: Server, rpc: str, concurrency: int, args: argparse.Namespace, *, hit: bool
) -> dict[str, Any]:
    cmd = [
        "--target", server.target,
        "--rpc", rpc,
        "--concurrency", str(concurrency),
        "--duration", str(args.duration),
        "--warmup", str(args.warmup),
        "--prompt", PROMPT,
    ]  # fmt: skip
    if hit:
        cmd += ["--temperature", "0"]
    cpu0, busy0, wall0 = cpu_seconds(server.proc.pid), busy_cpu_seconds(), time.monotonic()
    result = run_loadgen(
        cmd,
        budget_s=args.warmup + args.duration + 30,
        cpu=args.client_cpu,
        describe=f"{server.name} {rpc} c{concurrency}",
        log_tail=f"server log:\n{server.log_tail()}",
    )
    cpu1, busy1, wall1 = cpu_seconds(server.proc.pid), busy_cpu_seconds(), time.monotonic()
    total = max(int(result.pop("calls_total")), 1)
    result["server_cpu_ms_per_call"] = round((cpu1 - cpu0) * 1e3 / total, 3)
    foreign = (busy1 - busy0) - (cpu1 - cpu0) - float(result.pop("client_cpu_s_total"))
    result["foreign_cpu_pct"] = round(max(0.0, foreign) / (wall1 - wall0) * 100, 1)
    for key in ("rpc", "concurrency", "duration_s"):
        result.pop(key)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--rpc", action="append", choices=RPCS)
    p.add_argument("--duration", type=float, default=1.5)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 round of 1 s runs at c1, c16")
    p.add_argument("--redis", action="store_true", help="hits from a real redis-server")
    p.add_argument("--server-cpu", type=int, default=None)
    p.add_argument("--client-cpu", type=int, default=None)
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup, args.concurrency = 1, 1.0, 0.3, "1,16"
    args.rpc = args.rpc or list(RPCS)
    levels = [int(c) for c in args.concurrency.split(",")]
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    started: list[Server] = []
    redis: RedisServer | None = None
    with tempfile.TemporaryDirectory(prefix="aurea-bench-cache-") as tmp, servers_stopped(started):
        workdir = Path(tmp)
        try:
            port = free_port()
            config = aurea_config(port, "warning")
            if args.redis:
                redis = RedisServer.start()
                config += f'\n[cache]\nredis_url = "{redis.url}"\n'
            aurea = start_aurea(workdir, "aurea", config, port, args.server_cpu)
            started.append(aurea)
            payload = capture_hits(aurea.target)
            floor = start_floor(workdir, payload, args.server_cpu)
            started.append(floor)
            for _ in range(args.rounds):
                for rpc in args.rpc:
                    for c in levels:
                        for name, server, hit in (
                            ("floor", floor, True),
                            ("hit", aurea, True),
                            ("full", aurea, False),
                        ):
                            r = load(server, rpc, c, args, hit=hit)
                            runs.setdefault((name, rpc, c), []).append(r)
                            print(
                                f"{name:5} {rpc:14} c{c:<3} {r['rps']:>8.1f} rps  "
                                f"p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms",
                                file=sys.stderr,
                            )
        finally:
            if redis is not None:
                redis.close()
    out: dict[str, Any] = {
        "config": {
            "backend": "redis" if args.redis else "memory",
            "duration_s": args.duration,
            "rounds": args.rounds,
            "concurrency": levels,
            "stream_events": payload["shape"],
        },
    }
    foreign: list[float] = []
    for rpc in args.rpc:
        section: dict[str, Any] = {}
        for name in ("floor", "hit", "full"):
            section[name] = {}
            for c in levels:
                med = median_of(runs[(name, rpc, c)])
                foreign.extend(r["foreign_cpu_pct"] for r in runs[(name, rpc, c)])
                section[name][f"c{c}"] = med
        section["hit_vs_floor"] = ratios(section["floor"], section["hit"])
        section["full_vs_floor"] = ratios(section["floor"], section["full"])
        out[rpc] = section
    out["noise"] = noise(foreign)
    out["machine"] = machine()
    out["source"] = source()
    write_result(args.output, out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
