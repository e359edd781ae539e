"""Canary: a distinctive key must never show up in any error an adapter raises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from provider_helpers import KEY_ENV, chat, collect, make_spec

from aurea.errors import ProviderError
from aurea.providers._base import Provider
from aurea.providers.anthropic import AnthropicProvider
from aurea.providers.aws_lambda import LambdaProvider
from aurea.providers.gemini import GeminiProvider
from aurea.providers.http_generic import GenericHTTPProvider
from aurea.providers.openai import OpenAIProvider
from aurea.providers.runpod import RunPodProvider
from aurea.testing.fakes import (
    FakeAnthropic,
    FakeGemini,
    FakeHTTPModel,
    FakeLambda,
    FakeOpenAI,
    FakeRunPod,
    FakeServer,
    Fault,
    FaultKind,
)

CANARY = "sk-CANARY-7f3a9c1e5b2d4a6c8e0f"
FAULTS = [
    FaultKind.RATE_LIMIT,
    FaultKind.SERVER_ERROR,
    FaultKind.OVERLOADED,
    FaultKind.CONTEXT_LENGTH,
    FaultKind.CONTENT_FILTER,
    FaultKind.UNAUTHORIZED,
    FaultKind.CUT_STREAM,
    FaultKind.STREAM_ERROR,
    FaultKind.MALFORMED,
]


def texts_of(error: BaseException) -> list[str]:
    """Everything a log line or traceback could print about ``error`` and its causes."""
    out: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        out += [str(seen), repr(seen), repr(seen.args), str(getattr(seen, "message", ""))]
        seen = seen.__cause__ or seen.__context__
    return out


async def provoke(provider: Provider, fake: FakeServer) -> list[ProviderError]:
    errors: list[ProviderError] = []
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: provider.complete(chat("one two three four")),
        lambda: collect(provider.stream(chat("one two three four"))),
    ]
    for kind in FAULTS:
        for call in calls:
            fake.inject(Fault(kind, after_tokens=1, retry_after="1"))
            try:
                await call()
            except ProviderError as exc:
                errors.append(exc)
            fake.faults.clear()
    return errors


def assert_clean(errors: list[ProviderError], secret: str = CANARY) -> None:
    assert errors
    for error in errors:
        for text in texts_of(error):
            assert secret not in text, (type(error).__name__, text)


@pytest.mark.parametrize(
    ("fake_cls", "make"),
    [
        (FakeOpenAI, lambda f: OpenAIProvider(make_spec("openai", f.base_url))),
        (FakeAnthropic, lambda f: AnthropicProvider(make_spec("anthropic", f.base_url))),
        (FakeGemini, lambda f: GeminiProvider(make_spec("gemini", f.base_url))),
        (
            FakeRunPod,
            lambda f: RunPodProvider(
                make_spec("runpod", f.base_url, endpoint_id=f.endpoint_id, poll_interval_s=0.01)
            ),
        ),
        (
            FakeHTTPModel,
            lambda f: GenericHTTPProvider(
                make_spec(
                    "http",
                    "",
                    url=f"{f.origin}/generate",
                    stream_url=f"{f.origin}/generate/stream",
                    stream_text_pointer="/delta/text",
                    headers={"X-Api-Key": "{api_key}"},
                    text_pointer="/output/text",
                    error_pointer="/error/message",
                )
            ),
        ),
    ],
)
@pytest.mark.parametrize("right_key", [True, False])
async def test_key_never_appears_in_errors(
    monkeypatch: pytest.MonkeyPatch, fake_cls: Any, make: Any, right_key: bool
) -> None:
    monkeypatch.setenv(KEY_ENV, CANARY)
    # With the wrong key every call is a 401 that some vendors answer by quoting the key.
    fake = fake_cls(api_key=CANARY if right_key else "the-real-key-is-different")
    if isinstance(fake, FakeHTTPModel):
        fake.echo_auth_in_errors = True
    async with fake:
        provider = make(fake)
        try:
            errors = await provoke(provider, fake)
        finally:
            await provider.aclose()
    assert_clean(errors)


async def test_aws_secrets_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUREA_CANARY_AK", "AKIDCANARY")
    monkeypatch.setenv("AUREA_CANARY_SK", CANARY)
    monkeypatch.setenv("AUREA_CANARY_TOKEN", CANARY + "-token")
    async with FakeLambda(access_key="AKIDCANARY", secret_key="not-the-canary") as fake:
        provider = LambdaProvider(
            make_spec(
                "lambda",
                "",
                key_env="",
                function="echo-llm",
                endpoint=fake.base_url,
                access_key_env="AUREA_CANARY_AK",
                secret_key_env="AUREA_CANARY_SK",
                session_token_env="AUREA_CANARY_TOKEN",
            )
        )
        try:
            errors = await provoke(provider, fake)  # every call: InvalidSignatureException
        finally:
            await provider.aclose()
    assert_clean(errors)
    assert_clean(errors, CANARY + "-token")
