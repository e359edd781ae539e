"""The real grpcurl binary against a real ``aurea serve`` process: reflection lists and describes
every aurea.v1 service, Generate and GenerateStream answer, health checks, and API keys in
``-H`` headers are honoured."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.grpcurl]

AUREA_SERVICES = (
    "aurea.v1.AdminService",
    "aurea.v1.InferenceService",
    "aurea.v1.InfrastructureService",
    "aurea.v1.LedgerService",
    "aurea.v1.RouterService",
    "aurea.v1.TaskService",
)
HEALTH = "grpc.health.v1.Health"
QUICK_CONFIG = """
[providers.simulated]
kind = "simulated"

[providers.simulated.options]
token_delay_ms = 2
"""
USER_KEY = "grpcurl-user-key-01"
ADMIN_KEY = "grpcurl-admin-key-01"
# grpcurl exits with 64 + the gRPC status code when an RPC fails.
GRPCURL_RPC_FAILED = 64


@pytest.fixture(scope="module")
def open_target(spawn_server: Callable[..., Any]) -> Iterator[str]:
    sp = spawn_server(config=QUICK_CONFIG)
    yield sp.target
    sp.stop()
    assert "rpc_bug" not in sp.log_text(), sp.log_tail()


@pytest.fixture(scope="module")
def keyed_target(spawn_server: Callable[..., Any]) -> Iterator[str]:
    sp = spawn_server(
        config=QUICK_CONFIG, env={"AUREA_API_KEYS": f"user:{USER_KEY},admin:{ADMIN_KEY}"}
    )
    yield sp.target
    sp.stop()
    assert "rpc_bug" not in sp.log_text(), sp.log_tail()


def run(grpcurl: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [grpcurl, "-plaintext", "-max-time", "30", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"grpcurl failed ({result.returncode}): {result.stderr}"
    return result.stdout


def json_messages(text: str) -> list[dict[str, Any]]:
    """grpcurl prints one pretty-printed JSON object per response message, back to back."""
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return out
        obj, i = decoder.raw_decode(text, i)
        out.append(obj)


def field(msg: dict[str, Any], snake: str) -> Any:
    """A field by its proto name or its lowerCamelCase JSON name (grpcurl versions differ)."""
    if snake in msg:
        return msg[snake]
    head, *rest = snake.split("_")
    return msg.get(head + "".join(p.title() for p in rest))


def test_grpcurl_lists_all_aurea_services_via_reflection(grpcurl: str, open_target: str) -> None:
    listed = set(ok(run(grpcurl, open_target, "list")).split())
    assert set(AUREA_SERVICES) <= listed, f"missing: {set(AUREA_SERVICES) - listed}"
    assert HEALTH in listed


def test_grpcurl_lists_the_inference_methods(grpcurl: str, open_target: str) -> None:
    methods = set(ok(run(grpcurl, open_target, "list", "aurea.v1.InferenceService")).split())
    assert methods == {
        "aurea.v1.InferenceService.Generate",
        "aurea.v1.InferenceService.GenerateStream",
        "aurea.v1.InferenceService.Embed",
    }


def test_grpcurl_describes_inference_service(grpcurl: str, open_target: str) -> None:
    out = ok(run(grpcurl, open_target, "describe", "aurea.v1.InferenceService"))
    assert "aurea.v1.InferenceService is a service:" in out
    compact = " ".join(out.split())
    assert (
        "rpc Generate ( .aurea.v1.GenerateRequest ) returns ( .aurea.v1.GenerateResponse );"
        in compact
    )
    assert (
        "rpc GenerateStream ( .aurea.v1.GenerateStreamRequest ) returns "
        "( stream .aurea.v1.GenerateStreamResponse );" in compact
    )
    assert "rpc Embed ( .aurea.v1.EmbedRequest ) returns ( .aurea.v1.EmbedResponse );" in compact


def test_grpcurl_describes_every_service(grpcurl: str, open_target: str) -> None:
    """Reflection serves complete descriptors: every aurea.v1 service and its types resolve."""
    out = ok(run(grpcurl, open_target, "describe"))
    for service in (*AUREA_SERVICES, HEALTH):
        assert f"{service} is a service:" in out
    for symbol in ("aurea.v1.GetJobRequest", "aurea.v1.WatchTasksResponse", "aurea.v1.Usage"):
        assert f"{symbol} is a message:" in ok(run(grpcurl, open_target, "describe", symbol))


def test_grpcurl_describes_a_request_message(grpcurl: str, open_target: str) -> None:
    out = ok(run(grpcurl, open_target, "describe", "aurea.v1.GenerateRequest"))
    compact = " ".join(out.split())
    assert "string prompt = 1;" in compact
    assert "int32 max_tokens = 4;" in compact


def test_grpcurl_calls_generate(grpcurl: str, open_target: str) -> None:
    out = ok(
        run(grpcurl, "-d", '{"prompt":"hi"}', open_target, "aurea.v1.InferenceService/Generate")
    )
    [reply] = json_messages(out)
    assert reply["text"].strip()
    assert reply["model"] == "sim-small"
    assert reply["provider"] == "simulated"
    assert field(reply, "request_id")
    assert field(reply, "finish_reason") == "FINISH_REASON_STOP"
    usage = reply["usage"]
    # int64 fields are JSON strings.
    assert int(field(usage, "input_tokens")) > 0
    assert int(field(usage, "output_tokens")) > 0
    assert int(field(reply, "cost_nanos")) > 0


def test_grpcurl_calls_generate_stream(grpcurl: str, open_target: str) -> None:
    out = ok(
        run(
            grpcurl,
            "-d",
            '{"request":{"prompt":"hi"}}',
            open_target,
            "aurea.v1.InferenceService/GenerateStream",
        )
    )
    events = json_messages(out)
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "started", kinds
    assert kinds[-1] == "final", kinds
    assert kinds.count("started") == 1 and kinds.count("final") == 1
    middle = kinds[1:-1]
    assert set(middle) <= {"delta", "usage"}, kinds
    deltas = [e["delta"]["text"] for e in events if "delta" in e]
    assert deltas and "".join(deltas).strip()
    assert kinds.index("delta") < kinds.index("final")
    final = events[-1]["final"]
    assert field(final, "finish_reason") == "FINISH_REASON_STOP"
    # The simulated provider emits one token per delta and reports exact usage.
    assert int(field(final["usage"], "output_tokens")) == len(deltas)
    assert int(field(final, "cost_nanos")) > 0
    assert field(events[0]["started"], "request_id")


def test_grpcurl_calls_embed(grpcurl: str, open_target: str) -> None:
    out = ok(
        run(
            grpcurl,
            "-d",
            '{"inputs":["one","two"]}',
            open_target,
            "aurea.v1.InferenceService/Embed",
        )
    )
    [reply] = json_messages(out)
    vectors = reply["embeddings"]
    assert len(vectors) == 2
    assert all(len(v["values"]) > 0 for v in vectors)


def test_grpcurl_checks_health(grpcurl: str, open_target: str) -> None:
    [reply] = json_messages(ok(run(grpcurl, open_target, "grpc.health.v1.Health/Check")))
    assert reply == {"status": "SERVING"}
    [per_service] = json_messages(
        ok(
            run(
                grpcurl,
                "-d",
                '{"service":"aurea.v1.InferenceService"}',
                open_target,
                "grpc.health.v1.Health/Check",
            )
        )
    )
    assert per_service == {"status": "SERVING"}


def test_grpcurl_shows_bad_request_details(grpcurl: str, open_target: str) -> None:
    result = run(
        grpcurl,
        "-d",
        '{"prompt":"", "max_tokens": -1}',
        open_target,
        "aurea.v1.InferenceService/Generate",
    )
    assert result.returncode == GRPCURL_RPC_FAILED + 3, result.stderr  # INVALID_ARGUMENT
    assert "Code: InvalidArgument" in result.stderr
    assert "google.rpc.BadRequest" in result.stderr
    assert '"field":"prompt"' in result.stderr.replace(" ", "")
    assert '"field":"max_tokens"' in result.stderr.replace(" ", "")


def test_grpcurl_without_key_is_unauthenticated(grpcurl: str, keyed_target: str) -> None:
    result = run(
        grpcurl, "-d", '{"prompt":"hi"}', keyed_target, "aurea.v1.InferenceService/Generate"
    )
    assert result.returncode == GRPCURL_RPC_FAILED + 16, result.stderr
    assert "Code: Unauthenticated" in result.stderr


@pytest.mark.parametrize(
    "header",
    [f"authorization: Bearer {USER_KEY}", f"x-api-key: {USER_KEY}"],
    ids=["bearer", "x-api-key"],
)
def test_grpcurl_with_key_header_generates(grpcurl: str, keyed_target: str, header: str) -> None:
    out = ok(
        run(
            grpcurl,
            "-H",
            header,
            "-d",
            '{"prompt":"hi"}',
            keyed_target,
            "aurea.v1.InferenceService/Generate",
        )
    )
    [reply] = json_messages(out)
    assert reply["text"].strip()


def test_grpcurl_stream_with_key_header(grpcurl: str, keyed_target: str) -> None:
    out = ok(
        run(
            grpcurl,
            "-H",
            f"authorization: Bearer {USER_KEY}",
            "-d",
            '{"request":{"prompt":"hi"}}',
            keyed_target,
            "aurea.v1.InferenceService/GenerateStream",
        )
    )
    kinds = [next(iter(e)) for e in json_messages(out)]
    assert kinds[0] == "started" and kinds[-1] == "final" and "delta" in kinds


def test_grpcurl_reflection_and_health_need_no_key(grpcurl: str, keyed_target: str) -> None:
    listed = set(ok(run(grpcurl, keyed_target, "list")).split())
    assert set(AUREA_SERVICES) <= listed
    [reply] = json_messages(ok(run(grpcurl, keyed_target, "grpc.health.v1.Health/Check")))
    assert reply == {"status": "SERVING"}


def test_grpcurl_user_key_on_admin_rpc_is_permission_denied(
    grpcurl: str, keyed_target: str
) -> None:
    result = run(
        grpcurl,
        "-H",
        f"authorization: Bearer {USER_KEY}",
        keyed_target,
        "aurea.v1.AdminService/ClearCache",
    )
    assert result.returncode == GRPCURL_RPC_FAILED + 7, result.stderr  # PERMISSION_DENIED
    assert "Code: PermissionDenied" in result.stderr
    assert USER_KEY not in result.stderr  # secrets never appear in errors
