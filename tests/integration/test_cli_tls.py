"""The ``aurea`` command against a real ``aurea serve`` with ``[tls]``: health, generate, embed,
task list and top work with ``--tls-ca`` (or $AUREA_TLS_CA); under mTLS with ``--tls-cert`` and
``--tls-key``. What goes wrong ends with one ``aurea: ...`` line that says what to check:
plaintext against TLS, TLS against plaintext, an untrusted server certificate, another host name,
no or a foreign client certificate; a certificate without its key, a missing or non-PEM file is
a usage error (exit 2) naming the option and the file."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import tls_certs
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not tls_certs.AVAILABLE, reason="needs cryptography or openssl"),
]

Cli = Callable[..., subprocess.CompletedProcess[str]]
START_TIMEOUT_S = 30.0  # a bound on startup, not a performance claim


class Pki:
    def __init__(self, root: Path) -> None:
        self.ca = tls_certs.make_ca(root / "ca1", "one")
        self.other_ca = tls_certs.make_ca(root / "ca2", "two")
        self.server = tls_certs.issue(self.ca, root / "ca1", "server", server=True)
        self.client = tls_certs.issue(self.ca, root / "ca1", "client", server=False)
        self.stranger = tls_certs.issue(self.other_ca, root / "ca2", "stranger", server=False)

    def config(self, *, mtls: bool) -> str:
        text = f"""
[providers.simulated]
kind = "simulated"

[providers.simulated.options]
token_delay_ms = 2

