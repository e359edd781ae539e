"""What the benchmark scripts share: child processes that are always stopped (each in its own
process group, killed on any exit of the script, Ctrl-C and SIGTERM included), CPU accounting
from ``/proc``, the load generator's invocation, medians over rounds, and the machine/source
description every result carries.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STOP_TIMEOUT_S = 10.0


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


def pin(pid: int, cpu: int | None) -> None:
    """Pin a just-started child to one CPU from the parent.

    Done here rather than in ``preexec_fn``, which is unsafe once gRPC has started threads in
    this process; the child has only just exec'd, so the threads it starts later inherit it.
    """
    if cpu is not None:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(pid, {cpu})


@dataclass
class Server:
    """A child server process, the leader of its own process group."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    stopped: bool = field(default=False, init=False)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the whole group, SIGKILL it after ``STOP_TIMEOUT_S``; idempotent (a second
        call signals nothing, so a reused pid is never hit)."""
        if not self.stopped:
            self.stopped = True
            stop_group(self.proc)

    def kill(self) -> None:
        """SIGKILL the group at once if the leader has not been reaped (a pid cannot be reused
        before that); for when a second Ctrl-C cut ``stop`` short."""
        if self.proc.returncode is None:
            _signal_group(self.proc, signal.SIGKILL)
            self.proc.wait()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT_S)
    # Kill what is left: the leader if it ignored SIGTERM, and any child it started.
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def spawn(
    cmd: Sequence[str],
    *,
    log_path: Path,
    cpu: int | None,
    env: dict[str, str] | None = None,
    ready_line: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a server in its own process group (Ctrl-C in the terminal does not reach it: the
    script's ``finally`` stops it), stderr to ``log_path``; stdout piped when ``ready_line``."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdout=subprocess.PIPE if ready_line else log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
    pin(proc.pid, cpu)
    return proc


def start_ready(
    cmd: Sequence[str],
    name: str,
    log_path: Path,
    cpu: int | None,
    env: dict[str, str] | None = None,
) -> Server:
    """Start a server that prints ``READY <port>`` on stdout once listening (EOF or anything
    else means it failed: it is stopped and its log raised)."""
    proc = spawn(cmd, log_path=log_path, cpu=cpu, env=env, ready_line=True)
    server = Server(name, proc, 0, log_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "READY":
            raise RuntimeError(f"{name} failed to start:\n{server.log_tail()}")
        server.port = int(line[1])
    except BaseException:
        server.stop()
        raise
    return server


def wait_serving(server: Server, timeout_s: float = 30.0) -> None:
    """Poll ``grpc.health.v1`` until the server says SERVING (or exits, or the time is up)."""
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


def start_aurea(
    workdir: Path,
    name: str,
    config: str,
    port: int,
    cpu: int | None,
    env: dict[str, str] | None = None,
) -> Server:
    """``aurea serve --config <workdir>/<name>.toml``; returns once health says SERVING."""
    cfg = workdir / f"{name}.toml"
    cfg.write_text(config)
    log_path = workdir / f"{name}.log"
    proc = spawn(
        [sys.executable, "-m", "aurea.cli", "serve", "--config", str(cfg)],
        log_path=log_path,
        cpu=cpu,
        env=env,
    )
    server = Server(name, proc, port, log_path)
    try:
        wait_serving(server)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def servers_stopped(servers: list[Server]) -> Iterator[None]:
    """Stop every server appended to ``servers`` on the way out, whatever the way out is."""
    try:
        yield
    finally:
        try:
            for s in reversed(servers):
                s.stop()
        finally:  # reached with servers still running only if stopping was interrupted
            for s in servers:
                s.kill()


def interrupt_on_sigterm() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every ``finally`` stops its children; SIGINT
    does too even when the parent shell started the script with it ignored (``cmd &``)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def run_main(main: Callable[[], int]) -> int:
    """Run a benchmark's ``main``; Ctrl-C (or SIGTERM) ends it with 130 and no traceback, after
    every ``finally`` has stopped the servers."""
    interrupt_on_sigterm()
    try:
        return main()
    except KeyboardInterrupt:
        print("interrupted: every server this run started has been stopped", file=sys.stderr)
        return 130


def run_loadgen(
    args: list[str],
    *,
    budget_s: float,
    cpu: int | None,
    describe: str,
    log_tail: str = "",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One ``_loadgen.py`` run (killed after ``budget_s``; Ctrl-C reaches it too)."""
    cmd = [sys.executable, str(HERE / "_loadgen.py"), *args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        pin(proc.pid, cpu)
        try:
            out, err = proc.communicate(timeout=budget_s)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        raise RuntimeError(
            f"load generator failed ({describe}):\n{err.decode(errors='replace')}\n{log_tail}"
        )
    result: dict[str, Any] = json.loads(out)
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
        elif first is None or isinstance(first, str):
            out[key] = first
        else:
            out[key] = statistics.median(r[key] for r in runs)
    rps = [r["rps"] for r in runs]
    out["rounds"] = len(runs)
    out["rps_spread_pct"] = (
        round((max(rps) - min(rps)) / out["rps"] * 100, 1) if out["rps"] else None
    )
    return out


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
        "python": sys.version.split()[0],
        "grpcio": version("grpcio"),
        "protobuf": version("protobuf"),
        "uvloop": version("uvloop"),
        "aiohttp": version("aiohttp"),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def noise(foreign_pcts: list[float]) -> dict[str, Any]:
    return {
        "foreign_cpu_pct_median": round(statistics.median(foreign_pcts), 1)
        if foreign_pcts
        else None,
        "foreign_cpu_pct_max": max(foreign_pcts) if foreign_pcts else None,
        "note": "CPU used by other processes while a point ran, in % of one CPU; above ~10% "
        "the machine was shared and the figures are noisy",
    }


def write_result(path: Path, out: dict[str, Any]) -> None:
    text = json.dumps(out, indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(text)
