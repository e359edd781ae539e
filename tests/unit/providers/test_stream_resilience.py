"""Issue 8 at the adapters: every HTTP limit honoured as configured (no hidden sums), per request,
each silence raising the error the retry table expects; malformed chunks skipped and counted;
end markers: a finish reason completes a stream that lost its marker, neither is broken."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from provider_helpers import chat, collect, make_spec
from structlog.testing import capture_logs

from aurea.errors import (
    ProviderConnectionError,
    ProviderSilent,
    ProviderStalled,
    StreamBroken,
    UpstreamRejected,
)
from aurea.providers._base import ChatMessage, FinishReason, ProviderRequest, Role, Timeouts
from aurea.providers._chunks import MAX_SKIPPED_CHUNKS
from aurea.providers.anthropic import AnthropicProvider
from aurea.providers.gemini import GeminiProvider
from aurea.providers.openai import OpenAIProvider
from aurea.testing.fakes import (
    FakeAnthropic,
    FakeGemini,
    FakeOpenAI,
    FakeServer,
    Fault,
    FaultKind,
    Scripted,
)

SHORT = 0.2  # the limit under test; the fakes stay silent far longer
LONG = 30.0  # the limits not under test: a test that waited for one of them would time out


@pytest.fixture
async def openai(api_key: str) -> AsyncIterator[tuple[FakeOpenAI, OpenAIProvider]]:
    async with FakeOpenAI(api_key=api_key) as fake:
        provider = OpenAIProvider(make_spec("openai", fake.base_url))
        yield fake, provider
        await provider.aclose()


def limits(**kw: float) -> Timeouts:
    values = {"connect_s": LONG, "first_byte_s": LONG, "idle_s": LONG, "total_s": LONG, **kw}
    return Timeouts(**values)


# -- limits, each as configured ---------------------------------------------------------------


async def test_first_byte_is_not_connect_plus_first_byte(api_key: str) -> None:
    """The wait for a silent stream's headers used to be connect_s + first_byte_s (30.2 s
    here): the first byte is due first_byte_s after the request's start, whatever connect_s."""
    async with FakeOpenAI(api_key=api_key) as fake:
        spec_limits = limits(first_byte_s=SHORT)
        provider = OpenAIProvider(make_spec("openai", fake.base_url, timeouts=spec_limits))
        fake.inject(Fault(FaultKind.SLOW_FIRST_BYTE, delay_s=LONG))
        try:
            with pytest.raises(ProviderSilent, match="first_byte_s"):
                await collect(provider.stream(chat("hi")))
        finally:
            await provider.aclose()


async def test_the_requests_own_limits_win_over_the_providers(
    openai: tuple[FakeOpenAI, OpenAIProvider],
) -> None:
    fake, provider = openai
    fake.inject(Fault(FaultKind.SLOW_FIRST_BYTE, delay_s=LONG))
    with pytest.raises(ProviderSilent, match="first_byte_s"):
        await collect(provider.stream(chat("hi", timeouts=limits(first_byte_s=SHORT))))


async def test_no_response_at_all_is_silent(openai: tuple[FakeOpenAI, OpenAIProvider]) -> None:
    fake, provider = openai
    fake.inject(FaultKind.SILENT)
    with pytest.raises(ProviderSilent):
        await collect(provider.stream(chat("hi", timeouts=limits(first_byte_s=SHORT))))
    assert (await collect(provider.stream(chat("hi")))).text == "Echo: hi"


async def test_a_gap_between_chunks_is_a_stall(openai: tuple[FakeOpenAI, OpenAIProvider]) -> None:
    fake, provider = openai
    fake.inject(Fault(FaultKind.STALL, after_tokens=1, delay_s=LONG))
    with pytest.raises(ProviderStalled, match="idle_s"):
        await collect(provider.stream(chat("one two", timeouts=limits(idle_s=SHORT))))


async def test_a_reset_connection_is_a_connection_error(
    openai: tuple[FakeOpenAI, OpenAIProvider],
) -> None:
    fake, provider = openai
    fake.inject(FaultKind.RESET)
    with pytest.raises(ProviderConnectionError):
        await collect(provider.stream(chat("hi")))
    assert (await collect(provider.stream(chat("hi")))).text == "Echo: hi"


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port on 127.0.0.1 whose listener never accepts and whose queue is full, so a new
    connection's SYN goes unanswered: a connect that times out, without leaving loopback."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    try:
        yield port
    finally:
        for s in (*fillers, server):
            s.close()


