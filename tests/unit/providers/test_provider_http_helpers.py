"""The shared HTTP helpers: Retry-After, durations, the status table, key handling, registry."""

from __future__ import annotations

import email.utils

import pytest
from provider_helpers import KEY_ENV, make_spec

from aurea.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    ProviderAuthError,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderServerError,
    UpstreamRejected,
)
from aurea.providers._base import Provider, ProviderSpec
from aurea.providers._http import (
    HttpClient,
    error_for_status,
    parse_duration,
    parse_retry_after,
    retry_after_from_headers,
)
from aurea.providers.registry import KINDS, build_provider

NOW = 1_700_000_000.0


def clock() -> float:
    return NOW


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # RFC 9110's own example, long past
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=clock) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1s", 1.0), ("20ms", 0.02), ("6m0s", 360.0), ("59m3.5s", 3543.5), ("17s", 17.0)],
)
def test_parse_duration(value: str, expected: float) -> None:
    assert parse_duration(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["", "abc", "1x", "1s junk"])
def test_parse_duration_rejects(value: str) -> None:
    assert parse_duration(value) is None


def test_retry_after_header_precedence() -> None:
    assert retry_after_from_headers({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_from_headers({"retry-after": "9"}) == 9.0
    headers = {"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "1m"}
    assert retry_after_from_headers(headers) == 60.0
    assert retry_after_from_headers({}) is None


@pytest.mark.parametrize(
    ("status", "detail", "cls"),
    [
        (401, "bad key", ProviderAuthError),
        (403, "forbidden", ProviderAuthError),
        (429, "slow down", ProviderRateLimited),
        (503, "unavailable", ProviderOverloaded),
        (529, "overloaded_error: Overloaded", ProviderOverloaded),
        (500, "the engine is overloaded", ProviderOverloaded),
        (500, "boom", ProviderServerError),
        (502, "bad gateway", ProviderServerError),
        (400, "This model's maximum context length is 8192 tokens", ContextLengthExceeded),
        (400, "prompt is too long: 300000 tokens > 200000 maximum", ContextLengthExceeded),
        (400, "blocked by our content policy", ContentFiltered),
        (400, "temperature must be <= 2", UpstreamRejected),
        (404, "no such model", UpstreamRejected),
    ],
)
def test_status_table(status: int, detail: str, cls: type[ProviderError]) -> None:
    error = error_for_status("p", status, detail, retry_after_s=3.0)
    assert type(error) is cls
    assert error.status == status
    assert error.retry_after_s == 3.0
    assert detail in error.message
    assert error.message.startswith("p: HTTP ")


def test_in_stream_errors_carry_no_status() -> None:
    error = error_for_status("p", 529, "overloaded", in_stream=True)
    assert isinstance(error, ProviderOverloaded)
    assert error.status is None
    assert "in-stream error" in error.message


def client(base_url: str, default: str = "") -> HttpClient:
    return HttpClient(
        make_spec("openai", base_url),
        default_base_url=default,
        parse_error=lambda status, body, headers: error_for_status("p", status, body),
    )


def test_api_key_is_read_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k-at-start")
    early = client("http://x")
    monkeypatch.setenv(KEY_ENV, "k-later")
    assert early.api_key == "k-at-start"
    assert early.redact("a k-at-start b") == "a *** b"
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ProviderAuthError, match=f"environment variable {KEY_ENV} is not set"):
        _ = client("http://x").api_key


def test_base_url_default_and_trailing_slash() -> None:
    assert client("http://host/v1/", "d").base_url == "http://host/v1"
    assert client("", "https://d/").base_url == "https://d"


@pytest.mark.parametrize(
    ("kind", "options", "class_name"),
    [
        ("openai", {}, "OpenAIProvider"),
        ("OpenAI", {}, "OpenAIProvider"),
        ("anthropic", {}, "AnthropicProvider"),
        ("gemini", {}, "GeminiProvider"),
        ("http", {"url": "http://127.0.0.1:1/x"}, "GenericHTTPProvider"),
        ("lambda", {"function": "f"}, "LambdaProvider"),
        ("runpod", {"endpoint_id": "e"}, "RunPodProvider"),
    ],
)
async def test_registry_builds_each_kind(
    kind: str, options: dict[str, str], class_name: str
) -> None:
    provider = build_provider(ProviderSpec(name="p", kind=kind, options=options))
    try:
        assert type(provider).__name__ == class_name
        assert isinstance(provider, Provider)
        assert provider.name == "p"
    finally:
        await provider.aclose()


async def test_registry_simulated_is_lazy_and_works() -> None:
    provider = build_provider(ProviderSpec(name="sim", kind="simulated"))
    try:
        assert type(provider).__name__ == "SimulatedProvider"
    finally:
        await provider.aclose()


def test_registry_unknown_kind_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="unknown kind 'bedrock'") as caught:
        build_provider(ProviderSpec(name="p", kind="bedrock"))
    for kind in KINDS:
        assert kind in str(caught.value)