[tls]
cert_file = "{self.server.cert}"
key_file = "{self.server.key}"
"""
        if mtls:
            text += f'client_ca_file = "{self.ca.cert}"\nrequire_client_cert = true\n'
        return text

    def ca_args(self) -> tuple[str, ...]:
        return ("--tls-ca", str(self.ca.cert))

    def client_args(self, pair: tls_certs.Pair | None = None) -> tuple[str, ...]:
        pair = pair or self.client
        return ("--tls-cert", str(pair.cert), "--tls-key", str(pair.key))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def _wait_serving_tls(sp: Any, pki: Pki, *, mtls: bool) -> None:
    """Poll health over TLS (the shared ``wait_serving`` speaks plaintext) until SERVING."""
    chain, key = pki.client.read() if mtls else (None, None)
    creds = grpc.ssl_channel_credentials(pki.ca.cert.read_bytes(), key, chain)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert sp.proc.poll() is None, f"aurea serve exited:\n{sp.log_tail()}"
        try:
            with grpc.secure_channel(sp.target, creds) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=0.5
                )
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    sp.stop()
    raise AssertionError(f"aurea serve (TLS) not SERVING in {START_TIMEOUT_S:g}s:\n{sp.log_tail()}")


def _spawn_tls(spawn_server: Callable[..., Any], pki: Pki, *, mtls: bool) -> Iterator[str]:
    sp = spawn_server(config=pki.config(mtls=mtls), wait=False)
    _wait_serving_tls(sp, pki, mtls=mtls)
    yield sp.target
    sp.stop()
    assert "rpc_bug" not in sp.log_text(), sp.log_tail()


@pytest.fixture(scope="module")
def tls_target(spawn_server: Callable[..., Any], pki: Pki) -> Iterator[str]:
    yield from _spawn_tls(spawn_server, pki, mtls=False)


@pytest.fixture(scope="module")
def mtls_target(spawn_server: Callable[..., Any], pki: Pki) -> Iterator[str]:
    yield from _spawn_tls(spawn_server, pki, mtls=True)


@pytest.fixture(scope="module")
def plain_target(spawn_server: Callable[..., Any]) -> Iterator[str]:
    sp = spawn_server(config='[providers.simulated]\nkind = "simulated"\n')
    yield sp.target
    sp.stop()


def _one_error_line(r: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The failed command's stderr: exactly one ``aurea: ...`` line, no traceback."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("aurea: "), r.stderr
    return lines[0]


# --- TLS ---------------------------------------------------------------------------------------


def test_health_over_tls_with_the_servers_ca(aurea_cli: Cli, pki: Pki, tls_target: str) -> None:
    r = aurea_cli("health", "--target", tls_target, *pki.ca_args())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "SERVING"


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_generate_over_tls(aurea_cli: Cli, pki: Pki, tls_target: str, stream: bool) -> None:
    extra = ("--stream",) if stream else ()
    r = aurea_cli("generate", "hello over tls", "--target", tls_target, *pki.ca_args(), *extra)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    assert "[sim-small via simulated:" in r.stderr


def test_the_ca_from_the_environment_serves_every_client_command(
    aurea_cli: Cli, pki: Pki, tls_target: str
) -> None:
    env = {"AUREA_TLS_CA": str(pki.ca.cert), "AUREA_TARGET": tls_target}
    embed = aurea_cli("embed", "a text", env=env)
    assert embed.returncode == 0, embed.stderr
    assert embed.stdout.startswith("embedding 0: dims=")
    tasks = aurea_cli("task", "list", env=env)
    assert tasks.returncode == 0, tasks.stderr
    top = aurea_cli("top", "--once", "--interval", "0.05", "--width", "120", env=env)
    assert top.returncode == 0, top.stderr
    assert f"aurea top {tls_target}" in top.stdout


def test_plaintext_against_a_tls_server_says_to_use_tls(aurea_cli: Cli, tls_target: str) -> None:
    line = _one_error_line(aurea_cli("health", "--target", tls_target))
    assert "UNAVAILABLE" in line
    assert "is the server using TLS?" in line and "--tls-ca" in line


def test_an_untrusted_server_certificate_says_to_check_the_ca(
    aurea_cli: Cli, pki: Pki, tls_target: str
) -> None:
    system_roots = aurea_cli("generate", "hi", "--target", tls_target, "--tls")
    other_ca = aurea_cli(
        "generate", "hi", "--target", tls_target, "--tls-ca", str(pki.other_ca.cert)
    )
    for r in (system_roots, other_ca):
        line = _one_error_line(r)
        assert "TLS handshake failed (CERTIFICATE_VERIFY_FAILED)" in line
        assert "is --tls-ca its CA?" in line


def test_server_name_override_is_checked(aurea_cli: Cli, pki: Pki, tls_target: str) -> None:
    port = tls_target.rsplit(":", 1)[1]
    # The certificate names 127.0.0.1 and localhost: an address it does not name works when
    # --tls-server-name gives one it does, and a name it does not hold is refused.
    ok = aurea_cli(
        "health", "--target", f"[::ffff:127.0.0.1]:{port}", *pki.ca_args(),
        "--tls-server-name", "localhost",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    wrong = aurea_cli(
        "health", "--target", tls_target, *pki.ca_args(), "--tls-server-name", "example.com"
    )
    assert "--tls-server-name" in _one_error_line(wrong)


def test_tls_against_a_plaintext_server_says_it_does_not_use_tls(
    aurea_cli: Cli, pki: Pki, plain_target: str
) -> None:
    line = _one_error_line(aurea_cli("health", "--target", plain_target, *pki.ca_args()))
    assert "the server does not use TLS" in line


# --- mTLS --------------------------------------------------------------------------------------


def test_mtls_works_with_a_client_certificate(aurea_cli: Cli, pki: Pki, mtls_target: str) -> None:
    health = aurea_cli("health", "--target", mtls_target, *pki.ca_args(), *pki.client_args())
    assert health.returncode == 0, health.stderr
    assert health.stdout.strip() == "SERVING"
    env = {"AUREA_TLS_CERT": str(pki.client.cert), "AUREA_TLS_KEY": str(pki.client.key)}
    gen = aurea_cli("generate", "hello mtls", "--target", mtls_target, *pki.ca_args(), env=env)
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.strip()


def test_mtls_without_a_client_certificate_says_to_pass_one(
    aurea_cli: Cli, pki: Pki, mtls_target: str
) -> None:
    for command in (("health",), ("generate", "hi")):
        line = _one_error_line(aurea_cli(*command, "--target", mtls_target, *pki.ca_args()))
        assert "TLS handshake failed" in line
        assert "--tls-cert and --tls-key" in line


def test_mtls_with_a_foreign_client_certificate_fails_clearly(
    aurea_cli: Cli, pki: Pki, mtls_target: str
) -> None:
    r = aurea_cli("health", "--target", mtls_target, *pki.ca_args(), *pki.client_args(pki.stranger))
    line = _one_error_line(r)
    assert "TLS handshake failed" in line and "--tls-cert" in line


# --- usage errors (no server needed) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "missing"), [("--tls-cert", "--tls-key"), ("--tls-key", "--tls-cert")]
)
def test_a_client_certificate_without_its_key_is_a_usage_error(
    aurea_cli: Cli, pki: Pki, unused_port: int, given: str, missing: str
) -> None:
    path = pki.client.cert if given == "--tls-cert" else pki.client.key
    for command in (("health",), ("generate", "hi"), ("task", "list")):
        r = aurea_cli(*command, "--target", f"127.0.0.1:{unused_port}", given, str(path))
        assert f"{given} needs {missing}" in _one_error_line(r, code=2)


def test_a_certificate_from_the_environment_without_a_key_is_a_usage_error(
    aurea_cli: Cli, pki: Pki, unused_port: int
) -> None:
    r = aurea_cli(
        "health",
        "--target",
        f"127.0.0.1:{unused_port}",
        env={"AUREA_TLS_CERT": str(pki.client.cert)},
    )
    assert "--tls-cert needs --tls-key" in _one_error_line(r, code=2)


def test_missing_or_non_pem_files_are_usage_errors_naming_the_file(
    aurea_cli: Cli, pki: Pki, unused_port: int, tmp_path: Path
) -> None:
    target = ("--target", f"127.0.0.1:{unused_port}")
    missing = tmp_path / "no-such-ca.pem"
    line = _one_error_line(aurea_cli("health", *target, "--tls-ca", str(missing)), code=2)
    assert f"--tls-ca {missing}: No such file or directory" in line
    # A key where the CA belongs, a certificate where the key belongs.
    line = _one_error_line(aurea_cli("embed", "x", *target, "--tls-ca", str(pki.ca.pair.key)), 2)
    assert f"--tls-ca {pki.ca.pair.key}: not a certificate in PEM format" in line
    swapped = ("--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.cert))
    line = _one_error_line(aurea_cli("health", *target, *pki.ca_args(), *swapped), code=2)
    assert f"--tls-key {pki.client.cert}: not a private key in PEM format" in line
