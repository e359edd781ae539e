"""The Gemini adapter against the fake Gemini API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from provider_helpers import KEY_ENV, chat, collect, make_spec, wait_for_abort

from aurea.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    ProviderAuthError,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderServerError,
    StreamBroken,
)
from aurea.providers._base import EmbedRequest, FinishReason, Provider, TextDelta, Usage
from aurea.providers.gemini import GeminiProvider, finish_for
from aurea.testing.fakes import Fault, FaultKind
from aurea.testing.fakes.gemini import FakeGemini


@pytest.fixture
async def fake(api_key: str) -> AsyncIterator[FakeGemini]:
    async with FakeGemini(api_key=api_key) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeGemini) -> AsyncIterator[GeminiProvider]:
    adapter = GeminiProvider(make_spec("gemini", fake.base_url))
    yield adapter
    await adapter.aclose()


async def test_is_a_provider(provider: GeminiProvider) -> None:
    assert isinstance(provider, Provider)


async def test_unary_wire_shape_and_usage(
    fake: FakeGemini, provider: GeminiProvider, api_key: str
) -> None:
    fake.cached_input_tokens = 2
    fake.reasoning_tokens = 5
    request = chat(
        "red green blue",
        system="answer in one word",
        model="gemini-2.0-flash",
        max_tokens=30,
        temperature=0.1,
        top_p=0.9,
        stop=("x",),
        seed=3,
    )
    completion = await provider.complete(request)
    assert completion.text == "Echo: red green blue"
    assert completion.finish == finish_for("STOP")
    # 7 prompt words incl. the system instruction; thoughts are added to the output.
    assert completion.usage == Usage(
        input_tokens=7, cached_input_tokens=2, output_tokens=4 + 5, reasoning_tokens=5
    )
    sent = fake.last_request
    assert sent is not None
    assert sent.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == api_key
    assert sent.body == {
        "contents": [{"role": "user", "parts": [{"text": "red green blue"}]}],
        "systemInstruction": {"parts": [{"text": "answer in one word"}]},
        "generationConfig": {
            "maxOutputTokens": 30,
            "temperature": 0.1,
            "topP": 0.9,
            "stopSequences": ["x"],
            "seed": 3,
        },
    }


async def test_stream_crlf_sse_text_and_usage(fake: FakeGemini, provider: GeminiProvider) -> None:
    fake.reasoning_tokens = 2
    got = await collect(provider.stream(chat("one two three", model="models/gemini-2.5-pro")))
    assert got.text == "Echo: one two three"
    assert got.usage == Usage(input_tokens=3, output_tokens=4 + 2, reasoning_tokens=2)
    assert got.finish.reason is FinishReason.STOP
    sent = fake.last_request
    assert sent is not None
    assert sent.path == "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
    assert sent.query == {"alt": "sse"}


async def test_assistant_turns_are_model_role(fake: FakeGemini, provider: GeminiProvider) -> None:
    from aurea.providers._base import ChatMessage, ProviderRequest, Role

    request = ProviderRequest(
        model="gemini-2.0-flash",
        messages=(
            ChatMessage(Role.USER, "hi"),
            ChatMessage(Role.ASSISTANT, "hello"),
            ChatMessage(Role.USER, "again"),
        ),
    )
    await provider.complete(request)
    roles = [c["role"] for c in fake.last_request_body["contents"]]
    assert roles == ["user", "model", "user"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("SAFETY", FinishReason.CONTENT_FILTER),
        ("RECITATION", FinishReason.CONTENT_FILTER),
        ("PROHIBITED_CONTENT", FinishReason.CONTENT_FILTER),
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("OTHER", FinishReason.ERROR),
    ],
)
async def test_finish_reasons(
    fake: FakeGemini, provider: GeminiProvider, override: str, expected: FinishReason
) -> None:
    fake.finish_override = override
    got = await collect(provider.stream(chat("hi")))
    assert (got.finish.reason, got.finish.raw_reason) == (expected, override)
    assert (await provider.complete(chat("hi"))).finish.reason is expected


async def test_max_output_tokens(provider: GeminiProvider) -> None:
    got = await collect(provider.stream(chat("a b c d", max_tokens=2)))
    assert got.text == "Echo: a"
    assert got.finish.reason is FinishReason.LENGTH


@pytest.mark.parametrize(
    ("kind", "error", "status"),
    [
        (FaultKind.RATE_LIMIT, ProviderRateLimited, 429),
        (FaultKind.SERVER_ERROR, ProviderServerError, 500),
        (FaultKind.OVERLOADED, ProviderOverloaded, 503),
        (FaultKind.CONTEXT_LENGTH, ContextLengthExceeded, 400),
        (FaultKind.UNAUTHORIZED, ProviderAuthError, 400),
        (FaultKind.CONTENT_FILTER, ContentFiltered, None),
    ],
)
@pytest.mark.parametrize("streaming", [True, False])
async def test_faults(
    fake: FakeGemini,
    provider: GeminiProvider,
    kind: FaultKind,
    error: type[ProviderError],
    status: int | None,
    streaming: bool,
) -> None:
    fake.inject(Fault(kind, retry_after="31"))
    with pytest.raises(error) as caught:
        if streaming:
            await collect(provider.stream(chat("hi")))
        else:
            await provider.complete(chat("hi"))
    assert type(caught.value) is error
    assert caught.value.status == status
    if kind is FaultKind.RATE_LIMIT:
        assert caught.value.retry_after_s == 31.0  # from google.rpc.RetryInfo.retryDelay
        assert "RESOURCE_EXHAUSTED" in caught.value.message
    if kind is FaultKind.UNAUTHORIZED:
        assert "API key not valid" in caught.value.message


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
    fake: FakeGemini, provider: GeminiProvider, kind: FaultKind, error: type[ProviderError]
) -> None:
    fake.inject(Fault(kind, after_tokens=2))
    seen: list[str] = []
    with pytest.raises(error) as caught:
        async for event in provider.stream(chat("one two three four")):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    assert type(caught.value) is error
    assert "".join(seen) == "Echo: one"


async def test_missing_key_env_and_missing_header(
    fake: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    adapter = GeminiProvider(make_spec("gemini", fake.base_url))
    try:
        with pytest.raises(ProviderAuthError, match=KEY_ENV):
            await adapter.complete(chat("hi"))
        assert fake.request_count == 0
        adapter._headers = lambda: {"Content-Type": "application/json"}  # type: ignore[method-assign]
        with pytest.raises(ProviderAuthError, match="PERMISSION_DENIED") as caught:
            await adapter.complete(chat("hi"))
        assert caught.value.status == 403
    finally:
        await adapter.aclose()


async def test_cancel_closes_the_upstream(fake: FakeGemini, provider: GeminiProvider) -> None:
    fake.reply = lambda prompt: " ".join(["tok"] * 300)
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


async def test_embeddings_single_and_batch(fake: FakeGemini, provider: GeminiProvider) -> None:
    one = await provider.embed(EmbedRequest(model="text-embedding-004", inputs=("hello",)))
    assert len(one.vectors) == 1
    assert fake.last_request is not None
    assert fake.last_request.path.endswith(":embedContent")
    assert one.usage is not None
    assert one.usage.estimated
    many = await provider.embed(EmbedRequest(model="text-embedding-004", inputs=("a", "b", "c")))
    assert fake.last_request.path.endswith(":batchEmbedContents")
    assert len(many.vectors) == 3
    assert all(len(v) == fake.embedding_dims for v in many.vectors)
    assert many.vectors[0] != many.vectors[1]


async def test_list_models_follows_pages(fake: FakeGemini, provider: GeminiProvider) -> None:
    assert await provider.list_models() == fake.model_ids
    assert fake.request_count == 2  # page size 2, three models
