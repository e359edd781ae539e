"""The ``aurea`` command against a real ``aurea serve`` process: generate (unary and streamed),
health, API keys from the environment, and config errors that name the bad key."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

QUICK_CONFIG = """
[providers.simulated]
kind = "simulated"

[providers.simulated.options]
token_delay_ms = 2
"""
USER_KEY = "cli-user-key-0123"
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def target(spawn_server: Callable[..., Any]) -> Iterator[str]:
    sp = spawn_server(config=QUICK_CONFIG)
    yield sp.target
    sp.stop()
    assert "rpc_bug" not in sp.log_text(), sp.log_tail()


@pytest.fixture(scope="module")
def keyed_target(spawn_server: Callable[..., Any]) -> Iterator[str]:
    sp = spawn_server(config=QUICK_CONFIG, env={"AUREA_API_KEYS": f"user:{USER_KEY}"})
    yield sp.target
    sp.stop()
    assert "rpc_bug" not in sp.log_text(), sp.log_tail()


def test_generate_stream_prints_tokens(aurea_cli: Cli, target: str) -> None:
    r = aurea_cli("generate", "hello", "--stream", "--target", target)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "no tokens printed"
    assert "[sim-small via simulated:" in r.stderr
    assert "first token" in r.stderr


def test_generate_unary_prints_the_same_text(aurea_cli: Cli, target: str) -> None:
    streamed = aurea_cli("generate", "same prompt", "--stream", "--target", target)
    unary = aurea_cli("generate", "same prompt", "--target", target)
    assert streamed.returncode == unary.returncode == 0, streamed.stderr + unary.stderr
    assert unary.stdout.strip()
    assert streamed.stdout.strip() == unary.stdout.strip()
    assert "[sim-small via simulated:" in unary.stderr


def test_generate_honours_max_tokens_and_model(aurea_cli: Cli, target: str) -> None:
    r = aurea_cli(
        "generate", "hello", "--max-tokens", "3", "--model", "sim-large", "--target", target
    )
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 3
    assert "[sim-large via simulated: " in r.stderr
    assert " 3 out," in r.stderr


@pytest.mark.parametrize(
    ("args", "code_name"),
    [
        pytest.param(("",), "INVALID_ARGUMENT", id="empty-prompt"),
        pytest.param(("hi", "--model", "no-such-model"), "NOT_FOUND", id="unknown-model"),
        pytest.param(("hi", "--max-tokens", "-4", "--stream"), "INVALID_ARGUMENT", id="stream"),
    ],
)
def test_generate_error_exits_nonzero_with_status(
    aurea_cli: Cli, target: str, args: tuple[str, ...], code_name: str
) -> None:
    r = aurea_cli("generate", *args, "--target", target)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"aurea: {code_name}:" in r.stderr
    assert "Traceback" not in r.stderr


def test_health_prints_serving(aurea_cli: Cli, target: str) -> None:
    r = aurea_cli("health", "--target", target)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "SERVING"
    r = aurea_cli("health", "--target", target, "--service", "aurea.v1.InferenceService")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "SERVING"


def test_health_of_nothing_exits_nonzero(aurea_cli: Cli, unused_port: int) -> None:
    r = aurea_cli("health", "--target", f"127.0.0.1:{unused_port}", "--timeout", "1")
    assert r.returncode == 1
    assert "aurea: UNAVAILABLE:" in r.stderr or "aurea: DEADLINE_EXCEEDED:" in r.stderr
    assert r.stdout.strip() != "SERVING"


def test_generate_with_key_from_environment(aurea_cli: Cli, keyed_target: str) -> None:
    denied = aurea_cli("generate", "hi", "--target", keyed_target)
    assert denied.returncode == 1
    assert "aurea: UNAUTHENTICATED:" in denied.stderr
    ok = aurea_cli("generate", "hi", "--stream", "--target", keyed_target,
                   env={"AUREA_API_KEY": USER_KEY})  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip()


def test_generate_with_key_flag(aurea_cli: Cli, keyed_target: str) -> None:
    flag = aurea_cli("generate", "hi", "--api-key", USER_KEY, "--target", keyed_target)
    assert flag.returncode == 0, flag.stderr
    assert USER_KEY not in flag.stderr + flag.stdout


def test_health_needs_no_key(aurea_cli: Cli, keyed_target: str) -> None:
    health = aurea_cli("health", "--target", keyed_target)
    assert health.returncode == 0 and health.stdout.strip() == "SERVING"


@pytest.mark.parametrize(
    ("env", "config", "key"),
    [
        pytest.param({"AUREA_SERVER_PORT": "abc"}, None, "server.port", id="env-port"),
        pytest.param({"AUREA_SERVER_PORT": "70000"}, None, "server.port", id="env-port-range"),
        pytest.param({}, '[server]\nport = "abc"\n', "server.port", id="toml-port"),
        pytest.param({}, "[server]\nprot = 1\n", "server.prot", id="unknown-key"),
        pytest.param({"AUREA_LOG_LEVEL": "loud"}, None, "log.level", id="env-log-level"),
        pytest.param({}, '[providers.x]\nkind = "nope"\n', "providers.x.kind", id="provider-kind"),
    ],
)
def test_serve_with_bad_config_exits_nonzero_naming_the_key(
    aurea_cli: Cli, tmp_path: Path, env: dict[str, str], config: str | None, key: str
) -> None:
    args = ["serve"]
    if config is not None:
        path = tmp_path / "aurea.toml"
        path.write_text(config)
        args += ["--config", str(path)]
    r = aurea_cli(*args, env=env, timeout_s=30)
    assert r.returncode != 0
    assert key in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_serve_with_missing_config_file_exits_nonzero(aurea_cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    r = aurea_cli("serve", "--config", str(missing), timeout_s=30)
    assert r.returncode != 0
    assert str(missing) in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_on_a_busy_port_exits_nonzero_without_traceback(aurea_cli: Cli) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = aurea_cli("serve", "--port", str(port), timeout_s=30)
    assert r.returncode != 0
    assert str(port) in r.stderr
    assert "Traceback" not in r.stderr, r.stderr[-400:]
