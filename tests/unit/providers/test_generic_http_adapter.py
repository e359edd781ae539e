"""The generic HTTP adapter: JSON pointers, templates, unary and SSE modes, error mapping."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from provider_helpers import KEY_ENV, chat, collect, make_spec, wait_for_abort
from structlog.testing import capture_logs

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
from aurea.providers._tokens import estimate_usage
from aurea.providers.http_generic import (
    MISSING,
    GenericHTTPProvider,
    render_template,
    resolve_pointer,
)
from aurea.testing.fakes import Fault, FaultKind
from aurea.testing.fakes.http_generic import FakeHTTPModel

RFC6901_DOC: dict[str, Any] = {
    "foo": ["bar", "baz"],
    "": 0,
    "a/b": 1,
    "c%d": 2,
    "e^f": 3,
    "g|h": 4,
    "i\\j": 5,
    'k"l': 6,
    " ": 7,
    "m~n": 8,
}


@pytest.mark.parametrize(
    ("pointer", "expected"),
    [
        ("", RFC6901_DOC),
        ("/foo", ["bar", "baz"]),
        ("/foo/0", "bar"),
        ("/", 0),
        ("/a~1b", 1),
        ("/c%d", 2),
        ("/e^f", 3),
        ("/g|h", 4),
        ("/i\\j", 5),
        ('/k"l', 6),
        ("/ ", 7),
        ("/m~0n", 8),
    ],
)
def test_json_pointer_rfc6901_examples(pointer: str, expected: Any) -> None:
    assert resolve_pointer(RFC6901_DOC, pointer) == expected


@pytest.mark.parametrize("pointer", ["/nope", "/foo/2", "/foo/01", "/foo/-", "/foo/0/x"])
def test_json_pointer_missing(pointer: str) -> None:
    assert resolve_pointer(RFC6901_DOC, pointer) is MISSING


def test_json_pointer_must_start_with_slash() -> None:
    with pytest.raises(ValueError, match="must be empty or start with"):
        resolve_pointer(RFC6901_DOC, "foo")


def test_render_template() -> None:
    values = {
        "model": "m1",
        "max_tokens": 5,
        "temperature": None,
        "messages": [{"role": "user", "content": "hi"}],
        "prompt": "hi",
    }
    template = {
        "model": "{model}",
        "n": "{max_tokens}",
        "t": "{temperature}",
        "msgs": "{messages}",
        "text": "model {model} says {prompt} ({temperature})",
        "keep": "{not_a_placeholder} {",
        "nested": [{"x": "{max_tokens}"}, 3, None],
    }
    assert render_template(template, values) == {
        "model": "m1",
        "n": 5,
        "msgs": [{"role": "user", "content": "hi"}],
        "text": "model m1 says hi ()",
        "keep": "{not_a_placeholder} {",
        "nested": [{"x": 5}, 3, None],
    }


@pytest.fixture
async def fake(api_key: str) -> AsyncIterator[FakeHTTPModel]:
    async with FakeHTTPModel(api_key=api_key) as server:
        yield server


def options(fake: FakeHTTPModel, **extra: Any) -> dict[str, Any]:
    return {
        "url": f"{fake.origin}/generate",
        "headers": {"X-Api-Key": "{api_key}"},
        "body_template": {
            "model": "{model}",
            "messages": "{messages}",
            "max_tokens": "{max_tokens}",
            "meta": {"note": "for {model}"},
        },
        "text_pointer": "/output/text",
        "input_tokens_pointer": "/usage/prompt_tokens",
        "output_tokens_pointer": "/usage/completion_tokens",
        "finish_reason_pointer": "/finish",
        "error_pointer": "/error/message",
        **extra,
    }


@pytest.fixture
async def provider(fake: FakeHTTPModel) -> AsyncIterator[GenericHTTPProvider]:
    adapter = GenericHTTPProvider(make_spec("http", "", **options(fake)))
    yield adapter
    await adapter.aclose()


@pytest.fixture
async def streaming(fake: FakeHTTPModel) -> AsyncIterator[GenericHTTPProvider]:
    extra = {"stream_url": f"{fake.origin}/generate/stream", "stream_text_pointer": "/delta/text"}
    adapter = GenericHTTPProvider(make_spec("http", "", **options(fake, **extra)))
    yield adapter
    await adapter.aclose()


async def test_unary_with_pointers(fake: FakeHTTPModel, provider: GenericHTTPProvider) -> None:
    assert isinstance(provider, Provider)
    completion = await provider.complete(chat("tell me more"))
    assert completion.text == "Echo: tell me more"
    assert completion.usage == Usage(input_tokens=3, output_tokens=4)
    assert completion.finish.reason is FinishReason.STOP
    assert fake.last_request_body == {
        "model": "test-model",
        "messages": [{"role": "user", "content": "tell me more"}],
        "meta": {"note": "for test-model"},
    }  # max_tokens was None, so the member is dropped


async def test_stream_without_sse_yields_one_delta(provider: GenericHTTPProvider) -> None:
    got = await collect(provider.stream(chat("a b", max_tokens=2)))
    assert [e for e in got.events if isinstance(e, TextDelta)] == [TextDelta("Echo: a")]
    assert got.finish.reason is FinishReason.LENGTH
    assert got.usage == Usage(input_tokens=2, output_tokens=2)


async def test_sse_stream(fake: FakeHTTPModel, streaming: GenericHTTPProvider) -> None:
    got = await collect(streaming.stream(chat("x y z")))
    assert got.text == "Echo: x y z"
    assert len([e for e in got.events if isinstance(e, TextDelta)]) == 4
    assert got.usage == Usage(input_tokens=3, output_tokens=4)
    assert fake.last_request is not None
    assert fake.last_request.path == "/generate/stream"


async def test_missing_usage_pointers_are_estimated(fake: FakeHTTPModel) -> None:
    opts = options(fake)
    del opts["input_tokens_pointer"], opts["output_tokens_pointer"]
    adapter = GenericHTTPProvider(make_spec("http", "", **opts))
    try:
        request = chat("count me")
        completion = await adapter.complete(request)
    finally:
        await adapter.aclose()
    assert completion.usage == estimate_usage(request.messages, completion.text, "test-model")


async def test_prompt_and_system_placeholders(fake: FakeHTTPModel) -> None:
    opts = options(fake, body_template={"prompt": "[{system}] {prompt}", "n": "{max_tokens}"})
    adapter = GenericHTTPProvider(make_spec("http", "", **opts))
    try:
        completion = await adapter.complete(chat("q", system="sys", max_tokens=9))
    finally:
        await adapter.aclose()
    assert fake.last_request_body == {"prompt": "[sys] q", "n": 9}
    assert completion.text == "Echo: [sys] q"


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (FaultKind.RATE_LIMIT, ProviderRateLimited),
        (FaultKind.SERVER_ERROR, ProviderServerError),
        (FaultKind.OVERLOADED, ProviderOverloaded),
        (FaultKind.CONTEXT_LENGTH, ContextLengthExceeded),
        (FaultKind.CONTENT_FILTER, ContentFiltered),
        (FaultKind.UNAUTHORIZED, ProviderAuthError),
    ],
)
async def test_http_faults(
    fake: FakeHTTPModel,
    streaming: GenericHTTPProvider,
    kind: FaultKind,
    error: type[ProviderError],
) -> None:
    fake.inject(Fault(kind, retry_after="4"))
    with pytest.raises(error) as caught:
        await collect(streaming.stream(chat("hi")))
    assert type(caught.value) is error
    if kind is FaultKind.RATE_LIMIT:
        assert caught.value.retry_after_s == 4.0
        assert "too many requests" in caught.value.message


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (FaultKind.CUT_STREAM, StreamBroken),
        (FaultKind.STREAM_ERROR, ProviderServerError),
    ],
)
async def test_stream_faults(
    fake: FakeHTTPModel,
    streaming: GenericHTTPProvider,
    kind: FaultKind,
    error: type[ProviderError],
) -> None:
    fake.inject(Fault(kind, after_tokens=1))
    with pytest.raises(error) as caught:
        await collect(streaming.stream(chat("one two three")))
    assert type(caught.value) is error


async def test_a_malformed_chunk_is_skipped_and_counted(
    fake: FakeHTTPModel, streaming: GenericHTTPProvider
) -> None:
    fake.inject(Fault(FaultKind.MALFORMED_CHUNK, after_tokens=1))
    with capture_logs() as logs:
        got = await collect(streaming.stream(chat("one two three")))
    assert got.text == "Echo: one two three" and got.finish.reason is FinishReason.STOP
    assert [e["skipped"] for e in logs if e["event"] == "upstream_chunk_skipped"] == [1]


async def test_early_eof_needs_stream_require_done(fake: FakeHTTPModel) -> None:
    extra = {
        "stream_url": f"{fake.origin}/generate/stream",
        "stream_text_pointer": "/delta/text",
        "stream_require_done": True,
    }
    adapter = GenericHTTPProvider(make_spec("http", "", **options(fake, **extra)))
    fake.inject(Fault(FaultKind.EARLY_EOF, after_tokens=1))
    try:
        with pytest.raises(StreamBroken, match=r"\[DONE\]"):
            await collect(adapter.stream(chat("one two")))
    finally:
        await adapter.aclose()


async def test_lenient_stream_accepts_a_clean_end(
    fake: FakeHTTPModel, streaming: GenericHTTPProvider
) -> None:
    fake.inject(Fault(FaultKind.EARLY_EOF, after_tokens=2))
    got = await collect(streaming.stream(chat("one two three")))
    assert got.text == "Echo: one"
    assert got.usage.estimated


async def test_error_messages_never_echo_the_key(
    fake: FakeHTTPModel, provider: GenericHTTPProvider, api_key: str
) -> None:
    fake.echo_auth_in_errors = True
    fake.inject(FaultKind.SERVER_ERROR)
    with pytest.raises(ProviderServerError) as caught:
        await provider.complete(chat("hi"))
    assert api_key not in str(caught.value)
    assert api_key not in repr(caught.value)
    assert "(key ***)" in caught.value.message


async def test_missing_key_env(fake: FakeHTTPModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    adapter = GenericHTTPProvider(make_spec("http", "", **options(fake)))
    try:
        with pytest.raises(ProviderAuthError, match=KEY_ENV):
            await adapter.complete(chat("hi"))
    finally:
        await adapter.aclose()
    assert fake.request_count == 0


async def test_cancel_closes_the_upstream(
    fake: FakeHTTPModel, streaming: GenericHTTPProvider
) -> None:
    fake.reply = lambda prompt: " ".join(["w"] * 300)
    fake.token_delay_s = 0.02
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in streaming.stream(chat("go")):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await wait_for_abort(fake)


async def test_config_errors_and_no_embeddings(fake: FakeHTTPModel) -> None:
    with pytest.raises(ValueError, match=r"needs options\.url"):
        GenericHTTPProvider(make_spec("http", ""))
    with pytest.raises(ValueError, match="JSON pointer"):
        GenericHTTPProvider(make_spec("http", fake.origin, text_pointer="text"))
    adapter = GenericHTTPProvider(make_spec("http", fake.origin, models=["a", "b"]))
    try:
        assert await adapter.list_models() == ["a", "b"]
        with pytest.raises(UpstreamRejected, match="no embeddings endpoint"):
            await adapter.embed(EmbedRequest(model="m", inputs=("x",)))
    finally:
        await adapter.aclose()
