"""Traces and PII safety end to end, through the real gRPC server.

* Spans (the SDK's in-memory exporter): a call continues the caller's W3C trace id; its span has
  one child per upstream attempt; a retry and a fallback are events on the call span; log lines
  of the call carry its trace id.
* A PII canary: personal data and secrets of every kind sent in prompts, labels, metadata, model
  names (error paths) and upstream error bodies, with production logging at debug level, appear
  in no log line, no span attribute or event, and no metric label.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import grpc
import pytest
import pytest_asyncio
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aurea import testing
from aurea.server import AureaServer
from aurea.telemetry.logging import configure
from aurea.testing.fakes import FakeOpenAI, Fault, FaultKind, Scripted
from aurea.v1 import inference_pb2, inference_pb2_grpc, task_pb2, task_pb2_grpc

pytestmark = pytest.mark.integration

KEY_ENV = "AUREA_TEST_OBS_KEY"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"

PII = {
    "email": "canary.person@example.org",
    "phone": "+1 (555) 867-5309",
    "ssn": "078-05-1120",
    "card": "4111 1111 1111 1111",
    "ipv4": "198.51.100.23",
    "ipv6": "2001:db8:85a3::8a2e:370:7334",
    "api_key": "sk-proj-CANARYabcdefghijklmnop0123",
    "bearer": "eyJhbGciOiJIUzI1NiJ9CANARYtoken",
    "password": "hunter2CANARYpw",
}
PII_TEXT = (
    f"mail {PII['email']} call {PII['phone']} ssn {PII['ssn']} card {PII['card']} "
    f"from {PII['ipv4']} or {PII['ipv6']} key {PII['api_key']} "
    f"Authorization: Bearer {PII['bearer']} password={PII['password']}"
)


def needles() -> list[str]:
    """What must never show up: each value, and the card's digits without spaces."""
    return [*PII.values(), PII["card"].replace(" ", ""), "hunter2", "CANARY"]


@dataclass
class Rig:
    server: AureaServer
    channel: grpc.aio.Channel
    spans: InMemorySpanExporter
    up: FakeOpenAI
    down: FakeOpenAI

    @property
    def stub(self) -> inference_pb2_grpc.InferenceServiceStub:
        return inference_pb2_grpc.InferenceServiceStub(self.channel)


