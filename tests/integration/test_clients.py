"""The runnable clients in ``clients/`` against a real ``aurea serve`` process: the Node example
(``@grpc/grpc-js`` + ``@grpc/proto-loader``, protos loaded at run time) and the Python example
(generated ``aurea.v1`` stubs, sync grpc) stream and return completions with usage and cost,
report a bad request as INVALID_ARGUMENT naming the field, and honour API keys."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "clients" / "node"
PYTHON_EXAMPLE = REPO / "clients" / "python" / "example.py"
# What CI runs before the tests (see the clients' README); the fixture runs it when needed.
NPM_CI = ("npm", "ci", "--no-audit", "--no-fund")
NPM_CI_TIMEOUT_S = 300.0
CLIENT_TIMEOUT_S = 60.0

QUICK_CONFIG = """
[providers.simulated]
kind = "simulated"

[providers.simulated.options]
token_delay_ms = 2
"""
USER_KEY = "some-user-key-1"
PROMPT = "hello"

USAGE_LINE = re.compile(
    r"^usage: input_tokens=(\d+) cached_input_tokens=\d+ output_tokens=(\d+) "
    r"reasoning_tokens=\d+ source=\w+$",
    re.M,
)
COST_LINE = re.compile(r"^cost: (\d+) nanos \(\$\d+\.\d{9}\) model=\S+ provider=simulated ", re.M)
DELTAS = re.compile(r" deltas=(\d+)$", re.M)


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("AUREA_REQUIRE_ALL"):  # CI installs everything and skips nothing
        pytest.fail(f"AUREA_REQUIRE_ALL is set but {reason}", pytrace=False)
    pytest.skip(reason)


def _node_modules_current() -> bool:
    """Whether node_modules holds exactly what package-lock.json pins (npm's hidden lockfile,
    written by every install, lists what is installed)."""
    try:
        wanted = json.loads((NODE_DIR / "package-lock.json").read_text())["packages"]
        have = json.loads((NODE_DIR / "node_modules" / ".package-lock.json").read_text())
    except (OSError, ValueError, KeyError):
        return False
    wanted = {k: v for k, v in wanted.items() if k}  # "" is the project itself
    return bool(have.get("packages") == wanted)


@pytest.fixture(scope="session")
def node_client() -> str:
    """The node binary, with clients/node's dependencies installed by ``npm ci`` (once per
    session, and only when node_modules does not already match package-lock.json)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _skip_or_fail("node and npm are not installed (apt-get install nodejs npm)")
    assert node is not None and npm is not None
    if not _node_modules_current():
        try:
            done = subprocess.run(
                [npm, *NPM_CI[1:]],
                cwd=NODE_DIR,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            _skip_or_fail(f"npm ci in {NODE_DIR} took over {NPM_CI_TIMEOUT_S:g}s")
        else:
            if done.returncode != 0:
                _skip_or_fail(f"npm ci in {NODE_DIR} failed: {done.stderr.strip()[-500:]}")
    return node


@dataclass(frozen=True)
class Client:
    """One runnable example: ``run(*args, env=...)`` runs it to completion."""

    name: str
    argv: tuple[str, ...]
    cwd: Path

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        base = {k: v for k, v in os.environ.items() if not k.startswith("AUREA_")}
        done = subprocess.run(
            [*self.argv, *args],
            cwd=self.cwd,
            env={**base, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT_S,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str

    def ok(self) -> str:
        assert self.rc == 0, f"client exited {self.rc}:\n{self.stderr}\n{self.stdout}"
        assert "INTERNAL" not in self.stderr and "UNKNOWN" not in self.stderr, self.stderr
        return self.stdout

    def failed(self) -> str:
        assert self.rc != 0, f"client succeeded but should have failed:\n{self.stdout}"
        assert "Traceback" not in self.stderr, f"the client crashed:\n{self.stderr}"
        return self.stderr


@pytest.fixture(
    scope="module", params=[pytest.param("node", marks=pytest.mark.node), pytest.param("python")]
)
def client(request: pytest.FixtureRequest) -> Client:
    """The Node example (``generate.js``) or the Python example, run as a child process."""
    if request.param == "node":
        node = request.getfixturevalue("node_client")
        return Client("node", (node, "generate.js"), NODE_DIR)
    return Client("python", (sys.executable, str(PYTHON_EXAMPLE)), REPO)


@pytest.fixture(scope="module")
def node_embed(node_client: str) -> Client:
    return Client("node-embed", (node_client, "embed.js"), NODE_DIR)


@pytest.fixture(scope="module")
def open_target(spawn_server: Callable[..., Any]) -> Iterator[str]:
    sp = spawn_server(config=QUICK_CONFIG)
    yield sp.target
    sp.stop()


@pytest.fixture(scope="module")
def keyed_target(spawn_server: Callable[..., Any]) -> Iterator[str]:
    sp = spawn_server(config=QUICK_CONFIG, env={"AUREA_API_KEYS": f"user:{USER_KEY}"})
    yield sp.target
    sp.stop()


@pytest.fixture(scope="module")
def expected(open_target: str) -> pb.GenerateResponse:
    """What the server answers PROMPT with, asked directly (the simulated provider is a pure
    function of model and prompt, so every client must print exactly this text)."""
    with grpc.insecure_channel(open_target) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        reply: pb.GenerateResponse = stub.Generate(pb.GenerateRequest(prompt=PROMPT), timeout=30)
    return reply


def summary(stdout: str) -> tuple[str, int, int, int]:
    """(text, input tokens, output tokens, cost nanos) of a successful run's output."""
    usage = USAGE_LINE.search(stdout)
    cost = COST_LINE.search(stdout)
    assert usage is not None and cost is not None, f"no usage/cost lines in:\n{stdout}"
    text = stdout[: usage.start()].rstrip("\n")
    return text, int(usage[1]), int(usage[2]), int(cost[1])


def test_stream_prints_deltas_as_they_arrive_then_usage(
    client: Client, open_target: str, expected: pb.GenerateResponse
) -> None:
    out = client.run("--target", open_target, "--stream", PROMPT).ok()
    text, input_tokens, output_tokens, cost = summary(out)
    deltas = DELTAS.search(out)
    assert deltas is not None, out
    assert int(deltas[1]) >= 2, f"expected several deltas:\n{out}"
    # The deltas, written one after another, add up to exactly the whole completion.
    assert text == expected.text
    assert len(text.split()) >= 2
    assert input_tokens > 0 and output_tokens == expected.usage.output_tokens > 1
    assert cost == expected.cost_nanos > 0
    assert "finish=STOP" in out


def test_unary_generate_reads_target_from_env(
    client: Client, open_target: str, expected: pb.GenerateResponse
) -> None:
    out = client.run(PROMPT, env={"AUREA_TARGET": open_target}).ok()
    text, input_tokens, output_tokens, cost = summary(out)
    assert text == expected.text
    assert (input_tokens, output_tokens) == (
        expected.usage.input_tokens,
        expected.usage.output_tokens,
    )
    assert cost == expected.cost_nanos
    assert re.search(r" request_id=[0-9a-f]{32} ", out), out


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_empty_prompt_is_invalid_argument_naming_the_field(
    client: Client, open_target: str, stream: bool
) -> None:
    args = ["--target", open_target, *(["--stream"] if stream else []), ""]
    err = client.run(*args).failed()
    assert err.startswith("INVALID_ARGUMENT: "), err
    # Decoded from grpc-status-details-bin: the ErrorInfo reason and the BadRequest violation.
    assert "reason: INVALID_REQUEST (domain aurea.v1)" in err
    assert re.search(r"^  field prompt: .*must not be empty", err, re.M), err


def test_api_key_is_sent_as_bearer_token(client: Client, keyed_target: str) -> None:
    out = client.run("--target", keyed_target, "--api-key", USER_KEY, "--stream", PROMPT).ok()
    assert summary(out)[2] > 0
    out = client.run(PROMPT, env={"AUREA_TARGET": keyed_target, "AUREA_API_KEY": USER_KEY}).ok()
    assert summary(out)[2] > 0


@pytest.mark.parametrize("key", ["wrong-key-123", ""], ids=["wrong", "missing"])
def test_wrong_or_missing_key_is_unauthenticated(
    client: Client, keyed_target: str, key: str
) -> None:
    for stream in ([], ["--stream"]):
        err = client.run("--target", keyed_target, "--api-key", key, *stream, PROMPT).failed()
        assert err.startswith("UNAUTHENTICATED: "), err
        assert "wrong-key-123" not in err, "the key must never be echoed"


def test_unreachable_server_is_unavailable(client: Client, unused_port: int) -> None:
    err = client.run("--target", f"127.0.0.1:{unused_port}", "--timeout", "5", PROMPT).failed()
    assert err.startswith("UNAVAILABLE: "), err


@pytest.mark.node
def test_node_embed(node_embed: Client, open_target: str) -> None:
    out = node_embed.run("--target", open_target, "first text", "second text").ok()
    dims = re.findall(r"^embedding (\d+): dims=(\d+) \[", out, re.M)
    assert [i for i, _ in dims] == ["0", "1"], out
    assert all(int(d) > 0 for _, d in dims)
    assert USAGE_LINE.search(out), out
    err = node_embed.run("--target", open_target, "fine", "").failed()
    assert err.startswith("INVALID_ARGUMENT: "), err
    assert re.search(r"^  field inputs\[1\]: ", err, re.M), err


@pytest.mark.node
def test_node_usage_error_exits_2(node_client: str) -> None:
    res = Client("node", (node_client, "generate.js"), NODE_DIR).run()
    assert res.rc == 2 and "usage: node generate.js" in res.stderr
