"""The ``aurea`` command's expected failures end with one short line and an exit code, never a
traceback: Ctrl-C (130), a server that is not there (1), a closed stdout (141), a bad argument
(2). Ctrl-C is sent at points the test controls, not after a guessed delay."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

SLOW_CONFIG = """
[providers.simulated]
kind = "simulated"

[providers.simulated.options]
token_delay_ms = 100
min_tokens = 200
max_tokens = 200
"""
# Python run in the child before aurea.cli: hold ``aurea serve`` inside AureaServer.start, before
# (or after) the real start, until Ctrl-C, and say so on stderr.
HOLD_IN_START = """
import asyncio, sys
import aurea.server

_real_start = aurea.server.AureaServer.start

async def _held_start(self):
    if {after!r}:
        await _real_start(self)
    sys.stderr.write("held in start\\n")
    sys.stderr.flush()
    await asyncio.Event().wait()

aurea.server.AureaServer.start = _held_start
"""


def assert_one_short_line(stderr: str, starts: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), stderr


@pytest.fixture
def black_hole() -> Iterator[socket.socket]:
    """A loopback listener that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s


@pytest.fixture(scope="module")
def slow_target(spawn_server: Callable[..., Any]) -> Iterator[str]:
    sp = spawn_server(config=SLOW_CONFIG)
    yield sp.target
    sp.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_ctrl_c_while_generate_waits_for_the_server(
    aurea_popen: Callable[..., Any], black_hole: socket.socket, stream: bool
) -> None:
    host, port = black_hole.getsockname()
    args = ["generate", "hi", "--target", f"{host}:{port}", *(["--stream"] if stream else [])]
    ap = aurea_popen(*args)
    conn, _ = black_hole.accept()  # the client is now inside its call
    with conn:
        ap.proc.send_signal(signal.SIGINT)
        code, out, err = ap.finish()
    assert code == 130
    assert_one_short_line(err, "aurea: interrupted")
    assert out == ""


def test_ctrl_c_mid_stream(aurea_popen: Callable[..., Any], slow_target: str) -> None:
    ap = aurea_popen("generate", "a long story", "--stream", "--target", slow_target)
    ap.read_until(b" ")  # tokens are arriving
    ap.proc.send_signal(signal.SIGINT)
    code, out, err = ap.finish()
    assert code == 130
    assert out.strip()
    assert_one_short_line(err, "aurea: interrupted")


def test_ctrl_c_during_serve_startup(aurea_popen: Callable[..., Any]) -> None:
    ap = aurea_popen(
        "serve", "--port", "0", prelude=HOLD_IN_START.format(after=False), stderr="merge"
    )
    ap.read_until(b"held in start")
    ap.proc.send_signal(signal.SIGINT)
    code, out, _ = ap.finish()
    assert code == 130
    assert "Traceback" not in out and "Exception ignored" not in out, out
    assert out.rstrip().endswith("aurea: interrupted"), out


def test_ctrl_c_after_start_before_signal_handlers(aurea_popen: Callable[..., Any]) -> None:
    ap = aurea_popen(
        "serve", "--port", "0", prelude=HOLD_IN_START.format(after=True), stderr="merge"
    )
    ap.read_until(b"held in start")
    ap.proc.send_signal(signal.SIGINT)
    code, out, _ = ap.finish()
    assert code == 130
    assert "Traceback" not in out and "Exception ignored" not in out, out
    assert "server_stopped" in out  # the started server was stopped, not abandoned


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_generate_against_a_closed_port(
    aurea_cli: Callable[..., Any], unused_port: int, stream: bool
) -> None:
    args = ["generate", "hi", "--target", f"127.0.0.1:{unused_port}", "--timeout", "10"]
    r = aurea_cli(*args, *(["--stream"] if stream else []))
    assert r.returncode == 1
    assert_one_short_line(r.stderr, "aurea: UNAVAILABLE: ")
    assert r.stdout == ""


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_generate_into_a_closed_stdout(
    aurea_popen: Callable[..., Any], slow_target: str, stream: bool
) -> None:
    """``aurea generate ... | head -c0``: the reader is gone before the text arrives."""
    args = ["generate", "hi", "--max-tokens", "3", "--target", slow_target]
    ap = aurea_popen(*args, *(["--stream"] if stream else []))
    ap.proc.stdout.close()
    code, _, err = ap.finish()
    assert code == 141
    assert "Traceback" not in err and "Exception ignored" not in err, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--max-tokens", "99999999999"), "out of range", id="max-tokens"),
        pytest.param(("--api-key", "clé"), "printable ASCII", id="api-key"),
    ],
)
def test_generate_bad_arguments_are_usage_errors(
    aurea_cli: Callable[..., Any], unused_port: int, args: tuple[str, ...], message: str
) -> None:
    r = aurea_cli("generate", "hi", "--target", f"127.0.0.1:{unused_port}", *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_ctrl_c_hides_a_half_built_objects_failing_del(tmp_path: Path) -> None:
    """Ctrl-C inside a library constructor (grpc's call objects) leaves an object whose __del__
    fails later: the user asked to stop, so no "Exception ignored ... Traceback" follows."""
    script = tmp_path / "ctrl_c.py"
    script.write_text(
        "import sys, types\n"
        "from aurea import cli\n"
        "class HalfBuilt:\n"
        "    def __del__(self):\n"
        "        raise AttributeError('no _state')\n"
        "keep = []\n"
        "def command(args):\n"
        "    keep.append(HalfBuilt())\n"
        "    raise KeyboardInterrupt\n"
        "cli.parser = lambda: types.SimpleNamespace(\n"
        "    parse_args=lambda argv: types.SimpleNamespace(func=command))\n"
        "code = cli.main([])\n"
        "keep.clear()\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 130
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert done.stderr.strip() == "aurea: interrupted"
