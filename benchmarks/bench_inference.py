"""Aurea's per-call overhead against a floor, for ``Generate`` and ``GenerateStream``.

In one run, with every party in its own process on 127.0.0.1:

* the **floor** (``_floor_server.py``): a bare grpc.aio server on uvloop that answers
  ``aurea.v1.InferenceService`` at once with pre-built messages;
* **Aurea**: ``aurea serve`` with the simulated provider at zero delay and a fixed answer length;
* the **load generator** (``_loadgen.py``): C closed-loop workers on one grpc.aio channel.

Before loading anything it makes one ``Generate`` and one ``GenerateStream`` call to Aurea and
hands the floor those exact responses, so both servers send the same bytes and the same number of
stream events. Then, for each RPC and concurrency, it runs the floor and Aurea back to back and
prints one JSON object (also written to ``benchmarks/results/inference.json``): requests/s,
p50/p90/p99 latency, time to first delta for streams, server and client CPU per call, and the
ratios to the floor with the targets (reported, never asserted):
Aurea reaches >= 50% of the floor's requests/s at concurrency 16 and adds <= 1 ms p50 at
concurrency 1.

    python benchmarks/bench_inference.py                 # 3 interleaved rounds, under 2 minutes
    python benchmarks/bench_inference.py --quick         # 1 round of 1 s runs, about 25 s
    python benchmarks/bench_inference.py --concurrency 1,16 --duration 5 --rpc Generate
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "inference.json"
RPCS = ("Generate", "GenerateStream")
PROMPT = "Benchmark prompt: say something steady."
ANSWER_TOKENS = 32  # the simulated provider's fixed answer length (min_tokens = max_tokens)
TARGET_C16_RPS_RATIO_MIN = 0.5
TARGET_C1_P50_ADDED_MS_MAX = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def busy_cpu_seconds() -> float:
    """CPU time every process on the machine has used (all CPUs), from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]  # idle + iowait
    return (sum(f[:8]) - idle) / CLK_TCK


def max_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _pin(cpu: int | None) -> Any:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def aurea_config(port: int, level: str) -> str:
    return f"""\
[server]
host = "127.0.0.1"
port = {port}
grace_s = 0

[log]
level = "{level}"
format = "json"

[providers.simulated]
kind = "simulated"

[providers.simulated.options]
token_delay_ms = 0
first_token_delay_ms = 0
min_tokens = {ANSWER_TOKENS}
max_tokens = {ANSWER_TOKENS}
"""


def wait_serving(server: Server, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(server.target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
                )
            with contextlib.suppress(grpc.RpcError):
                r = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.1)
    raise RuntimeError(
        f"{server.name} did not become SERVING in {timeout_s} s:\n{server.log_tail()}"
    )


def start_aurea(workdir: Path, level: str, pin: int | None) -> Server:
    port = free_port()
    cfg = workdir / f"aurea-{level}.toml"
    cfg.write_text(aurea_config(port, level))
    log_path = workdir / f"aurea-{level}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aurea.cli", "serve", "--config", str(cfg)],
            stdout=log,
            stderr=log,
            preexec_fn=_pin(pin),
        )
    server = Server(f"aurea(log={level})", proc, port, log_path)
    try:
        wait_serving(server)
    except BaseException:
        server.stop()
        raise
    return server


def capture(target: str) -> dict[str, Any]:
    """One Generate and one GenerateStream against Aurea: the floor's answers, base64-encoded."""
    with grpc.insecure_channel(target) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)
        response = stub.Generate(pb.GenerateRequest(prompt=PROMPT), timeout=10)
        events = list(stub.GenerateStream(pb.GenerateStreamRequest(prompt=PROMPT), timeout=10))
    kinds = [e.WhichOneof("event") for e in events]
    if not kinds or kinds[0] != "started" or kinds[-1] != "final":
        raise RuntimeError(f"unexpected Aurea stream shape: {kinds}")
    return {
        "generate": base64.b64encode(response.SerializeToString()).decode(),
        "stream": [base64.b64encode(e.SerializeToString()).decode() for e in events],
        "shape": {k: kinds.count(k) for k in dict.fromkeys(kinds)},
        "output_tokens": response.usage.output_tokens,
    }


