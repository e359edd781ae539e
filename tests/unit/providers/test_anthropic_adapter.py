"""The Anthropic adapter against the fake Anthropic Messages API."""

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
    UpstreamRejected,
)
from aurea.providers._base import EmbedRequest, FinishReason, Provider, TextDelta, Usage
from aurea.providers._values import reported_usage
from aurea.providers.anthropic import AnthropicProvider, error_from_body, usage_counts
from aurea.testing.fakes import Fault, FaultKind
from aurea.testing.fakes.anthropic import FakeAnthropic


@pytest.fixture
async def fake(api_key: str) -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(api_key=api_key) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeAnthropic) -> AsyncIterator[AnthropicProvider]:
    adapter = AnthropicProvider(make_spec("anthropic", fake.base_url))
    yield adapter
    await adapter.aclose()


async def test_is_a_provider(provider: AnthropicProvider) -> None:
    assert isinstance(provider, Provider)


async def test_unary_wire_shape_and_usage(
    fake: FakeAnthropic, provider: AnthropicProvider, api_key: str
) -> None:
    fake.cached_input_tokens = 2
    fake.cache_creation_input_tokens = 1
    completion = await provider.complete(
        chat("alpha beta gamma", system="be terse", temperature=0.2, stop=("END",))
    )
    assert completion.text == "Echo: alpha beta gamma"
    assert completion.finish.reason is FinishReason.STOP
    assert completion.finish.raw_reason == "end_turn"
    # prompt = 5 words: Anthropic reports input 2 + cache_read 2 + cache_creation 1.
    assert completion.usage == Usage(input_tokens=5, cached_input_tokens=2, output_tokens=4)
    sent = fake.last_request
    assert sent is not None
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == api_key
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body == {
        "model": "test-model",
        "max_tokens": 1024,
        "system": "be terse",
        "messages": [{"role": "user", "content": "alpha beta gamma"}],
        "temperature": 0.2,
        "stop_sequences": ["END"],
    }


async def test_stream_text_usage_and_finish(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.cached_input_tokens = 3
    got = await collect(provider.stream(chat("one two three four", max_tokens=64)))
    assert got.text == "Echo: one two three four"
    assert got.usage == Usage(input_tokens=4, cached_input_tokens=3, output_tokens=5)
    assert not got.usage.estimated
    assert got.finish.reason is FinishReason.STOP
    assert fake.last_request_body["stream"] is True
    assert fake.last_request_body["max_tokens"] == 64


async def test_usage_normalization_adds_cache_reads_and_writes() -> None:
    raw = {
        "input_tokens": 10,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
        "output_tokens": 7,
    }
    usage = await reported_usage(usage_counts(raw), messages=(), output_text="", model="m")
    assert usage == Usage(input_tokens=130, cached_input_tokens=100, output_tokens=7)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("stop_sequence", FinishReason.STOP),
        ("tool_use", FinishReason.TOOL_CALLS),
        ("refusal", FinishReason.CONTENT_FILTER),
        ("max_tokens", FinishReason.LENGTH),
    ],
)
async def test_finish_reasons(
    fake: FakeAnthropic, provider: AnthropicProvider, override: str, expected: FinishReason
) -> None:
    fake.finish_override = override
    got = await collect(provider.stream(chat("hi")))
    assert (got.finish.reason, got.finish.raw_reason) == (expected, override)
    assert (await provider.complete(chat("hi"))).finish.reason is expected


async def test_max_tokens_is_length(provider: AnthropicProvider) -> None:
    got = await collect(provider.stream(chat("a b c d", max_tokens=2)))
    assert got.text == "Echo: a"
    assert got.finish.reason is FinishReason.LENGTH


async def test_refusal_is_a_content_filter_finish(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.inject(Fault(FaultKind.CONTENT_FILTER, after_tokens=1))
    got = await collect(provider.stream(chat("something bad")))
    assert got.text == "Echo:"
    assert got.finish.reason is FinishReason.CONTENT_FILTER


@pytest.mark.parametrize(
    ("kind", "error", "status"),
    [
        (FaultKind.RATE_LIMIT, ProviderRateLimited, 429),
        (FaultKind.SERVER_ERROR, ProviderServerError, 500),
        (FaultKind.OVERLOADED, ProviderOverloaded, 529),
        (FaultKind.CONTEXT_LENGTH, ContextLengthExceeded, 400),
        (FaultKind.UNAUTHORIZED, ProviderAuthError, 401),
    ],
)
@pytest.mark.parametrize("streaming", [True, False])
async def test_http_faults(
    fake: FakeAnthropic,
    provider: AnthropicProvider,
    kind: FaultKind,
    error: type[ProviderError],
    status: int,
    streaming: bool,
) -> None:
    fake.inject(Fault(kind, retry_after="12"))
    with pytest.raises(error) as caught:
        if streaming:
            await collect(provider.stream(chat("hi")))
        else:
            await provider.complete(chat("hi"))
    assert type(caught.value) is error
    assert caught.value.status == status
    if kind is FaultKind.RATE_LIMIT:
        assert caught.value.retry_after_s == 12.0
        assert "rate_limit_error" in caught.value.message
    if kind is FaultKind.OVERLOADED:
        assert "overloaded_error" in caught.value.message


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (FaultKind.CUT_STREAM, StreamBroken),
        (FaultKind.MALFORMED, StreamBroken),
        (FaultKind.EARLY_EOF, StreamBroken),
        (FaultKind.STREAM_ERROR, ProviderOverloaded),
    ],
)
async def test_stream_faults(
    fake: FakeAnthropic, provider: AnthropicProvider, kind: FaultKind, error: type[ProviderError]
) -> None:
    fake.inject(Fault(kind, after_tokens=2))
    seen: list[str] = []
    with pytest.raises(error) as caught:
        async for event in provider.stream(chat("one two three four")):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    assert type(caught.value) is error
    assert "".join(seen) == "Echo: one"


def test_content_policy_400_is_content_filtered() -> None:
    body = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Output blocked by content filtering policy",
        },
    }
    assert isinstance(error_from_body("a", 400, body), ContentFiltered)
    in_stream = error_from_body("a", None, {"type": "error", "error": {"type": "api_error"}})
    assert type(in_stream) is ProviderServerError
    assert in_stream.status is None


async def test_missing_version_header_is_rejected_by_the_fake(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    provider._options = {"anthropic_version": ""}
    with pytest.raises(UpstreamRejected, match="anthropic-version"):
        await provider.complete(chat("hi"))


async def test_aclose_and_cancel_close_the_upstream(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.reply = lambda prompt: " ".join(["tok"] * 300)
    fake.token_delay_s = 0.02
    stream = provider.stream(chat("go"))
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    await wait_for_abort(fake)

    fake.stream_aborted.clear()
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
    assert fake.aborted_streams == 2


async def test_missing_key_env(fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    adapter = AnthropicProvider(make_spec("anthropic", fake.base_url))
    try:
        with pytest.raises(ProviderAuthError, match=KEY_ENV):
            await collect(adapter.stream(chat("hi")))
    finally:
        await adapter.aclose()
    assert fake.request_count == 0


async def test_no_embeddings_and_list_models(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    with pytest.raises(UpstreamRejected, match="no embeddings API"):
        await provider.embed(EmbedRequest(model="x", inputs=("a",)))
    assert await provider.list_models() == fake.model_ids
