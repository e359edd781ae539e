"""``aurea generate --tools FILE --json-schema FILE --image PATH`` against a real ``aurea serve``
(the simulated provider): tool calls printed readably (unary, streamed, JSON), schema-valid JSON,
an image sent inline, and bad files refused with exit 2 and one line."""

from __future__ import annotations

import json
import struct
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

QUICK_CONFIG = """
[providers.simulated]
kind = "simulated"

[providers.simulated.options]
token_delay_ms = 1
"""
Cli = Callable[..., subprocess.CompletedProcess[str]]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
            },
        },
    }
]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def target(spawn_server: Callable[..., Any]) -> Iterator[str]:
    sp = spawn_server(config=QUICK_CONFIG)
    yield sp.target
    sp.stop()
    assert "rpc_bug" not in sp.log_text(), sp.log_tail()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOLS))
    schema = tmp_path / "person.json"
    schema.write_text(json.dumps(SCHEMA))
    image = tmp_path / "dot.png"
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    image.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    return {"tools": str(tools), "schema": str(schema), "image": str(image), "broken": str(broken)}


def test_tool_calls_are_printed_readably(
    aurea_cli: Cli, target: str, files: dict[str, str]
) -> None:
    unary = aurea_cli("generate", "weather?", "--tools", files["tools"], "--target", target)
    assert unary.returncode == 0, unary.stderr
    [line] = unary.stdout.strip().splitlines()
    assert line.startswith("tool call get_weather {") and "[id call_" in line
    arguments = json.loads(line.removeprefix("tool call get_weather ").rsplit("  [id", 1)[0])
    assert set(arguments) == {"city", "days"}

    streamed = aurea_cli(
        "generate", "weather?", "--tools", files["tools"], "--stream", "--target", target
    )
    assert streamed.returncode == 0, streamed.stderr
    [line] = streamed.stdout.strip().splitlines()
    name, _, rest = line.partition(": ")
    assert name.startswith("tool call get_weather [id call_")
    assert json.loads(rest) == arguments  # the same call, its pieces joined on one line

    as_json = aurea_cli(
        "generate", "weather?", "--tools", files["tools"], "--json", "--target", target
    )
    reply = json.loads(as_json.stdout)
    assert reply["finish_reason"] == "tool_calls"
    assert [c["name"] for c in reply["tool_calls"]] == ["get_weather"]
    assert json.loads(reply["tool_calls"][0]["arguments"]) == arguments


def test_json_schema_and_image(aurea_cli: Cli, target: str, files: dict[str, str]) -> None:
    r = aurea_cli(
        "generate",
        "a person",
        "--json-schema",
        files["schema"],
        "--strict",
        "--image",
        files["image"],
        "--target",
        target,
    )
    assert r.returncode == 0, r.stderr
    person = json.loads(r.stdout)
    assert set(person) == {"name", "age"} and isinstance(person["age"], int)
    # The image counts in the prompt (85 tokens for the simulated provider).
    plain = aurea_cli("generate", "a person", "--json-schema", files["schema"], "--target", target)
    tokens_with = int(r.stderr.split("[", 1)[1].split(": ")[1].split(" in")[0])
    tokens_without = int(plain.stderr.split("[", 1)[1].split(": ")[1].split(" in")[0])
    assert tokens_with - tokens_without == 85


@pytest.mark.parametrize(
    ("flag", "key", "message"),
    [
        ("--tools", "broken", "is not valid JSON"),
        ("--json-schema", "broken", "is not valid JSON"),
        ("--image", "missing", "cannot read the image"),
    ],
)
def test_bad_files_exit_2_with_one_line(
    aurea_cli: Cli, target: str, files: dict[str, str], flag: str, key: str, message: str
) -> None:
    path = files.get(key, "/nonexistent/image.png")
    r = aurea_cli("generate", "x", flag, path, "--target", target)
    assert r.returncode == 2
    assert r.stderr.startswith("aurea: ") and message in r.stderr
    assert "Traceback" not in r.stderr
