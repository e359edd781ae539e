"""The adapter boundary: unknown options fail at build time, and nothing but an AureaError
leaves an adapter call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aurea.errors import (
    FailedPrecondition,
    ProviderServerError,
    ProviderTimeout,
    StreamBroken,
)
from aurea.providers._base import ProviderSpec, TextDelta
from aurea.providers._boundary import MalformedReply, adapter_boundary
from aurea.providers.registry import KINDS, build_provider

REQUIRED: dict[str, dict[str, Any]] = {
    "http": {"url": "http://127.0.0.1:1/x"},
    "lambda": {"function": "f"},
    "runpod": {"endpoint_id": "e"},
}
# A plausible typo of a real option, per kind.
TYPOS = {
    "simulated": "token_delay",
    "local": "model_pth",
    "openai": "max_token_param",
    "anthropic": "anthropic-version",
    "gemini": "apiVersion",
    "http": "text_pointr",
    "lambda": "regoin",
    "runpod": "poll_interval",
}


def test_every_kind_has_a_typo_case() -> None:
    assert sorted(TYPOS) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_option_fails_the_build(kind: str) -> None:
    typo = TYPOS[kind]
    spec = ProviderSpec(name="p", kind=kind, options={**REQUIRED.get(kind, {}), typo: 1})
    with pytest.raises(ValueError, match=f"unknown option '{typo}' for kind {kind}; known: "):
        build_provider(spec)


@pytest.mark.parametrize(
    ("kind", "known"),
    [
        ("openai", "max_tokens_param"),
        ("anthropic", "anthropic_version"),
        ("gemini", "api_version"),
        ("http", "text_pointer"),
        ("lambda", "region"),
        ("runpod", "poll_interval_s"),
        ("simulated", "token_delay_ms"),
        ("local", "model_path"),
    ],
)
def test_the_error_lists_the_known_options(kind: str, known: str) -> None:
    spec = ProviderSpec(name="p", kind=kind, options={**REQUIRED.get(kind, {}), "zzz": 1})
    with pytest.raises(ValueError) as caught:
        build_provider(spec)
    assert known in str(caught.value).split("known: ")[1]


async def test_documented_options_are_accepted() -> None:
    spec = ProviderSpec(
        name="p",
        kind="openai",
        options={
            "max_tokens_param": "max_tokens",
            "include_usage": False,
            "organization": "o",
            "project": "p",
            "headers": {"X-A": "1"},
        },
    )
    provider = build_provider(spec)
    await provider.aclose()
    simulated = ProviderSpec(
        name="s",
        kind="simulated",
        options={
            "token_delay_ms": 1,
            "first_token_delay_ms": 0,
            "min_tokens": 1,
            "max_tokens": 2,
            "embedding_dim": 8,
        },
    )
    await build_provider(simulated).aclose()


@adapter_boundary
class Broken:
    """An adapter whose calls fail in every way an adapter's code can."""

    name = "broken"

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.closed = False

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        try:
            yield TextDelta("a")
            raise self.exc
        finally:
            self.closed = True

    async def complete(self, request: Any) -> Any:
        raise self.exc

    async def embed(self, request: Any) -> Any:
        raise self.exc

    async def list_models(self) -> list[str]:
        raise self.exc

    async def run(self, payload: Any) -> Any:
        raise self.exc


@pytest.mark.parametrize(
    "exc", [KeyError("choices"), TypeError("x"), ValueError("y"), AttributeError("z")]
)
async def test_unexpected_exceptions_become_provider_errors(exc: Exception) -> None:
    adapter = Broken(exc)
    for call in (adapter.complete(None), adapter.embed(None), adapter.list_models()):
        with pytest.raises(ProviderServerError, match="could not read the upstream reply") as e:
            await call
        assert e.value.__cause__ is exc
        assert e.value.provider == "broken"
    with pytest.raises(StreamBroken, match=type(exc).__name__) as caught:
        async for _ in adapter.stream(None):
            pass
    assert caught.value.__cause__ is exc
    assert adapter.closed


async def test_malformed_replies_are_named() -> None:
    adapter = Broken(MalformedReply("choices[0].delta.content is a number, not text"))
    with pytest.raises(ProviderServerError, match="malformed upstream reply: choices"):
        await adapter.run({})
    with pytest.raises(StreamBroken, match="malformed upstream reply: choices"):
        async for _ in adapter.stream(None):
            pass


@pytest.mark.parametrize(
    "exc",
    [
        ProviderTimeout("t", provider="broken"),
        FailedPrecondition("model file missing"),
        asyncio.CancelledError(),
        KeyboardInterrupt(),
    ],
)
async def test_aurea_errors_and_interrupts_pass_through(exc: BaseException) -> None:
    adapter = Broken(exc)
    with pytest.raises(type(exc)) as caught:
        await adapter.complete(None)
    assert caught.value is exc
    with pytest.raises(type(exc)):
        async for _ in adapter.stream(None):
            pass


async def test_closing_a_guarded_stream_closes_the_adapters_at_once() -> None:
    adapter = Broken(ValueError())
    stream = adapter.stream(None)
    assert await anext(stream) == TextDelta("a")
    await stream.aclose()  # type: ignore[attr-defined]
    assert adapter.closed
