"""The OpenAI adapter against the fake OpenAI server (and its OpenAI-compatible modes)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from provider_helpers import FAST, KEY_ENV, chat, closed_port, collect, make_spec, wait_for_abort

from aurea.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    StreamBroken,
)
from aurea.providers._base import (
    EmbedRequest,
    FinishReason,
    Provider,
    TextDelta,
    Timeouts,
    Usage,
)
from aurea.providers._tokens import estimate_usage
from aurea.providers.openai import OpenAIProvider
from aurea.testing.fakes import Fault, FaultKind
from aurea.testing.fakes.openai import FakeOpenAI


@pytest.fixture
async def fake(api_key: str) -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=api_key) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    adapter = OpenAIProvider(make_spec("openai", fake.base_url))
    yield adapter
    await adapter.aclose()


def long_reply(prompt: str) -> str:
    return " ".join(f"word{i}" for i in range(200))


async def test_is_a_provider(provider: OpenAIProvider) -> None:
    assert isinstance(provider, Provider)


async def test_unary_text_usage_and_wire_shape(
    fake: FakeOpenAI, provider: OpenAIProvider, api_key: str
) -> None:
    fake.cached_input_tokens = 2
    request = chat("hello there world", system="be brief", max_tokens=50, temperature=0.5, seed=7)
    completion = await provider.complete(request)
    assert completion.text == "Echo: hello there world"
    assert completion.finish.reason is FinishReason.STOP
    assert completion.usage == Usage(input_tokens=5, cached_input_tokens=2, output_tokens=4)
    sent = fake.last_request
    assert sent is not None
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {api_key}"
    assert sent.body == {
        "model": "test-model",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there world"},
        ],
        "max_tokens": 50,
        "temperature": 0.5,
        "seed": 7,
    }


async def test_stream_text_and_usage_with_cached_and_reasoning(
    fake: FakeOpenAI, provider: OpenAIProvider
) -> None:
    fake.cached_input_tokens = 3
    fake.reasoning_tokens = 4
    got = await collect(provider.stream(chat("one two three four")))
    assert got.text == "Echo: one two three four"
    assert [e.text for e in got.events if isinstance(e, TextDelta)][:2] == ["Echo:", " one"]
    # OpenAI's prompt_tokens already include the cached ones; completion includes reasoning.
    assert got.usage == Usage(
        input_tokens=4, cached_input_tokens=3, output_tokens=5 + 4, reasoning_tokens=4
    )
    assert got.finish.reason is FinishReason.STOP
    assert got.finish.raw_reason == "stop"
    body = fake.last_request_body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("tool_calls", FinishReason.TOOL_CALLS),
        ("stop", FinishReason.STOP),
    ],
)
async def test_finish_reasons(
    fake: FakeOpenAI, provider: OpenAIProvider, override: str, expected: FinishReason
) -> None:
    fake.finish_override = override
    got = await collect(provider.stream(chat("hi")))
    assert got.finish.reason is expected
    completion = await provider.complete(chat("hi"))
    assert completion.finish.reason is expected


async def test_length_finish(provider: OpenAIProvider) -> None:
    got = await collect(provider.stream(chat("a b c d e f", max_tokens=3)))
    assert got.text == "Echo: a b"
    assert got.finish.reason is FinishReason.LENGTH
    completion = await provider.complete(chat("a b c d e f", max_tokens=3))
    assert completion.finish.reason is FinishReason.LENGTH


HTTP_FAULTS = [
    (FaultKind.RATE_LIMIT, ProviderRateLimited),
    (FaultKind.SERVER_ERROR, ProviderServerError),
    (FaultKind.OVERLOADED, ProviderOverloaded),
    (FaultKind.CONTEXT_LENGTH, ContextLengthExceeded),
    (FaultKind.CONTENT_FILTER, ContentFiltered),
    (FaultKind.UNAUTHORIZED, ProviderAuthError),
]


@pytest.mark.parametrize(("kind", "error"), HTTP_FAULTS)
@pytest.mark.parametrize("streaming", [True, False])
async def test_http_faults_map_to_errors(
    fake: FakeOpenAI,
    provider: OpenAIProvider,
    kind: FaultKind,
    error: type[ProviderError],
    streaming: bool,
) -> None:
    fake.inject(Fault(kind, retry_after="7"))
    with pytest.raises(error) as caught:
        if streaming:
            await collect(provider.stream(chat("hi")))
        else:
            await provider.complete(chat("hi"))
    assert type(caught.value) is error
    assert caught.value.provider == "openai-test"
    assert caught.value.__cause__ is None or isinstance(caught.value.__cause__, Exception)
    if kind is FaultKind.RATE_LIMIT:
        assert caught.value.retry_after_s == 7.0
        assert caught.value.status == 429
        assert "rate_limit_exceeded" in caught.value.message
    if kind is FaultKind.CONTEXT_LENGTH:
        assert "maximum context length" in caught.value.message
        assert not caught.value.retryable


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (FaultKind.CUT_STREAM, StreamBroken),
        (FaultKind.MALFORMED, StreamBroken),
        (FaultKind.EARLY_EOF, StreamBroken),
        (FaultKind.STREAM_ERROR, ProviderServerError),
    ],
)
async def test_stream_faults(
    fake: FakeOpenAI, provider: OpenAIProvider, kind: FaultKind, error: type[ProviderError]
) -> None:
    fake.inject(Fault(kind, after_tokens=2))
    seen: list[str] = []
    with pytest.raises(error) as caught:
        async for event in provider.stream(chat("one two three four five")):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    assert type(caught.value) is error
    assert "".join(seen) == "Echo: one"
    if kind is FaultKind.STREAM_ERROR:
        assert "in-stream error" in caught.value.message
        assert caught.value.status is None


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (FaultKind.CUT_STREAM, ProviderConnectionError),
        (FaultKind.MALFORMED, ProviderServerError),
    ],
)
async def test_unary_broken_bodies(
    fake: FakeOpenAI, provider: OpenAIProvider, kind: FaultKind, error: type[ProviderError]
) -> None:
    fake.inject(kind)
    with pytest.raises(error):
        await provider.complete(chat("one two three"))


async def test_slow_first_byte_times_out(fake: FakeOpenAI) -> None:
    timeouts = Timeouts(connect_s=0.05, first_byte_s=0.1, idle_s=1.0, total_s=5.0)
    adapter = OpenAIProvider(make_spec("openai", fake.base_url, timeouts=timeouts))
    fake.inject(Fault(FaultKind.SLOW_FIRST_BYTE, delay_s=3.0))
    try:
        with pytest.raises(ProviderTimeout, match="first_byte_s"):
            await collect(adapter.stream(chat("hi")))
    finally:
        await adapter.aclose()


async def test_idle_gap_times_out(fake: FakeOpenAI) -> None:
    fake.token_delay_s = 0.3
    timeouts = Timeouts(connect_s=1.0, first_byte_s=1.0, idle_s=0.05, total_s=5.0)
    adapter = OpenAIProvider(make_spec("openai", fake.base_url, timeouts=timeouts))
    try:
        with pytest.raises(ProviderTimeout, match="idle_s"):
            await collect(adapter.stream(chat("hi there")))
    finally:
        await adapter.aclose()
    await wait_for_abort(fake)


async def test_connect_failure() -> None:
    adapter = OpenAIProvider(
        make_spec("openai", f"http://127.0.0.1:{closed_port()}/v1", key_env="")
    )
    try:
        with pytest.raises(ProviderConnectionError):
            await adapter.complete(chat("hi"))
    finally:
        await adapter.aclose()


async def test_aclose_closes_the_upstream(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.reply = long_reply
    fake.token_delay_s = 0.02
    stream = provider.stream(chat("go"))
    first = await anext(stream)
    assert isinstance(first, TextDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    await wait_for_abort(fake)
    assert fake.aborted_streams == 1
    assert fake.completed_streams == 0


async def test_cancelling_the_consumer_closes_the_upstream(
    fake: FakeOpenAI, provider: OpenAIProvider
) -> None:
    fake.reply = long_reply
    fake.token_delay_s = 0.02
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(chat("go")):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await wait_for_abort(fake)
    assert fake.aborted_streams == 1


async def test_missing_key_env_names_the_variable(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    adapter = OpenAIProvider(make_spec("openai", fake.base_url))
    try:
        with pytest.raises(ProviderAuthError, match=KEY_ENV) as caught:
            await adapter.complete(chat("hi"))
        assert not caught.value.retryable
        with pytest.raises(ProviderAuthError, match=KEY_ENV):
            await collect(adapter.stream(chat("hi")))
    finally:
        await adapter.aclose()
    assert fake.request_count == 0


async def test_wrong_key_is_the_real_401(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong-0000000000000")
    adapter = OpenAIProvider(make_spec("openai", fake.base_url))
    try:
        with pytest.raises(ProviderAuthError, match="Incorrect API key provided") as caught:
            await adapter.complete(chat("hi"))
        assert caught.value.status == 401
        assert "sk-wrong-0000000000000" not in str(caught.value)
    finally:
        await adapter.aclose()


async def test_embeddings_and_models(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    result = await provider.embed(EmbedRequest(model="text-embedding-3-small", inputs=("a b", "c")))
    assert len(result.vectors) == 2
    assert all(len(v) == fake.embedding_dims for v in result.vectors)
    assert result.vectors[0] != result.vectors[1]
    assert result.usage == Usage(input_tokens=3)
    assert fake.last_request_body["input"] == ["a b", "c"]
    assert await provider.list_models() == fake.model_ids


# -- OpenAI-compatible servers -------------------------------------------------------------------
async def test_server_that_ignores_include_usage_gets_estimated(
    fake: FakeOpenAI, provider: OpenAIProvider
) -> None:
    fake.ignore_include_usage = True
    request = chat("estimate me please")
    got = await collect(provider.stream(request))
    assert got.usage.estimated
    assert got.usage == estimate_usage(request.messages, got.text, request.model)
    assert got.usage.output_tokens > 0


async def test_server_without_done_completes_after_finish_reason(
    fake: FakeOpenAI, provider: OpenAIProvider
) -> None:
    fake.omit_done = True
    got = await collect(provider.stream(chat("no done here")))
    assert got.text == "Echo: no done here"
    assert got.finish.reason is FinishReason.STOP
    assert not got.usage.estimated


async def test_usage_on_the_last_choice_chunk(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.usage_on_last_choice = True
    fake.omit_done = True
    got = await collect(provider.stream(chat("x y")))
    assert got.usage == Usage(input_tokens=2, output_tokens=3)


async def test_keyless_compatible_server_sends_no_authorization(fake: FakeOpenAI) -> None:
    adapter = OpenAIProvider(make_spec("openai", fake.base_url, key_env="", timeouts=FAST))
    try:
        with pytest.raises(ProviderAuthError, match="provide an API key"):
            await adapter.complete(chat("hi"))
    finally:
        await adapter.aclose()
    assert fake.last_request is not None
    assert "Authorization" not in fake.last_request.headers


async def test_official_base_url_uses_max_completion_tokens() -> None:
    adapter = OpenAIProvider(make_spec("openai", "", key_env=""))
    try:
        body = adapter._body(chat("hi", max_tokens=5), stream=False)
    finally:
        await adapter.aclose()
    assert body["max_completion_tokens"] == 5
    assert "max_tokens" not in body


async def test_total_timeout(fake: FakeOpenAI) -> None:
    fake.reply = long_reply
    fake.token_delay_s = 0.05
    timeouts = Timeouts(connect_s=1.0, first_byte_s=1.0, idle_s=1.0, total_s=0.3)
    adapter = OpenAIProvider(make_spec("openai", fake.base_url, timeouts=timeouts))
    try:
        with pytest.raises(ProviderTimeout, match="total_s"):
            await collect(adapter.stream(chat("go")))
    finally:
        await adapter.aclose()


async def test_concurrency_cap(fake: FakeOpenAI) -> None:
    fake.token_delay_s = 0.01
    spec = make_spec("openai", fake.base_url)
    adapter = OpenAIProvider(
        type(spec)(
            name=spec.name,
            kind=spec.kind,
            base_url=spec.base_url,
            api_key_env=spec.api_key_env,
            timeouts=spec.timeouts,
            max_concurrency=2,
        )
    )
    try:
        results = await asyncio.gather(
            *(collect(adapter.stream(chat(f"call {i} a b c"))) for i in range(6))
        )
    finally:
        await adapter.aclose()
    assert [r.text for r in results] == [f"Echo: call {i} a b c" for i in range(6)]
    assert fake.max_active_streams == 2


def test_vllm_style_in_stream_error_uses_its_code() -> None:
    from aurea.errors import UpstreamRejected
    from aurea.providers.openai import error_from_body

    error = error_from_body("v", None, {"message": "bad", "type": "BadRequestError", "code": 400})
    assert type(error) is UpstreamRejected
    assert error.status is None
    llama = {"code": 400, "message": "the request exceeds the available context size"}
    assert type(error_from_body("l", 400, llama)) is ContextLengthExceeded
