"""The friendlier CLI, run as the real ``aurea`` command: ``--version``, ``config check|show``
(secrets masked, each value's source), ``embed``, ``generate --system --policy --fallback
--json``, the hint to start ``aurea serve`` when the connection is refused, and a stream error
printed on its own line after the partial text."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aurea.testing import running_server
from aurea.testing import test_settings as make_settings
from aurea.testing.fakes import FakeOpenAI, Fault, FaultKind

pytestmark = pytest.mark.integration

QUICK = """
[providers.simulated]
kind = "simulated"
[providers.simulated.options]
token_delay_ms = 1
"""
Cli = Callable[..., Any]


def test_version(aurea_cli: Cli) -> None:
    r = aurea_cli("--version")
    assert r.returncode == 0 and re.fullmatch(r"aurea \S+\n", r.stdout), r.stdout


def test_config_check(aurea_cli: Cli, tmp_path: Path) -> None:
    r = aurea_cli("config", "check")
    assert r.returncode == 0 and r.stdout.startswith("config ok"), r.stderr
    assert "grpc 127.0.0.1:50051, http 127.0.0.1:8080" in r.stdout
    bad = aurea_cli("config", "check", env={"AUREA_HTTP_PORT": "99999"})
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == (
        "aurea: config http.port: '99999' is not an integer in [0, 65535] (from AUREA_HTTP_PORT)"
    )
    path = tmp_path / "aurea.toml"
    path.write_text("[server]\nport = 6001\n[nosuch]\nx = 1\n")
    r = aurea_cli("config", "check", "--config", str(path))
    assert r.returncode == 2 and "nosuch" in r.stderr and "Traceback" not in r.stderr


def test_config_show_masks_secrets_and_names_sources(aurea_cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "aurea.toml"
    path.write_text(
        """
[server]
port = 6002
[redis]
url = "redis://:hunter2-secret@localhost:6379/0"
[providers.up]
kind = "openai"
base_url = "https://user:pw-secret@api.example.com/v1?api_key=q-secret"
api_key_env = "CLI_TEST_UP_KEY"
[models.up-chat]
provider = "up"
upstream = "gpt-4o-mini"
"""
    )
    env = {
        "CLI_TEST_UP_KEY": "sk-very-secret",
        "AUREA_HTTP_PORT": "9001",
        "AUREA_API_KEYS": "user:plain-key-secret",
    }
    r = aurea_cli("config", "show", "--config", str(path), env=env)
    assert r.returncode == 0, r.stderr
    for secret in ("hunter2", "pw-secret", "q-secret", "sk-very", "plain-key"):
        assert secret not in r.stdout, secret
    lines = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert lines["server.port"].endswith(f"6002  (file {path})")
    assert lines["http.port"].endswith("9001  (env AUREA_HTTP_PORT)")
    assert lines["server.host"].endswith('"127.0.0.1"  (default)')
    assert '"***"' in lines["redis.url"]
    assert "CLI_TEST_UP_KEY (set)" in lines["providers.up"]
    assert lines["providers.simulated"].endswith("(built-in)")
    rows = json.loads(aurea_cli("config", "show", "--config", str(path), "--json", env=env).stdout)
    by_key = {row["key"]: row for row in rows}
    assert by_key["http.port"] == {
        "key": "http.port",
        "value": 9001,
        "source": "env AUREA_HTTP_PORT",
    }
    assert by_key["auth.keys.env0"]["value"] == {"scopes": ["user"], "key": "***"}


def test_generate_and_embed_json(aurea_cli: Cli, spawn_server: Callable[..., Any]) -> None:
    sp = spawn_server(config=QUICK)
    r = aurea_cli(
        "generate", "hello", "--target", sp.target, "--system", "be brief",
        "--policy", "cost", "--fallback", "sim-large", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    assert reply["model"] == "sim-small" and reply["text"] and reply["cost_nanos"] > 0
    assert reply["usage"]["input_tokens"] > 0 and reply["finish_reason"] == "stop"
    stream = aurea_cli("generate", "hello", "--target", sp.target, "--stream", "--json")
    events = [json.loads(line) for line in stream.stdout.splitlines()]
    assert events[0]["event"] == "started" and events[-1]["event"] == "final"
    assert "".join(e.get("text", "") for e in events if e["event"] == "delta") == (
        aurea_cli("generate", "hello", "--target", sp.target).stdout.rstrip("\n")
    )
    bad = aurea_cli("generate", "", "--target", sp.target, "--json")
    assert bad.returncode == 1
    error = json.loads(bad.stdout)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and error["reason"] == "INVALID_REQUEST"
    assert "prompt" in error["fields"]
    emb = aurea_cli("embed", "one", "two", "--target", sp.target)
    assert emb.returncode == 0, emb.stderr
    assert re.findall(r"^embedding (\d): dims=(\d+) \[", emb.stdout, re.M)[1][0] == "1"
    vectors = json.loads(aurea_cli("embed", "one", "--target", sp.target, "--json").stdout)
    assert len(vectors["embeddings"]) == 1 and vectors["model"] == "sim-embed"


def test_a_refused_connection_hints_at_aurea_serve(aurea_cli: Cli, unused_port: int) -> None:
    for args in (["generate", "hi"], ["embed", "hi"], ["generate", "hi", "--stream"]):
        r = aurea_cli(*args, "--target", f"127.0.0.1:{unused_port}", "--timeout", "10")
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("aurea: UNAVAILABLE: "), r.stderr
        assert lines[0].endswith("(is Aurea running? start it with: aurea serve)")


async def test_a_stream_error_is_on_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLI_TEST_UPSTREAM_KEY", "sk-cli")
    async with FakeOpenAI(api_key="sk-cli") as fake:
        fake.reply = lambda prompt: "one two three four five six"
        fake.inject(Fault(FaultKind.STREAM_ERROR, after_tokens=3))
        s = make_settings(
            {
                "providers": {
                    "up": {
                        "kind": "openai",
                        "base_url": fake.base_url,
                        "api_key_env": "CLI_TEST_UPSTREAM_KEY",
                    }
                },
                "models": {"up-chat": {"provider": "up", "upstream": "gpt-4o-mini"}},
                "retry": {"max_retries": 0},
                "http": {"port": 0},
                "ledger": {"store": "memory"},
                "routing": {"default_model": "up-chat", "stats_store": "memory"},
            }
        )
        async with running_server(s) as rs:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AUREA_")}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "aurea.cli", "generate", "go", "--stream",
                "--target", rs.target,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 1
    assert out.decode() == "one two three\n", "the partial text ends its line"
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aurea: UNAVAILABLE: "), err


def test_top_once_shows_calls_breakers_and_actors(
    aurea_cli: Cli, spawn_server: Callable[..., Any]
) -> None:
    sp = spawn_server(config=QUICK)
    assert aurea_cli("generate", "hello", "--target", sp.target).returncode == 0
    r = aurea_cli("top", "--once", "--interval", "0.2", "--width", "140", "--target", sp.target)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith(f"aurea top {sp.target}") and "calls 1 " in out
    assert re.search(r"sim-small\s+.\s+simulated\s+.\s+1\s", out), out
    assert re.search(r"simulated\s+.\s+sim-small\s+.\s+CLOSED", out), out
    assert re.search(r"provider:simulated\s+.\s+0/\d+", out), out
    refused = aurea_cli("top", "--once", "--target", "127.0.0.1:1", "--timeout", "5")
    assert refused.returncode == 1 and "aurea serve" in refused.stderr
