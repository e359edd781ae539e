"""Aurea's per-call overhead, for ``Generate`` and ``GenerateStream``, at two points.

**Simulated point**, every party in its own process on 127.0.0.1:

* the **floor** (``_floor_server.py``): a bare grpc.aio server on uvloop that answers
  ``aurea.v1.InferenceService`` at once with pre-built messages;
* **Aurea**: ``aurea serve`` with the simulated provider at zero delay and a fixed answer length;
* the **load generator** (``_loadgen.py``): C closed-loop workers on one grpc.aio channel.

Before loading anything it makes one ``Generate`` and one ``GenerateStream`` call to Aurea and
hands the floor those exact responses, so both servers send the same bytes and the same number of
stream events. Then, for each RPC and concurrency, it runs the floor and Aurea back to back:
requests/s, p50/p90/p99 latency, time to first delta for streams, server and client CPU per
call, and the ratios to the floor with the targets (reported, never asserted): Aurea reaches
>= 50% of the floor's requests/s at concurrency 16 and adds <= 1 ms p50 at concurrency 1.

**Upstream point** (``bench_upstream.py``): Aurea in front of a fake OpenAI-compatible HTTP
upstream against calling that upstream directly; targets: <= 1 ms added p50 and TTFT at c1.

One JSON object is printed and written to ``benchmarks/results/inference.json``.

    python benchmarks/bench_inference.py                 # 3 interleaved rounds, about 3 minutes
    python benchmarks/bench_inference.py --quick         # 1 round of 1 s runs, about 45 s
    python benchmarks/bench_inference.py --points simulated --concurrency 1,16 --rpc Generate
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bench_upstream
import grpc
from _common import (
    HERE,
    RESULTS_DIR,
    Server,
    busy_cpu_seconds,
    cpu_seconds,
    free_port,
    machine,
    max_rss_mib,
    median_of,
    noise,
    run_loadgen,
    run_main,
    servers_stopped,
    source,
    start_aurea,
    start_ready,
    write_result,
)

from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

RESULTS = RESULTS_DIR / "inference.json"
RPCS = ("Generate", "GenerateStream")
POINTS = ("simulated", "upstream")
PROMPT = "Benchmark prompt: say something steady."
ANSWER_TOKENS = 32  # the simulated provider's fixed answer length (min_tokens = max_tokens)
TARGET_C16_RPS_RATIO_MIN = 0.5
TARGET_C1_P50_ADDED_MS_MAX = 1.0


def aurea_config(port: int, level: str) -> str:
    return f"""\
[server]
host = "127.0.0.1"
port = {port}
grace_s = 0

[log]
level = "{level}"
format = "json"

[http]
port = 0

[telemetry]
http_port = 0

[providers.simulated]
kind = "simulated"

[providers.simulated.options]
token_delay_ms = 0
first_token_delay_ms = 0
min_tokens = {ANSWER_TOKENS}
max_tokens = {ANSWER_TOKENS}
"""


def start_aurea_sim(workdir: Path, level: str, cpu: int | None) -> Server:
    port = free_port()
    return start_aurea(workdir, f"aurea-{level}", aurea_config(port, level), port, cpu)


def capture(target: str) -> dict[str, Any]:
    """One Generate and one GenerateStream against Aurea: the floor's answers, base64-encoded."""
    with grpc.insecure_channel(target) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)
        response = stub.Generate(pb.GenerateRequest(prompt=PROMPT), timeout=10)
        events = list(
            stub.GenerateStream(
                pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt=PROMPT)), timeout=10
            )
        )
    kinds = [e.WhichOneof("event") for e in events]
    if not kinds or kinds[0] != "started" or kinds[-1] != "final":
        raise RuntimeError(f"unexpected Aurea stream shape: {kinds}")
    return {
        "generate": base64.b64encode(response.SerializeToString()).decode(),
        "stream": [base64.b64encode(e.SerializeToString()).decode() for e in events],
        "shape": {k: kinds.count(k) for k in dict.fromkeys(kinds)},
        "output_tokens": response.usage.output_tokens,
    }


def start_floor(workdir: Path, payload: dict[str, Any], cpu: int | None) -> Server:
    path = workdir / "floor-payload.json"
    path.write_text(json.dumps(payload))
    log_path = workdir / "floor.log"
    cmd = [sys.executable, str(HERE / "_floor_server.py"), "--payload", str(path)]
    server = start_ready(cmd, "floor server", log_path, cpu)
    try:
        wait_serving_floor(server)
    except BaseException:
        server.stop()
        raise
    return server


def wait_serving_floor(server: Server) -> None:
    """The floor has no health service; one Generate proves it answers."""
    with grpc.insecure_channel(server.target) as ch:
        inference_pb2_grpc.InferenceServiceStub(ch).Generate(
            pb.GenerateRequest(prompt=PROMPT), timeout=10
        )


