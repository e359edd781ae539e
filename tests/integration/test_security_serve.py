"""The real ``aurea serve`` process: open mode (no API keys) on a non-loopback address refuses
to start (exit 2, one line naming the key and the way out) unless forced; a TLS server reloads
its certificate on SIGHUP without a restart."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import tls_certs
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = pytest.mark.integration

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"AUREA_SERVER_HOST": "0.0.0.0"}, "server.host"),
        ({"AUREA_HTTP_HOST": "0.0.0.0"}, "http.host"),
    ],
)
def test_open_mode_on_any_interface_refuses_to_start(
    aurea_cli: Cli, env: dict[str, str], key: str
) -> None:
    r = aurea_cli("serve", env={"AUREA_SERVER_PORT": "0", **env}, timeout_s=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert key in r.stderr
    assert "allow_open_on_any_interface" in r.stderr and "API keys" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_open_mode_on_any_interface_when_forced(spawn_server: Callable[..., Any]) -> None:
    sp = spawn_server(
        env={"AUREA_SERVER_ALLOW_OPEN_ON_ANY_INTERFACE": "true"}, args=["--host", "0.0.0.0"]
    )
    try:
        assert "open_mode" in sp.log_text()
    finally:
        sp.stop()


def _health(port: int, ca: Path) -> int:
    creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=2
        )
        return int(reply.status)


def _wait_health(sp: Any, ca: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert sp.proc.poll() is None, sp.log_tail()
        try:
            if _health(sp.port, ca) == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no TLS health answer in time:\n{sp.log_tail()}")


@pytest.mark.skipif(not tls_certs.AVAILABLE, reason="needs cryptography or openssl")
def test_sighup_reloads_the_certificate(spawn_server: Callable[..., Any], tmp_path: Path) -> None:
    first = tls_certs.make_ca(tmp_path / "a", "first")
    second = tls_certs.make_ca(tmp_path / "b", "second")
    live = tmp_path / "live"
    live.mkdir()
    for ca, name in ((first, "a"), (second, "b")):
        tls_certs.issue(ca, tmp_path / name, "server", server=True)

    def install(name: str) -> None:
        shutil.copyfile(tmp_path / name / "server.crt", live / "server.crt")
        shutil.copyfile(tmp_path / name / "server.key", live / "server.key")

    install("a")
    config = f'[tls]\ncert_file = "{live / "server.crt"}"\nkey_file = "{live / "server.key"}"\n'
    sp = spawn_server(config=config, wait=False)
    try:
        _wait_health(sp, first.cert)
        install("b")
        sp.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "tls_reloaded" not in sp.log_text() and time.monotonic() < deadline:
            assert sp.proc.poll() is None, sp.log_tail()
            time.sleep(0.05)
        assert "tls_reloaded" in sp.log_text(), sp.log_tail()
        _wait_health(sp, second.cert)  # a new connection gets the new certificate
        with pytest.raises(grpc.RpcError):
            _health(sp.port, first.cert)
    finally:
        sp.stop()