def start_floor(workdir: Path, payload: dict[str, Any], pin: int | None) -> Server:
    path = workdir / "floor-payload.json"
    path.write_text(json.dumps(payload))
    log_path = workdir / "floor.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "_floor_server.py"), "--payload", str(path)],
            stdout=subprocess.PIPE,
            stderr=log,
            preexec_fn=_pin(pin),
        )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().split()  # "READY <port>"; EOF if it died
    if len(line) != 2 or line[0] != "READY":
        proc.kill()
        raise RuntimeError(f"floor server failed to start:\n{log_path.read_text()}")
    server = Server("floor", proc, int(line[1]), log_path)
    wait_serving_floor(server)
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
        sys.executable,
        str(HERE / "_loadgen.py"),
        "--target", server.target,
        "--rpc", rpc,
        "--concurrency", str(concurrency),
        "--duration", str(args.duration),
        "--warmup", str(args.warmup),
        "--prompt", PROMPT,
    ]  # fmt: skip
    cpu0, busy0, wall0 = cpu_seconds(server.proc.pid), busy_cpu_seconds(), time.monotonic()
    budget_s = args.warmup + args.duration + 30
    done = subprocess.run(
        cmd, capture_output=True, timeout=budget_s, preexec_fn=_pin(args.client_cpu), check=False
    )
    cpu1, busy1, wall1 = cpu_seconds(server.proc.pid), busy_cpu_seconds(), time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(
            f"load generator failed against {server.name} ({rpc}, c{concurrency}):\n"
            f"{done.stderr.decode(errors='replace')}\nserver log:\n{server.log_tail()}"
        )
    result: dict[str, Any] = json.loads(done.stdout)
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


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric metric's median over rounds (errors summed)."""
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        if isinstance(first, dict):
            merged: dict[str, int] = {}
            for r in runs:
                for k, v in r[key].items():
                    merged[k] = merged.get(k, 0) + v
            out[key] = merged
        else:
            out[key] = statistics.median(r[key] for r in runs)
    rps = [r["rps"] for r in runs]
    out["rounds"] = len(runs)
    out["rps_spread_pct"] = (
        round((max(rps) - min(rps)) / out["rps"] * 100, 1) if out["rps"] else None
    )
    return out


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


def source() -> dict[str, Any]:
    """The commit measured, and whether aurea/ had uncommitted changes."""

    def git(*cmd: str) -> str:
        try:
            done = subprocess.run(
                ["git", *cmd], cwd=HERE.parent, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "aurea_dirty": bool(git("status", "--porcelain", "--", "aurea")),
    }


def machine() -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpcio": version("grpcio"),
        "protobuf": version("protobuf"),
        "uvloop": version("uvloop"),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


@contextlib.contextmanager
def servers_stopped(servers: list[Server]) -> Iterator[None]:
    try:
        yield
    finally:
        for s in servers:
            s.stop()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Aurea vs a bare grpc.aio floor server: Generate and GenerateStream.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=1.5, help="measured seconds per run (1.5)")
    p.add_argument("--warmup", type=float, default=0.3, help="unmeasured seconds first (0.3)")
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated (1,16,64)")
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
        help="pin both servers to this CPU (default: no pinning)",
    )
    p.add_argument(
        "--client-cpu",
        type=int,
        default=None,
        help="pin the load generator to this CPU (default: no pinning)",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds, args.no_info_note = 1.0, 0.3, 1, True
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.rpc = args.rpc or list(RPCS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    out: dict[str, Any] = {"machine": machine(), "source": source()}
    results: dict[str, dict[str, dict[str, Any]]] = {"floor": {}, "aurea": {}}
    with tempfile.TemporaryDirectory(prefix="aurea-bench-") as tmp:
        workdir = Path(tmp)
        started: list[Server] = []
        with servers_stopped(started):
            aurea = start_aurea(workdir, "warning", args.server_cpu)
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
            runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
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
            note: dict[str, Any] = {}
            if not args.no_info_note:
                # Same load with log level info: one JSON log line per call, to a file.
                info = start_aurea(workdir, "info", args.server_cpu)
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
    out["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    foreign = [r["foreign_cpu_pct"] for rs in runs.values() for r in rs]
    out["noise"] = {
        "foreign_cpu_pct_median": round(statistics.median(foreign), 1),
        "foreign_cpu_pct_max": max(foreign),
        "note": "CPU used by other processes while a point ran, in % of one CPU; above ~10% "
        "the machine was shared and the figures are noisy",
    }
    out["wall_s"] = round(time.monotonic() - t0, 1)
    text = json.dumps(out, indent=2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
