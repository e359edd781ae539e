"""The official ``openai`` Python SDK (from PyPI), unchanged, against Aurea's HTTP door: chat
unary and streamed with usage, embeddings (float and the SDK's default base64), the model list,
Aurea's inputs through ``extra_body`` and headers, and every error status raised as the SDK's own
exception class (400, 401, 403, 404, 429 with Retry-After, 503). Rich generation through the SDK
(tools, JSON schemas, images) is in ``test_http_rich.py``; here, what stays refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as make_settings
from aurea.testing.fakes import FakeOpenAI, Fault, FaultKind
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

openai = pytest.importorskip("openai")  # under AUREA_REQUIRE_ALL a missing SDK fails

pytestmark = pytest.mark.integration

USER_KEY = "user-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
UPSTREAM_KEY = "sk-upstream-http-door"
KEY_ENV = "AUREA_TEST_HTTP_UPSTREAM_KEY"


# Each test's state is its own: in-memory ledger and router stats, not the shared SQLite file.
ISOLATED = {"ledger": {"store": "memory"}, "routing": {"stats_store": "memory"}}


def door_settings(**raw: Any) -> Any:
    routing = {**ISOLATED["routing"], **raw.pop("routing", {})}
    ledger = {**ISOLATED["ledger"], **raw.pop("ledger", {})}
    base = {"http": {"host": "127.0.0.1", "port": 0}, "routing": routing, "ledger": ledger}
    return make_settings({**base, **raw})


_clients: list[Any] = []


def sdk(rs: RunningServer, key: str = "unused", **kw: Any) -> Any:
    """An AsyncOpenAI client at the door (closed after the test, whatever happens)."""
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{rs.server.http_port}/v1",
        api_key=key,
        max_retries=kw.pop("max_retries", 0),
        timeout=30.0,
        **kw,
    )
    _clients.append(client)
    return client


@pytest_asyncio.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    while _clients:
        await _clients.pop().close()


@pytest_asyncio.fixture
async def door() -> AsyncIterator[RunningServer]:
    settings = door_settings(routing={"denied_models": ["sim-large"]})
    async with running_server(settings) as rs:
        yield rs


@pytest_asyncio.fixture
async def keyed_door() -> AsyncIterator[RunningServer]:
    env = {"AUREA_API_KEYS": f"user:{USER_KEY},admin:{ADMIN_KEY}"}
    async with running_server(make_settings({"http": {"port": 0}, **ISOLATED}, **env)) as rs:
        yield rs


@pytest_asyncio.fixture
async def upstream(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenAI]:
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    async with FakeOpenAI(api_key=UPSTREAM_KEY, token_delay_s=0.002) as fake:
        yield fake


@pytest_asyncio.fixture
async def relay(upstream: FakeOpenAI) -> AsyncIterator[RunningServer]:
    """Aurea in front of a fake OpenAI upstream (no retries, so faults reach the caller)."""
    settings = door_settings(
        providers={"up": {"kind": "openai", "base_url": upstream.base_url, "api_key_env": KEY_ENV}},
        models={
            "up-chat": {
                "provider": "up",
                "upstream": "gpt-4o-mini",
                "input_usd_per_mtok": "0.15",
                "output_usd_per_mtok": "0.60",
            },
            "up-embed": {
                "provider": "up",
                "upstream": "text-embedding-3-small",
                "kind": "embedding",
                "input_usd_per_mtok": "0.02",
            },
        },
        routing={"default_model": "up-chat", "default_embedding_model": "up-embed"},
        retry={"max_retries": 0},
    )
    async with running_server(settings) as rs:
        yield rs


async def grpc_answer(rs: RunningServer, prompt: str, model: str) -> pb.GenerateResponse:
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    reply: pb.GenerateResponse = await stub.Generate(
        pb.GenerateRequest(prompt=prompt, model=model), timeout=30
    )
    return reply


async def test_chat_unary_is_the_same_answer_as_grpc(door: RunningServer) -> None:
    client = sdk(door)
    raw = await client.chat.completions.with_raw_response.create(
        model="sim-small", messages=[{"role": "user", "content": "hello there"}]
    )
    reply = raw.parse()
    expected = await grpc_answer(door, "hello there", "sim-small")
    assert reply.choices[0].message.content == expected.text
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "sim-small"
    assert reply.object == "chat.completion"
    assert reply.usage.prompt_tokens == expected.usage.input_tokens
    assert reply.usage.completion_tokens == expected.usage.output_tokens
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    # Aurea's extras: cost in a header and in the usage block, the request id in x-request-id.
    cost = int(raw.headers["x-aurea-cost-nanos"])
    assert cost == expected.cost_nanos > 0
    assert reply.usage.model_extra["aurea"]["cost_nanos"] == cost
    assert raw.headers["x-aurea-provider"] == "simulated"
    assert reply.id == f"chatcmpl-{raw.headers['x-request-id']}"
    await client.close()


async def test_chat_stream_with_usage(door: RunningServer) -> None:
    client = sdk(door)
    stream = await client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "system", "content": "be terse"}, {"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    expected = await client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "system", "content": "be terse"}, {"role": "user", "content": "hi"}],
    )
    assert text == expected.choices[0].message.content and text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == expected.usage.completion_tokens
    assert chunks[-1].usage.model_extra["aurea"]["cost_nanos"] > 0
    assert all(c.id == chunks[0].id and c.model == "sim-small" for c in chunks)
    await client.close()


async def test_chat_stream_without_usage_has_no_usage_chunk(door: RunningServer) -> None:
    client = sdk(door)
    stream = await client.chat.completions.create(
        model="sim-small", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [c async for c in stream]
    assert chunks and all(c.choices and c.usage is None for c in chunks)
    await client.close()


async def test_embeddings_float_and_base64(door: RunningServer) -> None:
    client = sdk(door)
    default = await client.embeddings.create(model="sim-embed", input=["one", "two"])
    floats = await client.embeddings.create(
        model="sim-embed", input=["one", "two"], encoding_format="float"
    )
    # The SDK asks for base64 by default and decodes it; both must be the same vectors.
    assert [d.index for d in default.data] == [0, 1]
    assert len(default.data[0].embedding) > 0
    for a, b in zip(default.data, floats.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, rel=1e-6)
    assert default.usage.prompt_tokens > 0
    assert default.model == "sim-embed"
    single = await client.embeddings.create(model="sim-embed", input="one")
    assert single.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)
    await client.close()


async def test_models_lists_the_permitted_catalog(door: RunningServer) -> None:
    client = sdk(door)
    models = [m async for m in client.models.list()]
    ids = {m.id for m in models}
    assert ids == {"sim-small", "sim-embed"}  # sim-large is denied by this server
    one = await client.models.retrieve("sim-small")
    assert one.id == "sim-small" and one.owned_by == "simulated"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("sim-large")
    await client.close()


async def test_aurea_inputs_through_extra_body_and_headers(door: RunningServer) -> None:
    client = sdk(door)
    reply = await client.chat.completions.create(
        model="",
        messages=[{"role": "user", "content": "route me"}],
        extra_body={"aurea": {"policy": "cost", "job_id": "job-1", "labels": {"team": "a"}}},
    )
    assert reply.model == "sim-small"  # cheapest permitted chat model
    # An unknown fallback through the header is refused naming it, like over gRPC.
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(
            model="sim-small",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-aurea-fallbacks": "sim-small,no-such-model"},
        )
    assert info.value.param == "fallback_models[1]"
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(
            model="sim-small",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"aurea": {"policy": "cheapest", "colour": "red"}},
        )
    assert bad.value.param == "aurea.colour"  # the first of the bad fields; all are listed
    assert "aurea.policy" in bad.value.message
    await client.close()


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
         "response_format.json_schema.schema"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "what is this?"},
                            {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}},
                        ],
                    }
                ]
            },
            "messages[0].content[1].image_url.url",
        ),
        ({"n": 2}, "n"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
    ],
    ids=["tool_choice", "json_schema", "image", "n", "audio"],
)  # fmt: skip
async def test_bad_or_unsupported_features_are_refused_400_naming_the_field(
    door: RunningServer, kwargs: dict[str, Any], param: str
) -> None:
    client = sdk(door)
    args: dict[str, Any] = {"model": "sim-small", "messages": [{"role": "user", "content": "x"}]}
    args.update(kwargs)
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(**args)
    err = info.value
    assert err.status_code == 400
    assert err.param == param
    assert err.type == "invalid_request_error"
    await client.close()


async def test_a_tool_result_must_answer_an_earlier_tool_call(door: RunningServer) -> None:
    client = sdk(door)
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="sim-small",
            messages=[
                {"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
        )
    assert info.value.param == "messages[1].tool_call_id"
    await client.close()


async def test_errors_are_the_sdks_exception_classes(
    door: RunningServer, keyed_door: RunningServer
) -> None:
    client = sdk(door)
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": ""}]
        )
    assert bad.value.param == "messages[0].content"
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        await client.chat.completions.create(
            model="sim-large", messages=[{"role": "user", "content": "x"}]
        )
    assert denied.value.code == "model_not_allowed"
    await client.close()
    wrong = sdk(keyed_door, key="wrong-key-0000000")
    with pytest.raises(openai.AuthenticationError) as unauth:
        await wrong.models.list()
    assert unauth.value.code == "invalid_api_key"
    assert "wrong-key" not in unauth.value.message
    await wrong.close()
    right = sdk(keyed_door, key=USER_KEY)
    assert [m.id async for m in right.models.list()]
    await right.close()


async def test_503_while_draining_with_retry_after(door: RunningServer) -> None:
    client = sdk(door)
    door.server.tracker.draining = True
    try:
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(
                model="sim-small", messages=[{"role": "user", "content": "x"}]
            )
    finally:
        door.server.tracker.draining = False
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.response.headers["x-should-retry"] == "true"
    await client.close()


async def test_upstream_429_is_rate_limit_error_with_retry_after(
    relay: RunningServer, upstream: FakeOpenAI
) -> None:
    client = sdk(relay)
    upstream.inject(Fault(FaultKind.RATE_LIMIT, retry_after="7"))
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(
            model="up-chat", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.code == "rate_limit_exceeded"
    await client.close()


async def test_relay_answers_through_an_openai_kind_provider(
    relay: RunningServer, upstream: FakeOpenAI
) -> None:
    client = sdk(relay)
    reply = await client.chat.completions.create(
        model="up-chat", messages=[{"role": "user", "content": "one two three"}]
    )
    assert reply.choices[0].message.content == "Echo: one two three"
    stream = await client.chat.completions.create(
        model="up-chat",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Echo: one two three"
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    vectors = await client.embeddings.create(model="up-embed", input=["a b", "c"])
    assert len(vectors.data) == 2
    await client.close()


@pytest.mark.parametrize("fault", [FaultKind.STREAM_ERROR, FaultKind.CUT_STREAM])
async def test_mid_stream_upstream_failure_raises_in_the_sdk(
    relay: RunningServer, upstream: FakeOpenAI, fault: FaultKind
) -> None:
    upstream.reply = lambda prompt: "one two three four five six seven eight"
    upstream.inject(Fault(fault, after_tokens=3))
    client = sdk(relay)
    stream = await client.chat.completions.create(
        model="up-chat", messages=[{"role": "user", "content": "go"}], stream=True
    )
    got: list[str] = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            if chunk.choices:
                got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "one two three"  # what came before the failure, and no more
    assert not isinstance(info.value, openai.APIStatusError)  # an in-band error event
    assert info.value.message and info.value.body["type"] == "api_error"
    await client.close()


async def test_an_exhausted_budget_is_not_retried_by_the_sdk() -> None:
    from structlog.testing import capture_logs

    from aurea.v1 import ledger_pb2, ledger_pb2_grpc

    async with running_server(door_settings()) as rs:
        ledger = ledger_pb2_grpc.LedgerServiceStub(rs.channel)
        await ledger.SetBudget(ledger_pb2.SetBudgetRequest(job_id="broke", budget_nanos=0))
        client = sdk(rs, max_retries=3)
        with capture_logs() as logs, pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(
                model="sim-small",
                messages=[{"role": "user", "content": "x"}],
                extra_headers={"x-aurea-job-id": "broke"},
            )
        assert info.value.code == "insufficient_quota"
        finished = [e for e in logs if e.get("event") == "rpc_finished"]
        assert len(finished) == 1, "x-should-retry: false stops the SDK's own retries"
        await client.close()
