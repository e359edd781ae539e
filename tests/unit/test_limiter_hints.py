"""What upstream rate-limit headers say (``rate_hint_from_headers``), and how a rate-limit
refusal reaches a client (RESOURCE_EXHAUSTED with RetryInfo and a QuotaFailure naming the model
and the limit)."""

from __future__ import annotations

import datetime

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from aurea import errors as e
from aurea.api.status import openai_error, to_status
from aurea.providers._retry import RateHint, rate_hint_from_headers

NOW = 1_700_000_000.0


def at(seconds_from_now: float) -> str:
    when = datetime.datetime.fromtimestamp(NOW + seconds_from_now, tz=datetime.UTC)
    return when.isoformat().replace("+00:00", "Z")


def hint(status: int, headers: dict[str, str]) -> RateHint | None:
    return rate_hint_from_headers(status, headers, now=lambda: NOW)


def test_ordinary_replies_carry_no_hint() -> None:
    assert hint(200, {"content-type": "application/json"}) is None
    assert hint(500, {}) is None


def test_a_429_without_a_usable_header_says_nothing_to_act_on() -> None:
    assert hint(429, {}) is None
    assert hint(429, {"retry-after": "soon"}) is None


def test_openai_headers() -> None:
    h = hint(
        200,
        {
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1m2s",
            "x-ratelimit-remaining-tokens": "1500",
            "x-ratelimit-reset-tokens": "250ms",
        },
    )
    assert h == RateHint(
        status=200,
        requests_remaining=0,
        requests_reset_s=62.0,
        tokens_remaining=1500,
        tokens_reset_s=0.25,
    )


def test_anthropic_headers_take_the_most_exhausted_token_limit() -> None:
    h = hint(
        429,
        {
            "retry-after": "7",
            "anthropic-ratelimit-requests-remaining": "12",
            "anthropic-ratelimit-requests-reset": at(30),
            "anthropic-ratelimit-tokens-remaining": "900",
            "anthropic-ratelimit-tokens-reset": at(20),
            "anthropic-ratelimit-input-tokens-remaining": "0",
            "anthropic-ratelimit-input-tokens-reset": at(45),
            "anthropic-ratelimit-output-tokens-remaining": "300",
            "anthropic-ratelimit-output-tokens-reset": at(10),
        },
    )
    assert h is not None
    assert (h.retry_after_s, h.requests_remaining) == (7.0, 12)
    assert h.requests_reset_s == pytest.approx(30)
    assert h.tokens_remaining == 0 and h.tokens_reset_s == pytest.approx(45)


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "soon", "x-ratelimit-remaining-requests": "-3"},
        {"x-ratelimit-remaining-requests": "lots", "x-ratelimit-reset-requests": "1 fortnight"},
        {"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": "x"},
        {"retry-after-ms": "nan"},
        {"retry-after": "1e400"},
    ],
)
def test_garbage_values_are_ignored_or_clamped_never_raised(headers: dict[str, str]) -> None:
    h = hint(429, headers)
    if h is None:
        return
    assert h.retry_after_s is None or 0 <= h.retry_after_s <= 3600
    assert h.requests_remaining is None or h.requests_remaining >= 0
    assert h.requests_reset_s is None


def test_retry_after_ms_wins_over_retry_after() -> None:
    h = hint(429, {"retry-after-ms": "1500", "retry-after": "9"})
    assert h is not None and h.retry_after_s == 1.5


def test_rate_limited_status_names_the_model_and_the_limit() -> None:
    err = e.RateLimited(
        "model 'm' is over its rpm limit (60 requests per minute); room again in 1.5 s",
        1.5,
        model="m",
        limit="rpm",
    )
    status = to_status(err)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    rich = next(v for k, v in status.trailing_metadata if k == "grpc-status-details-bin")
    parsed = status_pb2.Status.FromString(rich)
    info, retry, quota = (
        error_details_pb2.ErrorInfo(),
        error_details_pb2.RetryInfo(),
        error_details_pb2.QuotaFailure(),
    )
    found = set()
    for any_msg in parsed.details:
        for name, msg in (("info", info), ("retry", retry), ("quota", quota)):
            if any_msg.Is(msg.DESCRIPTOR):
                any_msg.Unpack(msg)
                found.add(name)
    assert found == {"info", "retry", "quota"}
    assert info.reason == "RATE_LIMITED" and dict(info.metadata) == {"model": "m", "limit": "rpm"}
    assert retry.retry_delay.seconds == 1 and retry.retry_delay.nanos == 500_000_000
    (violation,) = quota.violations
    assert violation.subject == "model:m:rpm" and "60 requests per minute" in violation.description
    code, body = openai_error(err)
    assert code == 429 and body["error"]["code"] == "rate_limit_exceeded"
