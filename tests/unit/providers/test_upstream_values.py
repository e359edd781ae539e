"""The validators every adapter reads upstream numbers and URLs through."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aurea.providers._base import ChatMessage, Role, Usage
from aurea.providers._urls import safe_url, url_secrets
from aurea.providers._values import (
    MAX_TOKEN_COUNT,
    Counts,
    float_vector,
    reported_usage,
    token_count,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (12, 12),
        (12.0, 12),
        (12.9, 12),
        (10**9, MAX_TOKEN_COUNT),
        (10**30, MAX_TOKEN_COUNT),
        (1e30, MAX_TOKEN_COUNT),
        (math.inf, MAX_TOKEN_COUNT),
        (-1, None),
        (-0.5, None),
        (-math.inf, None),
        (math.nan, None),
        (True, None),
        (False, None),
        ("12", None),
        (None, None),
        ([1], None),
        ({"n": 1}, None),
    ],
)
def test_token_count(value: Any, expected: int | None) -> None:
    got = token_count(value)
    assert got == expected
    assert got is None or type(got) is int


MESSAGES = (ChatMessage(Role.USER, "one two three four"),)


async def test_reported_usage_keeps_valid_counts() -> None:
    counts = Counts(input_tokens=10, output_tokens=5, cached_input_tokens=4, reasoning_tokens=2)
    usage = await reported_usage(counts, messages=MESSAGES, output_text="x", model="gpt-4o")
    assert usage == Usage(
        input_tokens=10, output_tokens=5, cached_input_tokens=4, reasoning_tokens=2
    )


async def test_reported_usage_estimates_what_is_invalid() -> None:
    counts = Counts(input_tokens=-3, output_tokens="7", cached_input_tokens=2)
    usage = await reported_usage(counts, messages=MESSAGES, output_text="ab", model="gpt-4o")
    assert usage.estimated
    assert usage.input_tokens > 0 and usage.output_tokens == 1
    assert usage.cached_input_tokens == 2
    nothing = await reported_usage(None, messages=MESSAGES, output_text="ab", model="gpt-4o")
    assert nothing.estimated and nothing.input_tokens == usage.input_tokens


async def test_reported_usage_keeps_parts_within_wholes() -> None:
    counts = Counts(input_tokens=3, output_tokens=2, cached_input_tokens=1e30, reasoning_tokens=9)
    usage = await reported_usage(counts, messages=MESSAGES, output_text="", model="m")
    assert usage.cached_input_tokens == 3 and usage.reasoning_tokens == 2
    assert not usage.estimated
    odd = Counts(input_tokens=3, output_tokens=2, cached_input_tokens=-1, reasoning_tokens=None)
    usage = await reported_usage(odd, messages=MESSAGES, output_text="", model="m")
    assert (usage.cached_input_tokens, usage.reasoning_tokens) == (0, 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([1, 2.5, -3], (1.0, 2.5, -3.0)),
        ([], ()),
        ([1, math.nan], None),
        ([math.inf], None),
        ([10**400], None),
        ([True], None),
        (["1"], None),
        ([[1.0]], None),
        ("1,2", None),
        ({"0": 1}, None),
        (None, None),
    ],
)
def test_float_vector(value: Any, expected: tuple[float, ...] | None) -> None:
    assert float_vector(value) == expected


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.example.com/v1", "https://api.example.com/v1"),
        ("https://user:secret@host/v1", "https://host/v1"),
        ("https://tok3n@host:8443/v1", "https://host:8443/v1"),
        ("https://h/v1?key=abc&alt=sse", "https://h/v1?key=***&alt=sse"),
        (
            "https://h/x?api_key=a&X-Amz-Signature=b&page=2",
            "https://h/x?api_key=***&X-Amz-Signature=***&page=2",
        ),
        ("http://[::1", "<an invalid URL>"),
    ],
)
def test_safe_url(url: str, shown: str) -> None:
    assert safe_url(url) == shown


def test_url_secrets_cover_every_echoed_form() -> None:
    secrets = url_secrets("https://me:p%40ss-word@h/v1?token=t0k3n-value&x=1")
    assert "p%40ss-word" in secrets and "p@ss-word" in secrets
    assert "bWU6cEBzcy13b3Jk" in secrets  # base64("me:p@ss-word"): the Basic auth header
    assert "t0k3n-value" in secrets
    assert "1" not in secrets and "me" not in secrets  # too short to redact safely
    assert url_secrets("https://plain.example/v1") == []


def test_a_spec_shows_its_urls_without_secrets() -> None:
    from aurea.providers._base import ProviderSpec

    spec = ProviderSpec(
        name="p",
        kind="http",
        base_url="https://me:hunter2-pw@h/v1",
        options={"url": "https://h/gen?key=k3y-secret", "method": "POST"},
    )
    text = repr(spec)
    assert "hunter2-pw" not in text and "k3y-secret" not in text
    assert "https://h/v1" in text and "'method': 'POST'" in text
    assert spec.base_url == "https://me:hunter2-pw@h/v1"  # the value itself is untouched
