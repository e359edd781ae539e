"""``aurea serve`` whose log reader goes away (``aurea serve 2>&1 | head -2``) or stops reading
(a paused pager, a backed-up log shipper): calls still succeed, health stays truthful, and
SIGTERM still stops the process with exit code 0."""

from __future__ import annotations

import fcntl
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

pytestmark = pytest.mark.integration

QUICK_CONFIG = """
[providers.simulated]
kind = "simulated"

[providers.simulated.options]
token_delay_ms = 0
"""
SMALL_PIPE = 4096  # bytes: a stalled reader's pipe fills after a dozen log lines
CALLS = 100  # each logs at least one line, so far more than SMALL_PIPE holds


def serve_argv(tmp_path: Path, port: int) -> list[str]:
    config = tmp_path / "aurea.toml"
    config.write_text(QUICK_CONFIG)
    return ["serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]


def exercise(target: str, calls: int) -> None:
    """Unary and streamed calls and a health check; every one must succeed."""
    with grpc.insecure_channel(target) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        for i in range(calls):
            reply = stub.Generate(pb.GenerateRequest(prompt=f"call {i}"), timeout=10)
            assert reply.text
        events = [
            e.WhichOneof("event")
            for e in stub.GenerateStream(
                pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="stream")), timeout=10
            )
        ]
        assert events[0] == "started" and events[-1] == "final", events
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("stderr", ["merge", "file"])
def test_closed_output_does_not_fail_calls_or_block_sigterm(
    aurea_popen: Callable[..., Any], unused_port: int, tmp_path: Path, stderr: str
) -> None:
    """``merge``: logs and stdout share the pipe the reader closed (``2>&1 | head -2``).
    ``file``: only stdout is the closed pipe (``| head -2``); the logs must still arrive."""
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as log_file:
        ap = aurea_popen(
            *serve_argv(tmp_path, unused_port), stderr="merge" if stderr == "merge" else log_file
        )
    if stderr == "merge":
        ap.read_until(b"server_started")
    else:
        _wait_for_file(log_path, "server_started", ap)
    ap.proc.stdout.close()  # the reader goes away, as `head -2` does

    exercise(f"127.0.0.1:{unused_port}", calls=5)

    ap.proc.send_signal(signal.SIGTERM)
    code, _, _ = ap.finish()
    assert code == 0
    if stderr == "file":
        log = log_path.read_text()
        assert log.count('"rpc_finished"') >= 6 and "server_stopped" in log, log[-2000:]
        assert "Traceback" not in log


def test_stalled_reader_does_not_stall_calls(
    aurea_popen: Callable[..., Any], unused_port: int, tmp_path: Path
) -> None:
    """A reader that stops reading: the pipe fills, yet calls keep being answered; once the
    reader resumes, the lines held meanwhile arrive, and SIGTERM exits 0."""
    ap = aurea_popen(*serve_argv(tmp_path, unused_port), stderr="merge")
    fcntl.fcntl(ap.proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, SMALL_PIPE)
    ap.read_until(b"server_started")

    exercise(f"127.0.0.1:{unused_port}", calls=CALLS)  # nobody reads meanwhile

    rest: list[bytes] = []
    reader = threading.Thread(target=lambda: rest.append(ap.proc.stdout.read()))
    reader.start()  # the reader resumes
    ap.proc.send_signal(signal.SIGTERM)
    code = ap.proc.wait(timeout=30)
    reader.join(30)
    assert code == 0
    log = (bytes(ap.out) + rest[0]).decode(errors="replace")
    assert log.count('"rpc_finished"') >= CALLS
    assert "server_stopped" in log
    assert "Traceback" not in log


def _wait_for_file(path: Path, needle: str, ap: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while needle not in path.read_text(errors="replace"):
        assert ap.proc.poll() is None, path.read_text(errors="replace")
        assert time.monotonic() < deadline, f"no {needle!r} in {path}"
        time.sleep(0.05)