@pytest_asyncio.fixture
async def rig(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    """Aurea traced into an in-memory exporter, with two fake OpenAI upstreams: ``up`` answers,
    ``down`` always fails with a 500."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    async with FakeOpenAI(reply=lambda prompt: f"echo {prompt}") as up, FakeOpenAI() as down:
        down.always = Fault(FaultKind.SERVER_ERROR)
        timeouts = {"connect_timeout_s": 2, "first_byte_timeout_s": 5, "total_timeout_s": 20}
        settings = testing.test_settings(
            {
                "providers": {
                    "up": {"kind": "openai", "base_url": up.base_url, "api_key_env": KEY_ENV}
                    | timeouts,
                    "down": {"kind": "openai", "base_url": down.base_url, "api_key_env": KEY_ENV}
                    | timeouts,
                },
                "models": {
                    "m-up": {"provider": "up", "upstream": "gpt-4o-mini"},
                    "m-down": {"provider": "down", "upstream": "gpt-4o-mini"},
                },
                "routing": {"default_model": "m-up"},
                "retry": {"max_retries": 1},
                "telemetry": {"http_port": 0},
                "http": {"port": 0},
                # The canary's labels carry the whole PII text: over the default label length
                # both doors enforce since issue 16 (the gRPC door did not check it before).
                "input": {"max_label_chars": 4096},
            }
        )
        spans = InMemorySpanExporter()
        server = AureaServer(settings, span_exporter=spans)
        port = await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            yield Rig(server, channel, spans, up, down)
        finally:
            await channel.close()
            await server.stop(grace_s=0)


@contextlib.contextmanager
def production_logs() -> Iterator[io.StringIO]:
    """Aurea's production logging (JSON, debug level, redaction as configured by default) into
    a buffer; the previous structlog configuration is restored after."""
    saved = structlog.get_config()
    buffer = io.StringIO()
    configure(level="debug", fmt="json")  # redaction is on by default
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=buffer),
        cache_logger_on_first_use=False,
    )
    try:
        yield buffer
    finally:
        structlog.configure(**saved)


def span_texts(spans: InMemorySpanExporter) -> str:
    parts = []
    for span in spans.get_finished_spans():
        parts.append(span.name)
        parts.append(json.dumps(dict(span.attributes or {}), default=str))
        for event in span.events:
            parts.append(event.name)
            parts.append(json.dumps(dict(event.attributes or {}), default=str))
        if span.status.description:
            parts.append(span.status.description)
    return "\n".join(parts)


async def test_call_span_continues_the_callers_trace_with_attempts_retry_and_fallback(
    rig: Rig,
) -> None:
    with production_logs() as logs:
        reply = await rig.stub.Generate(
            inference_pb2.GenerateRequest(
                prompt="trace me", model="m-down", fallback_models=["m-up"]
            ),
            metadata=(("traceparent", TRACEPARENT),),
        )
    assert reply.text
    finished = rig.spans.get_finished_spans()
    calls = [s for s in finished if s.name == "aurea.v1.InferenceService/Generate"]
    assert len(calls) == 1
    call = calls[0]
    ctx = call.get_span_context()
    assert ctx is not None
    assert f"{ctx.trace_id:032x}" == TRACE_ID  # the caller's trace continues
    assert call.parent is not None and f"{call.parent.span_id:016x}" == PARENT_SPAN
    attrs = dict(call.attributes or {})
    assert attrs["aurea.model"] == "m-up" and attrs["aurea.fallbacks"] == 1
    assert attrs["aurea.attempts"] == 3 and attrs["aurea.status"] == "OK"

    attempts = sorted(
        (s for s in finished if s.name.startswith("attempt ")),
        key=lambda s: int((s.attributes or {})["aurea.attempt"]),
    )
    assert [s.name for s in attempts] == ["attempt m-down", "attempt m-down", "attempt m-up"]
    for span in attempts:
        assert span.parent is not None and span.parent.span_id == ctx.span_id
    assert [(s.attributes or {}).get("aurea.error") for s in attempts] == [
        "UPSTREAM_SERVER_ERROR",
        "UPSTREAM_SERVER_ERROR",
        None,
    ]
    events = {e.name: dict(e.attributes or {}) for e in call.events}
    assert events["retry"]["aurea.model"] == "m-down"
    assert events["retry"]["aurea.cause"] == "UPSTREAM_SERVER_ERROR"
    assert events["fallback"] == {
        "aurea.from_model": "m-down",
        "aurea.to_model": "m-up",
        "aurea.attempt": 3,
        "aurea.cause": "UPSTREAM_SERVER_ERROR",
    }

    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.strip()]
    finished_lines = [line for line in lines if line["event"] == "rpc_finished"]
    assert finished_lines and finished_lines[-1]["trace_id"] == TRACE_ID
    retries = [line for line in lines if line["event"] == "upstream_retry"]
    assert retries and all(line["trace_id"] == TRACE_ID for line in retries)
    (fallback,) = [line for line in lines if line["event"] == "upstream_fallback"]
    assert fallback["from_model"] == "m-down" and fallback["to_model"] == "m-up"
    assert fallback["cause"] == "UPSTREAM_SERVER_ERROR" and fallback["trace_id"] == TRACE_ID


async def test_the_http_door_continues_the_callers_trace(rig: Rig) -> None:
    door = f"http://127.0.0.1:{rig.server.http_port}/v1/chat/completions"
    body = {"model": "m-up", "messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(door, json=body, headers={"traceparent": TRACEPARENT}) as resp,
    ):
        assert resp.status == 200, await resp.text()
    (call,) = [s for s in rig.spans.get_finished_spans() if s.name == "POST /v1/chat/completions"]
    ctx = call.get_span_context()
    assert ctx is not None and f"{ctx.trace_id:032x}" == TRACE_ID
    attrs = dict(call.attributes or {})
    assert attrs["http.route"] == "/v1/chat/completions" and attrs["aurea.model"] == "m-up"
    attempts = [s for s in rig.spans.get_finished_spans() if s.name == "attempt m-up"]
    assert attempts and attempts[0].parent is not None
    assert attempts[0].parent.span_id == ctx.span_id


async def test_a_call_without_trace_context_starts_a_trace(rig: Rig) -> None:
    await rig.stub.Generate(inference_pb2.GenerateRequest(prompt="hi", model="m-up"))
    (call,) = [
        s for s in rig.spans.get_finished_spans() if s.name.endswith("InferenceService/Generate")
    ]
    assert call.parent is None
    assert call.get_span_context() is not None


async def test_the_upstream_request_carries_the_attempt_span_context(rig: Rig) -> None:
    await rig.stub.Generate(
        inference_pb2.GenerateRequest(prompt="hi", model="m-up"),
        metadata=(("traceparent", TRACEPARENT),),
    )
    sent = rig.up.requests[-1].headers
    traceparent = {k.lower(): v for k, v in sent.items()}.get("traceparent", "")
    assert traceparent.startswith(f"00-{TRACE_ID}-")
    (attempt,) = [s for s in rig.spans.get_finished_spans() if s.name == "attempt m-up"]
    ctx = attempt.get_span_context()
    assert ctx is not None and traceparent.split("-")[2] == f"{ctx.span_id:016x}"


async def test_pii_canary_finds_nothing_in_logs_spans_or_metrics(rig: Rig) -> None:
    stub = rig.stub
    # the upstream's error body quotes the request back, PII included
    rig.down.always = None
    rig.down.scripted.extend(
        Scripted.json(
            {"error": {"message": f"bad input: {PII_TEXT}", "type": "server_error"}}, status=500
        )
        for _ in range(4)
    )
    labels = {"customer": PII["email"], "note": PII_TEXT}
    with production_logs() as logs:
        await stub.Generate(
            inference_pb2.GenerateRequest(prompt=PII_TEXT, model="m-up", labels=labels),
            metadata=(("x-request-id", PII["email"]), ("x-user-ip", PII["ipv4"])),
        )
        async for _ in stub.GenerateStream(
            inference_pb2.GenerateStreamRequest(
                request=inference_pb2.GenerateRequest(prompt=PII_TEXT, model="m-up", labels=labels)
            )
        ):
            pass
        # upstream error bodies, on a retry then a fallback
        await stub.Generate(
            inference_pb2.GenerateRequest(
                prompt=PII_TEXT, model="m-down", fallback_models=["m-up"], labels=labels
            )
        )
        # error paths: an unknown model named with PII, an upstream failure with no fallback
        for model in (PII["email"], "m-down"):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Generate(
                    inference_pb2.GenerateRequest(prompt=PII_TEXT, model=model, labels=labels)
                )
        # a bearer token in the metadata
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.Generate(
                inference_pb2.GenerateRequest(prompt=PII_TEXT),
                metadata=(("authorization", f"Bearer {PII['bearer']}"),),
            )
        # the HTTP door: PII in the body, a header, and an unknown model
        door = f"http://127.0.0.1:{rig.server.http_port}/v1/chat/completions"
        async with aiohttp.ClientSession() as session:
            for model in ("m-up", PII["email"]):
                body = {"model": model, "messages": [{"role": "user", "content": PII_TEXT}]}
                headers = {"x-request-id": PII["ssn"], "x-forwarded-for": PII["ipv4"]}
                async with session.post(door, json=body, headers=headers) as resp:
                    await resp.read()
            # issue 16: a streamed answer, embeddings and labels through the door too
            body = {
                "model": "m-up",
                "messages": [{"role": "user", "content": PII_TEXT}],
                "stream": True,
                "aurea": {"labels": {"customer": PII["email"]}},
            }
            async with session.post(door, json=body) as resp:
                await resp.read()
            embed = door.replace("chat/completions", "embeddings")
            async with session.post(embed, json={"input": [PII_TEXT]}) as resp:
                await resp.read()
        # issue 16: task payloads (a task that runs, one refused by its schema)
        tasks = task_pb2_grpc.TaskServiceStub(rig.channel)
        payload = json.dumps({"prompt": PII_TEXT, "model": "m-up", "max_tokens": 8})
        submitted = await tasks.SubmitTask(
            task_pb2.SubmitTaskRequest(kind="llm.generate", payload_json=payload)
        )
        for _ in range(400):  # bounded: the task ends within seconds
            got = await tasks.GetTask(task_pb2.GetTaskRequest(task_id=submitted.task.task_id))
            if got.task.status >= task_pb2.TASK_STATUS_SUCCEEDED:
                break
            await asyncio.sleep(0.05)
        bad = json.dumps({"prompt": PII_TEXT, "nonsense": PII["email"]})
        with pytest.raises(grpc.aio.AioRpcError):
            await tasks.SubmitTask(
                task_pb2.SubmitTaskRequest(kind="llm.generate", payload_json=bad)
            )
        structlog.get_logger("aurea.test").debug("prompt_debug", prompt=PII_TEXT, labels=labels)
    text = logs.getvalue()
    assert "rpc_finished" in text and "prompt_debug" in text  # the lines were written
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{rig.server.metrics_port}/metrics") as resp,
    ):
        exposition = await resp.text()
    traced = span_texts(rig.spans)
    assert "attempt m-down" in traced
    for needle in needles():
        assert needle not in text, f"{needle!r} leaked into the logs"
        assert needle not in traced, f"{needle!r} leaked into span attributes or events"
        assert needle not in exposition, f"{needle!r} leaked into metric labels"
