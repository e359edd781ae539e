"""``aurea serve --workers N``: N server processes on one port (``SO_REUSEPORT``: the kernel
spreads connections across them), supervised by this parent, which binds nothing itself.

Each child is ``aurea serve`` with ``[server] reuse_port`` on. With ``[redis] url`` set the
children share one state (limits, budgets, router stats, task queue); without it each keeps its
own limits and budget book (a warning says so). The parent forwards SIGTERM/SIGINT to every
child and waits for them to drain; a child that dies on its own is started again, within a
restart budget, after which the parent stops the others and exits non-zero. Side ports:
worker 0 keeps the configured telemetry port, worker ``i`` uses that port plus ``i``; the
OpenAI-compatible HTTP door runs in worker 0 only.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType

__all__ = ["run_workers"]

_RESTARTS = 5  # restarts allowed ...
_RESTART_WINDOW_S = 60.0  # ... within this many seconds
_POLL_S = 0.2
_STOP_WAIT_S = 30.0


def _child_env(env: Mapping[str, str], index: int, telemetry_port: int) -> dict[str, str]:
    out = dict(env)
    out["AUREA_SERVER_REUSE_PORT"] = "true"
    out["AUREA_WORKER_INDEX"] = str(index)
    if index:
        out["AUREA_HTTP_ENABLED"] = "false"
        out["AUREA_TELEMETRY_HTTP_PORT"] = str(telemetry_port + index if telemetry_port else 0)
    return out


def run_workers(
    n: int,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    telemetry_port: int,
    say: Callable[[str], None],
    popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
) -> int:
    """Run ``n`` children of ``argv`` until a signal stops them; the exit code is 0 after a
    clean stop, else the first failing child's."""
    procs: list[subprocess.Popen[bytes] | None] = [None] * n
    restarts: list[float] = []
    stopping = False

    def start(i: int) -> None:
        procs[i] = popen(list(argv), env=_child_env(env, i, telemetry_port))

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p is not None and p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        for i in range(n):
            start(i)
        say(f"aurea: {n} workers started (pids {' '.join(str(p.pid) for p in procs if p)})")
        while True:
            alive = 0
            for i, p in enumerate(procs):
                if p is None:
                    continue
                rc = p.poll()
                if rc is None:
                    alive += 1
                    continue
                if stopping:
                    code = code or (rc if rc > 0 else 0)
                    procs[i] = None
                    continue
                now = time.monotonic()
                restarts[:] = [t for t in restarts if now - t < _RESTART_WINDOW_S]
                if len(restarts) >= _RESTARTS:
                    say(f"aurea: worker {i} exited with {rc}; too many restarts, stopping")
                    code = rc if rc > 0 else 1
                    forward(signal.SIGTERM, None)
                    procs[i] = None
                    continue
                restarts.append(now)
                say(f"aurea: worker {i} (pid {p.pid}) exited with {rc}; starting it again")
                start(i)
                alive += 1
            if not alive:
                return code
            time.sleep(_POLL_S)
    finally:
        deadline = time.monotonic() + _STOP_WAIT_S
        for p in procs:
            if p is not None and p.poll() is None:
                try:
                    p.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