async def test_connect_is_bounded_by_connect_s_alone(unanswered_port: int) -> None:
    spec = make_spec(
        "openai", f"http://127.0.0.1:{unanswered_port}/v1", timeouts=limits(), key_env=""
    )
    provider = OpenAIProvider(spec)
    try:
        with pytest.raises(ProviderSilent, match="connect_s"):
            await collect(provider.stream(chat("hi", timeouts=limits(connect_s=SHORT))))
    finally:
        await provider.aclose()


# -- malformed chunks -------------------------------------------------------------------------

VENDORS: list[tuple[type[FakeServer], Any]] = [
    (FakeOpenAI, OpenAIProvider),
    (FakeAnthropic, AnthropicProvider),
    (FakeGemini, GeminiProvider),
]


@pytest.mark.parametrize(("fake_cls", "adapter_cls"), VENDORS, ids=lambda v: v.__name__)
async def test_one_malformed_chunk_is_skipped_and_counted(
    api_key: str, fake_cls: Any, adapter_cls: Any
) -> None:
    async with fake_cls(api_key=api_key) as fake:
        kind = adapter_cls.__name__.removesuffix("Provider").lower()
        provider = adapter_cls(make_spec(kind, fake.base_url))
        fake.inject(Fault(FaultKind.MALFORMED_CHUNK, after_tokens=2))
        try:
            with capture_logs() as logs:
                got = await collect(provider.stream(chat("one two three four")))
        finally:
            await provider.aclose()
    assert got.text == "Echo: one two three four" and got.finish.reason is FinishReason.STOP
    skipped = [e for e in logs if e["event"] == "upstream_chunk_skipped"]
    assert [e["skipped"] for e in skipped] == [1] and skipped[0]["provider"] == f"{kind}-test"


async def test_a_stream_of_malformed_chunks_is_broken(
    openai: tuple[FakeOpenAI, OpenAIProvider],
) -> None:
    fake, provider = openai
    garbage = ["{not json"] * (MAX_SKIPPED_CHUNKS + 1)
    fake.script(Scripted.sse(*garbage, done=b"data: [DONE]\n\n"))
    with capture_logs(), pytest.raises(StreamBroken, match="malformed chunks"):
        await collect(provider.stream(chat("hi")))


# -- end markers ------------------------------------------------------------------------------


async def test_openai_without_done_but_with_a_finish_reason_is_complete(
    openai: tuple[FakeOpenAI, OpenAIProvider],
) -> None:
    fake, provider = openai
    fake.omit_done = True
    got = await collect(provider.stream(chat("one two")))
    assert got.text == "Echo: one two" and got.finish.reason is FinishReason.STOP


async def test_anthropic_without_message_stop_but_with_a_stop_reason_is_complete(
    api_key: str,
) -> None:
    async with FakeAnthropic(api_key=api_key) as fake:
        provider = AnthropicProvider(make_spec("anthropic", fake.base_url))
        fake.omit_message_stop = True
        try:
            got = await collect(provider.stream(chat("one two")))
            fake.inject(Fault(FaultKind.EARLY_EOF, after_tokens=1))  # neither: broken
            with pytest.raises(StreamBroken, match="message_stop"):
                await collect(provider.stream(chat("one two")))
        finally:
            await provider.aclose()
    assert got.text == "Echo: one two" and got.finish.raw_reason == "end_turn"


async def test_anthropic_fake_continues_a_prefill_and_refuses_trailing_whitespace(
    api_key: str,
) -> None:
    async with FakeAnthropic(api_key=api_key) as fake:
        provider = AnthropicProvider(make_spec("anthropic", fake.base_url))
        user = ChatMessage(Role.USER, "one two three")
        try:
            prefill = (user, ChatMessage(Role.ASSISTANT, "Echo: one"))
            got = await collect(provider.stream(ProviderRequest(model="m", messages=prefill)))
            assert got.text == " two three"
            spaced = (user, ChatMessage(Role.ASSISTANT, "Echo: one "))
            with pytest.raises(UpstreamRejected, match="trailing whitespace"):
                await collect(provider.stream(ProviderRequest(model="m", messages=spaced)))
        finally:
            await provider.aclose()
