"""What a hostile or broken upstream sends, through every adapter and its fake: absurd usage
counts, absurd Retry-After hints, text that is not text, oversized bodies and events, and a
password in the configured URL. Each ends in validated values or a ProviderError."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from provider_helpers import chat, closed_port, collect, make_spec
from structlog.testing import capture_logs
from vendor_shapes import AWS_ENV, DONE, VENDOR_IDS, VENDORS, Vendor, check_completion, check_events

from aurea.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    StreamBroken,
)
from aurea.providers._base import Provider, Usage
from aurea.providers._http import MAX_ERROR_BODY_BYTES, MAX_EVENT_BYTES
from aurea.providers._retry import MAX_RETRY_AFTER_S
from aurea.providers._values import MAX_TOKEN_COUNT
from aurea.providers.http_generic import GenericHTTPProvider
from aurea.providers.openai import OpenAIProvider
from aurea.testing.fakes import FakeHTTPModel, FakeOpenAI, FakeServer, Fault, FaultKind, Scripted

MiB = 1024 * 1024


@pytest.fixture
def env(api_key: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return api_key


async def with_vendor(
    vendor: Vendor, body: Callable[[FakeServer, Provider], Awaitable[None]]
) -> None:
    async with vendor.fake() as fake:
        provider = vendor.make(fake)
        try:
            await body(fake, provider)
        finally:
            await provider.aclose()


# -- usage counts -------------------------------------------------------------------------------

# (input, output, cached) as the upstream reports them; what must come out.
USAGE_CASES = [
    pytest.param((1e30, 2, 0), {"input": MAX_TOKEN_COUNT, "estimated": False}, id="input-1e30"),
    pytest.param((10**30, 2, 0), {"input": MAX_TOKEN_COUNT, "estimated": False}, id="input-10e30"),
    pytest.param((3, 1e30, 0), {"output": MAX_TOKEN_COUNT, "estimated": False}, id="output-1e30"),
    pytest.param((-5, 2, 0), {"estimated": True}, id="input-negative"),
    pytest.param((3, -2, 0), {"estimated": True}, id="output-negative"),
    pytest.param((True, 2, 0), {"estimated": True}, id="input-bool"),
    pytest.param(("12", 2, 0), {"estimated": True}, id="input-string"),
    pytest.param((float("nan"), 2, 0), {"estimated": True}, id="input-nan"),
    pytest.param(([3], {"n": 2}, 0), {"estimated": True}, id="containers"),
    pytest.param((3, 2, 1e30), {"estimated": False}, id="cached-1e30"),
    pytest.param((3, 2, -4), {"estimated": False}, id="cached-negative"),
]


@pytest.mark.parametrize("vendor", VENDORS, ids=VENDOR_IDS)
@pytest.mark.parametrize(("counts", "expected"), USAGE_CASES)
@pytest.mark.parametrize("call", ["complete", "stream"])
async def test_usage_counts_are_validated_and_clamped(
    env: str, vendor: Vendor, counts: tuple[Any, Any, Any], expected: dict[str, Any], call: str
) -> None:
    async def body(fake: FakeServer, provider: Provider) -> None:
        usage_object = vendor.usage(*counts)
        usage: Usage
        if call == "complete":
            fake.script(*vendor.unary(vendor.unary_doc(usage_object)))
            completion = await provider.complete(chat("one two three"))
            check_completion(completion)
            assert completion.usage is not None
            usage = completion.usage
        else:
            fake.script(*vendor.stream(vendor.stream_docs(usage_object)))
            usage = check_events((await collect(provider.stream(chat("one two three")))).events)
        assert usage.estimated is expected["estimated"], usage
        if "input" in expected:
            assert usage.input_tokens == expected["input"]
        if "output" in expected:
            assert usage.output_tokens == expected["output"]
        if expected["estimated"]:
            assert usage.input_tokens > 0 and usage.output_tokens > 0  # counted by Aurea

    await with_vendor(vendor, body)


def test_the_count_cap_keeps_costs_within_int64() -> None:
    # Three counts at the cap, each at $10^6 per million tokens (10^15 nano-dollars).
    assert 3 * MAX_TOKEN_COUNT * 10**15 // 10**6 < 2**63


# -- Retry-After ---------------------------------------------------------------------------------

FAR_FUTURE = "Fri, 31 Dec 9999 23:59:59 GMT"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "inf"}, MAX_RETRY_AFTER_S),
        ({"retry-after": "-inf"}, 0.0),
        ({"retry-after": "1e19"}, MAX_RETRY_AFTER_S),
        ({"retry-after": "9" * 400}, MAX_RETRY_AFTER_S),
        ({"retry-after": "-30"}, 0.0),
        ({"retry-after": "nan"}, None),
        ({"retry-after": FAR_FUTURE}, MAX_RETRY_AFTER_S),
        ({"retry-after": "Fri, 31 Dec 99999 23:59:59 GMT"}, None),
        ({"retry-after": "x" * 10_000}, None),
        ({"retry-after-ms": "inf"}, MAX_RETRY_AFTER_S),
        ({"retry-after-ms": "1e30"}, MAX_RETRY_AFTER_S),
        ({"retry-after-ms": "-5"}, 0.0),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "2500"}, 2.5),
        ({"x-ratelimit-reset-requests": "99999999999h"}, MAX_RETRY_AFTER_S),
        ({"x-ratelimit-reset-tokens": "1" * 400 + "s"}, MAX_RETRY_AFTER_S),
        ({"x-ratelimit-reset-tokens": "1.5s"}, 1.5),
    ],
)
def test_retry_after_is_finite_and_capped(headers: dict[str, str], expected: float | None) -> None:
    from aurea.providers._retry import retry_after_from_headers

    assert retry_after_from_headers(headers) == expected


def test_anthropic_reset_times_are_capped() -> None:
    from aurea.providers._retry import parse_reset_time

    assert parse_reset_time("9999-12-31T23:59:59Z") == MAX_RETRY_AFTER_S
    assert parse_reset_time("2000-01-01T00:00:00Z") == 0.0
    assert parse_reset_time("not a time") is None
    assert parse_reset_time("9" * 1000) is None
    assert parse_reset_time("2000-01-01T00:00:00") == 0.0  # no zone: read as UTC


RATE_LIMITS = {
    "openai": (429, {"error": {"message": "slow down", "type": "requests"}}),
    "anthropic": (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "x"}}),
    "gemini": (
        429,
        {
            "error": {
                "code": 429,
                "status": "RESOURCE_EXHAUSTED",
                "message": "quota",
                "details": [
                    {"@type": "google.rpc.RetryInfo", "retryDelay": "9e9s"},  # not a duration
                    {"@type": "google.rpc.RetryInfo", "retryDelay": "99999999s"},
                ],
            }
        },
    ),
    "http": (429, {"error": {"message": "slow down"}}),
}


@pytest.mark.parametrize(
    "vendor", [v for v in VENDORS if v.kind in RATE_LIMITS], ids=lambda v: v.kind
)
@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "inf"},
        {"Retry-After": "1e19"},
        {"Retry-After": FAR_FUTURE},
        {"retry-after-ms": "1e300"},
        {"x-ratelimit-reset-requests": "100000000h"},
        {"anthropic-ratelimit-requests-reset": "9999-12-31T23:59:59Z"},
        {},
    ],
    ids=["inf", "1e19", "date", "ms", "reset", "anthropic-reset", "none"],
)
async def test_upstream_retry_hints_reach_callers_capped(
    env: str, vendor: Vendor, headers: dict[str, str]
) -> None:
    status, payload = RATE_LIMITS[vendor.kind]
    anthropic_only = "anthropic-ratelimit-requests-reset" in headers
    hinted = bool(headers) and (not anthropic_only or vendor.kind == "anthropic")
    # Gemini's body carries its own (absurd) RetryInfo delays.
    expected = MAX_RETRY_AFTER_S if hinted or vendor.kind == "gemini" else None

    async def body(fake: FakeServer, provider: Provider) -> None:
        for call in ("complete", "stream"):
            fake.script(Scripted.json(payload, status=status, **headers))
            with pytest.raises(ProviderRateLimited) as caught:
                if call == "complete":
                    await provider.complete(chat("hi"))
                else:
                    await collect(provider.stream(chat("hi")))
            assert caught.value.retry_after_s == expected

    await with_vendor(vendor, body)


# -- text that is not text -----------------------------------------------------------------------


def openai_chunk(content: Any, index: Any = 0) -> dict[str, Any]:
    return {"choices": [{"index": index, "delta": {"content": content}, "finish_reason": None}]}


OPENAI_END = [{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]


@pytest.fixture
async def openai(api_key: str) -> AsyncIterator[tuple[FakeOpenAI, OpenAIProvider]]:
    async with FakeOpenAI(api_key=api_key) as fake:
        provider = OpenAIProvider(make_spec("openai", fake.base_url))
        try:
            yield fake, provider
        finally:
            await provider.aclose()


@pytest.mark.parametrize(
    "content",
    [5, 1.5, True, {"text": "hi"}, [1], ["a", 2], [{"type": "image_url", "image_url": {}}]],
    ids=["int", "float", "bool", "object", "list-of-number", "mixed-list", "image-part"],
)
async def test_openai_non_text_content_is_a_malformed_chunk(
    openai: tuple[FakeOpenAI, OpenAIProvider], content: Any
) -> None:
    fake, provider = openai
    fake.script(
        Scripted.sse(
            openai_chunk("ok "), openai_chunk(content), openai_chunk("then"), *OPENAI_END, done=DONE
        )
    )
    # In a stream the bad chunk is skipped and counted; the rest of the answer arrives.
    with capture_logs() as logs:
        got = await collect(provider.stream(chat("hi")))
    assert got.text == "ok then"
    (skipped,) = [e for e in logs if e["event"] == "upstream_chunk_skipped"]
    assert "delta.content" in skipped["error"] and skipped["skipped"] == 1
    reply = {"choices": [{"index": 0, "message": {"content": content}, "finish_reason": "stop"}]}
    fake.script(Scripted.json(reply))
    with pytest.raises(ProviderServerError, match=r"malformed upstream reply: .*message\.content"):
        await provider.complete(chat("hi"))


async def test_openai_content_as_text_parts_is_joined(
    openai: tuple[FakeOpenAI, OpenAIProvider],
) -> None:
    fake, provider = openai
    parts = ["a", {"type": "text", "text": "b"}, {"text": "c"}]
    fake.script(Scripted.sse(openai_chunk(parts), openai_chunk(None), *OPENAI_END, done=DONE))
    assert (await collect(provider.stream(chat("hi")))).text == "abc"
    reply = {"choices": [{"index": 0, "message": {"content": parts}, "finish_reason": "stop"}]}
    fake.script(Scripted.json(reply))
    assert (await provider.complete(chat("hi"))).text == "abc"


async def test_openai_index_sent_as_a_string(openai: tuple[FakeOpenAI, OpenAIProvider]) -> None:
    fake, provider = openai
    chunks = [openai_chunk("one ", "0"), openai_chunk("other", 1), openai_chunk("two", "0")]
    fake.script(Scripted.sse(*chunks, *OPENAI_END, done=DONE))
    got = await collect(provider.stream(chat("hi")))
    assert got.text == "one two"  # "0" is choice 0; choice 1 (never asked for) is not mixed in
    for index in ("x", -0.5, [0], True):
        fake.script(
            Scripted.sse(openai_chunk("a", index), openai_chunk("b"), *OPENAI_END, done=DONE)
        )
        with capture_logs() as logs:
            got = await collect(provider.stream(chat("hi")))
        assert got.text == "b"  # the chunk with the bad index was skipped
        assert any("index is" in e.get("error", "") for e in logs)


NON_TEXT_REPLIES = {
    "anthropic": (
        {"type": "message", "content": [{"type": "text", "text": 5}], "stop_reason": "end_turn"},
        [
            {"type": "message_start", "message": {"usage": {}}},
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": {"a": 1}}},
            {"type": "message_stop"},
        ],
    ),
    "gemini": (
        {"candidates": [{"content": {"parts": [{"text": [1]}]}, "finishReason": "STOP"}]},
        [{"candidates": [{"content": {"parts": [{"text": 7}]}, "finishReason": "STOP"}]}],
    ),
    "http": (
        {"output": {"text": {"nested": "x"}}, "finish": "stop"},
        [{"delta": {"text": 12}}, {"finish": "stop"}],
    ),
}


@pytest.mark.parametrize(
    "vendor", [v for v in VENDORS if v.kind in NON_TEXT_REPLIES], ids=lambda v: v.kind
)
async def test_non_text_where_text_is_expected(env: str, vendor: Vendor) -> None:
    unary, stream = NON_TEXT_REPLIES[vendor.kind]

    async def body(fake: FakeServer, provider: Provider) -> None:
        fake.script(*vendor.unary(unary))
        with pytest.raises(ProviderServerError, match=r"malformed upstream reply: .*not text"):
            await provider.complete(chat("hi"))
        fake.script(*vendor.stream(stream))
        # In a stream the chunk is skipped and counted, not fatal: the stream completes when a
        # finish still arrives (Gemini's was in the skipped chunk: broken).
        with capture_logs() as logs:
            if vendor.kind == "gemini":
                with pytest.raises(StreamBroken, match="before any finishReason"):
                    await collect(provider.stream(chat("hi")))
            else:
                assert (await collect(provider.stream(chat("hi")))).text == ""
        skipped = [e for e in logs if e["event"] == "upstream_chunk_skipped"]
        assert len(skipped) == 1 and "not text" in skipped[0]["error"]

    await with_vendor(vendor, body)


# -- oversized bodies ----------------------------------------------------------------------------


async def test_a_huge_error_body_is_read_only_up_to_its_cap(
    openai: tuple[FakeOpenAI, OpenAIProvider],
) -> None:
    fake, provider = openai
    total = 64 * MiB
    for call in ("complete", "stream"):
        huge = Scripted(
            status=500, body=b'{"error": {"message": "', filler=b"x", filler_bytes=total
        )
        fake.script(huge)
        with pytest.raises(ProviderServerError, match="HTTP 500") as caught:
            if call == "complete":
                await provider.complete(chat("hi"))
            else:
                await collect(provider.stream(chat("hi")))
        assert len(caught.value.message) < 4096  # the upstream's words are cut short
        # The client stopped reading and hung up: the fake could not send the rest (what it did
        # send is our 64 KiB plus what the sockets' buffers held).
        assert not huge.finished
        assert huge.bytes_sent < total // 2
    assert MAX_ERROR_BODY_BYTES == 64 * 1024


@pytest.mark.parametrize(
    ("frame", "filler"),
    [(b"data: ", b"x"), (b"", b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n")],
    ids=["one-endless-line", "endless-data-lines"],
)
async def test_an_oversized_sse_event_breaks_the_stream(
    openai: tuple[FakeOpenAI, OpenAIProvider], frame: bytes, filler: bytes
) -> None:
    fake, provider = openai
    total = 64 * MiB
    huge = Scripted(frames=(b'data: {"choices": []}\n\n', frame), filler=filler, filler_bytes=total)
    fake.script(huge)
    expected = f"upstream sent an SSE event over {MAX_EVENT_BYTES} bytes"
    with pytest.raises(StreamBroken, match=expected):
        await collect(provider.stream(chat("hi")))
    assert not huge.finished
    assert huge.bytes_sent < total // 2


async def test_an_oversized_json_reply_fails_the_call(
    openai: tuple[FakeOpenAI, OpenAIProvider],
) -> None:
    fake, provider = openai
    provider._http.max_body_bytes = 1 * MiB  # the default (64 MiB) works the same way
    total = 32 * MiB
    huge = Scripted(body=b'{"choices": "', filler=b"x", filler_bytes=total, tail=b'"}')
    fake.script(huge)
    with pytest.raises(ProviderServerError, match=f"reply body is over {MiB} bytes"):
        await provider.complete(chat("hi"))
    assert not huge.finished
    assert huge.bytes_sent < total // 2
    declared = Scripted(body=b"{}", headers={"Content-Length": str(100 * MiB)})
    fake.script(declared)
    with pytest.raises(ProviderServerError, match=f"reply body is over {MiB} bytes"):
        await provider.complete(chat("hi"))


# -- secrets in the configured URL ---------------------------------------------------------------

PASSWORD = "pa55-w0rd-CANARY"
QUERY_SECRET = "qs-CANARY-1234"


def leaked(error: BaseException, *secrets: str) -> list[str]:
    found = []
    seen: BaseException | None = error
    while seen is not None:
        for text in (str(seen), repr(seen), repr(seen.args), str(getattr(seen, "message", ""))):
            found += [s for s in secrets if s in text]
        seen = seen.__cause__ or seen.__context__
    return found


async def test_a_password_in_base_url_never_reaches_an_error(api_key: str) -> None:
    url = f"http://admin:{PASSWORD}@127.0.0.1:{closed_port()}/v1?api_key={QUERY_SECRET}"
    provider = OpenAIProvider(make_spec("openai", url))
    try:
        for call in ("complete", "stream", "models"):
            with pytest.raises(ProviderConnectionError) as caught:
                if call == "complete":
                    await provider.complete(chat("hi"))
                elif call == "stream":
                    await collect(provider.stream(chat("hi")))
                else:
                    await provider.list_models()
            assert leaked(caught.value, PASSWORD, QUERY_SECRET) == []
            assert "127.0.0.1" in caught.value.message  # still says where it tried
    finally:
        await provider.aclose()


async def test_url_secrets_echoed_by_an_upstream_are_scrubbed(api_key: str) -> None:
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    async with FakeHTTPModel(api_key=api_key) as fake:
        fake.echo_auth_in_errors = True
        fake.echo_request_in_errors = True  # echoes the Authorization header and the full URL
        host = fake.origin.removeprefix("http://")
        base = f"http://admin:{PASSWORD}@{host}"
        provider = GenericHTTPProvider(
            make_spec(
                "http",
                "",
                url=f"{base}/generate?key={QUERY_SECRET}",
                stream_url=f"{base}/generate/stream?key={QUERY_SECRET}",
                headers={"X-Api-Key": "{api_key}"},
                text_pointer="/output/text",
                stream_text_pointer="/delta/text",
                error_pointer="/error/message",
            )
        )
        try:
            for kind in (FaultKind.SERVER_ERROR, FaultKind.RATE_LIMIT, FaultKind.UNAUTHORIZED):
                for call in ("complete", "stream"):
                    fake.inject(Fault(kind))
                    with pytest.raises(ProviderError) as caught:
                        if call == "complete":
                            await provider.complete(chat("hi"))
                        else:
                            await collect(provider.stream(chat("hi")))
                    assert "authorization Basic ***" in caught.value.message  # it was echoed
                    assert leaked(caught.value, PASSWORD, QUERY_SECRET, basic, api_key) == []
        finally:
            await provider.aclose()
    sent = fake.last_request
    assert sent is not None and sent.headers["Authorization"] == f"Basic {basic}"  # still used