def load(server: Server, rpc: str, concurrency: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run the load generator against ``server`` once; adds server CPU per call and foreign CPU."""
    cmd = [
        "--target", server.target,
        "--rpc", rpc,
        "--concurrency", str(concurrency),
        "--duration", str(args.duration),
        "--warmup", str(args.warmup),
        "--prompt", PROMPT,
    ]  # fmt: skip
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
    # The server's CPU covers warm-up and tail too, so divide by every call made.
    result["server_cpu_ms_per_call"] = round((cpu1 - cpu0) * 1e3 / total, 3)
    # CPU that neither the server nor the load generator used: other work on the machine, which
    # makes the point noisy when it is more than a few percent of one CPU.
    foreign = (busy1 - busy0) - (cpu1 - cpu0) - float(result.pop("client_cpu_s_total"))
    result["foreign_cpu_pct"] = round(max(0.0, foreign) / (wall1 - wall0) * 100, 1)
    for key in ("rpc", "concurrency", "duration_s"):
        result.pop(key)
    if result["errors"]:
        print(
            f"warning: {server.name} {rpc} c{concurrency} errors: {result['errors']}",
            file=sys.stderr,
        )
    return result


def ratios(floor: dict[str, Any], aurea: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in aurea:
        f, a = floor.get(key), aurea[key]
        if not f:
            continue
        c = key  # "c16"
        out[f"{c}_rps_ratio"] = round(a["rps"] / f["rps"], 3) if f["rps"] else None
        out[f"{c}_p50_added_ms"] = round(a["p50_ms"] - f["p50_ms"], 3)
        out[f"{c}_p99_added_ms"] = round(a["p99_ms"] - f["p99_ms"], 3)
        if "ttfd_p50_ms" in a:
            out[f"{c}_ttfd_p50_added_ms"] = round(a["ttfd_p50_ms"] - f["ttfd_p50_ms"], 3)
        if f.get("server_cpu_ms_per_call") and a.get("server_cpu_ms_per_call"):
            # Aurea's server CPU per call over the floor's; its inverse is the rps ratio to
            # expect when the server is CPU-bound, and it moves much less with machine noise.
            out[f"{c}_server_cpu_ratio"] = round(
                a["server_cpu_ms_per_call"] / f["server_cpu_ms_per_call"], 2
            )
            out[f"{c}_cpu_bound_rps_ratio"] = round(
                f["server_cpu_ms_per_call"] / a["server_cpu_ms_per_call"], 3
            )
    return out


def targets(r: dict[str, dict[str, Any]]) -> dict[str, Any]:
    met: dict[str, Any] = {}
    for rpc, x in r.items():
        rps_ratio, added = x.get("c16_rps_ratio"), x.get("c1_p50_added_ms")
        met[rpc] = {
            "c16_rps_ratio": None if rps_ratio is None else rps_ratio >= TARGET_C16_RPS_RATIO_MIN,
            "c1_p50_added_ms": None if added is None else added <= TARGET_C1_P50_ADDED_MS_MAX,
        }
    return {
        "c16_rps_ratio_min": TARGET_C16_RPS_RATIO_MIN,
        "c1_p50_added_ms_max": TARGET_C1_P50_ADDED_MS_MAX,
        "met": met,
    }


def simulated_point(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Floor vs Aurea on the simulated provider (plus the log-level-info note)."""
    out: dict[str, Any] = {}
    results: dict[str, dict[str, dict[str, Any]]] = {"floor": {}, "aurea": {}}
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    note: dict[str, Any] = {}
    started: list[Server] = []
    with servers_stopped(started):
        aurea = start_aurea_sim(workdir, "warning", args.server_cpu)
        started.append(aurea)
        payload = capture(aurea.target)
        floor = start_floor(workdir, payload, args.server_cpu)
        started.append(floor)
        out["config"] = {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "prompt_chars": len(PROMPT),
            "answer_tokens": payload["output_tokens"],
            "stream_events": payload["shape"],
            "rounds": args.rounds,
            "aurea_log_level": "warning",
            "server_cpu": args.server_cpu,
            "client_cpu": args.client_cpu,
        }
        for _ in range(args.rounds):
            for rpc in args.rpc:
                for c in args.concurrency:
                    # Back to back, so both see the same machine conditions.
                    for name, server in (("floor", floor), ("aurea", aurea)):
                        r = load(server, rpc, c, args)
                        runs.setdefault((name, rpc, c), []).append(r)
                        print(
                            f"{name:5} {rpc:14} c{c:<3} {r['rps']:>8.1f} rps  "
                            f"p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms  "
                            f"foreign cpu {r['foreign_cpu_pct']:5.1f}%",
                            file=sys.stderr,
                        )
        for (name, rpc, c), rs in runs.items():
            results[name].setdefault(rpc, {})[f"c{c}"] = median_of(rs)
        out["server_max_rss_mib"] = {
            "floor": max_rss_mib(floor.proc.pid),
            "aurea": max_rss_mib(aurea.proc.pid),
        }
        aurea.stop()
        floor.stop()
        if not args.no_info_note:
            # Same load with log level info: one JSON log line per call, to a file.
            info = start_aurea_sim(workdir, "info", args.server_cpu)
            started.append(info)
            for rpc in args.rpc:
                for c in (x for x in args.concurrency if x in (1, 16)):
                    note.setdefault(rpc, {})[f"c{c}"] = load(info, rpc, c, args)
            info.stop()
    out["results"] = results
    out["ratios"] = {
        rpc: ratios(results["floor"].get(rpc, {}), results["aurea"].get(rpc, {}))
        for rpc in args.rpc
    }
    out["targets"] = targets(out["ratios"])
    if note:
        out["notes"] = {
            "aurea_log_info": note,
            "aurea_log_info_rps_ratio_to_warning": {
                rpc: {
                    c: round(v["rps"] / results["aurea"][rpc][c]["rps"], 3) for c, v in pts.items()
                }
                for rpc, pts in note.items()
            },
        }
    out["noise"] = noise([r["foreign_cpu_pct"] for rs in runs.values() for r in rs])
    return out


def beyond_floor(upstream: dict[str, Any], floor: dict[str, Any]) -> None:
    """Add ``added_p50_ms_beyond_grpc_floor``: the upstream point's added p50 minus the floor's
    p50 at the same RPC and concurrency, i.e. what Aurea adds beyond a bare gRPC hop."""
    for rpc, by_c in upstream["added"].items():
        for c, row in by_c.items():
            f = floor.get(rpc, {}).get(c)
            if f:
                row["added_p50_ms_beyond_grpc_floor"] = round(row["added_p50_ms"] - f["p50_ms"], 3)


def summary(out: dict[str, Any]) -> dict[str, Any]:
    """Every target's verdict in one place (reported, never asserted)."""
    met: dict[str, Any] = {}
    if "targets" in out:
        met["simulated"] = out["targets"]["met"]
    if "upstream" in out:
        met["upstream"] = out["upstream"]["targets"]["met"]
    return met


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Aurea vs a bare grpc.aio floor server (simulated provider), and Aurea vs "
        "calling a fake OpenAI upstream directly: Generate and GenerateStream.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--points",
        default=",".join(POINTS),
        help="comma-separated: simulated, upstream (default: both)",
    )
    p.add_argument("--duration", type=float, default=1.5, help="measured seconds per run (1.5)")
    p.add_argument("--warmup", type=float, default=0.3, help="unmeasured seconds first (0.3)")
    p.add_argument("--concurrency", default="1,16,64", help="simulated point (1,16,64)")
    p.add_argument("--upstream-concurrency", default="1,16", help="upstream point (1,16)")
    p.add_argument("--rpc", action="append", choices=RPCS, help="repeatable (default: both)")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs per point, interleaved across points; each metric's median (3)",
    )
    p.add_argument("--quick", action="store_true", help="one round of 1 s runs, no log note")
    p.add_argument(
        "--no-info-note", action="store_true", help="skip the extra Aurea run with log level info"
    )
    p.add_argument(
        "--server-cpu",
        type=int,
        default=None,
        help="pin the servers (floor, Aurea) to this CPU (default: no pinning)",
    )
    p.add_argument(
        "--client-cpu",
        type=int,
        default=None,
        help="pin the load generator to this CPU (default: no pinning)",
    )
    p.add_argument(
        "--upstream-cpu",
        type=int,
        default=None,
        help="pin the fake upstream to this CPU (default: no pinning)",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds, args.no_info_note = 1.0, 0.3, 1, True
    args.rounds = max(1, args.rounds)
    args.points = [x.strip() for x in args.points.split(",") if x.strip()]
    if not args.points or set(args.points) - set(POINTS):
        p.error(f"--points takes a comma-separated subset of {', '.join(POINTS)}")
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.rpc = args.rpc or list(RPCS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    out: dict[str, Any] = {"machine": machine(), "source": source()}
    with tempfile.TemporaryDirectory(prefix="aurea-bench-") as tmp:
        if "simulated" in args.points:
            out.update(simulated_point(args, Path(tmp)))
        if "upstream" in args.points:
            plan = bench_upstream.Plan(
                duration_s=args.duration,
                warmup_s=args.warmup,
                rounds=args.rounds,
                concurrency=tuple(int(c) for c in args.upstream_concurrency.split(",") if c),
                rpcs=tuple(args.rpc),
                server_cpu=args.server_cpu,
                upstream_cpu=args.upstream_cpu,
                client_cpu=args.client_cpu,
            )
            out["upstream"] = bench_upstream.run_point(plan, Path(tmp))
            if "results" in out:
                beyond_floor(out["upstream"], out["results"]["floor"])
    out["targets_met"] = summary(out)
    out["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    out["wall_s"] = round(time.monotonic() - t0, 1)
    write_result(args.output, out)
    print(f"targets met: {json.dumps(out['targets_met'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
