"""How long an upstream asks us to wait: ``Retry-After`` and its vendor variants, parsed by one
set of helpers into a finite number of seconds in ``[0, MAX_RETRY_AFTER_S]``; and what an
upstream's rate-limit headers say of its own limits (``RateHint``), handed to whoever listens
for the attempt in progress (the rate limiter, through ``rate_hint_sink``).

Upstreams have sent ``inf``, ``nan``, ``1e19`` and dates thousands of years ahead; a hint past the
cap is clamped to it (an hour is already longer than any call waits, and clients were once told to
wait 7,973 years), a hint that is not a number is ignored. Nothing here raises.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass

import structlog

__all__ = [
    "MAX_RETRY_AFTER_S",
    "RateHint",
    "RateHintSink",
    "clamp_retry_after",
    "parse_duration",
    "parse_reset_time",
    "parse_retry_after",
    "rate_hint_from_headers",
    "rate_hint_sink",
    "report_rate_headers",
    "retry_after_from_headers",
]

log = structlog.get_logger("aurea.providers")

# The longest wait Aurea repeats to a caller: one hour.
MAX_RETRY_AFTER_S = 3600.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def clamp_retry_after(seconds: float | None) -> float | None:
    """``seconds`` in ``[0, MAX_RETRY_AFTER_S]``; None for None or NaN (no usable hint)."""
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def parse_duration(value: str) -> float | None:
    """Seconds in a Go-style duration (``"1m30s"``, ``"20ms"``, ``"17s"``, ``"0.5s"``), clamped."""
    text = value.strip()
    if not text or _DURATION_PART.sub("", text):
        return None
    return clamp_retry_after(sum(float(n) * _SCALE[u] for n, u in _DURATION_PART.findall(text)))


def _seconds_until(when: datetime.datetime, now: Callable[[], float]) -> float | None:
    try:
        return when.timestamp() - now()
    except (OverflowError, ValueError, OSError):
        return None


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date (RFC 9110)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return clamp_retry_after(seconds)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP-date is always GMT; anything else is not one
    return clamp_retry_after(_seconds_until(when, now))


def parse_reset_time(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds until an RFC 3339 timestamp (Anthropic's ``anthropic-ratelimit-*-reset``)."""
    if not value:
        return None
    try:
        when = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return clamp_retry_after(_seconds_until(when, now))


def retry_after_from_headers(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """``retry-after-ms``, then ``Retry-After``, then OpenAI's ``x-ratelimit-reset-*`` (longest);
    always within ``[0, MAX_RETRY_AFTER_S]`` or None."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            seconds = clamp_retry_after(float(millis) / 1000.0)
        except ValueError:
            seconds = None
        if seconds is not None:
            return seconds
    seconds = parse_retry_after(headers.get("retry-after"), now=now)
    if seconds is not None:
        return seconds
    resets = [
        parse_duration(headers.get(name, ""))
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
    ]
    known = [r for r in resets if r is not None]
    return max(known) if known else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateHint:
    """What one upstream response said about the upstream's own rate limits. Durations are
    seconds from when the response arrived; None: not said (or not a usable number)."""

    status: int
    retry_after_s: float | None = None  # Retry-After (or retry-after-ms)
    requests_remaining: int | None = None
    requests_reset_s: float | None = None
    tokens_remaining: int | None = None  # the most exhausted of the token limits reported
    tokens_reset_s: float | None = None  # when that one resets


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        n = int(value.strip())
    except ValueError:
        return None
    return n if n >= 0 else None


# OpenAI (and compatible servers): counts, and resets as Go-style durations ("6m0s", "20ms").
_OPENAI_REQUESTS = ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
_OPENAI_TOKENS = ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
# Anthropic: counts, and resets as RFC 3339 instants; three token limits (total, input, output).
_ANTHROPIC_REQUESTS = (
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
)
_ANTHROPIC_TOKENS = tuple(
    (f"anthropic-ratelimit-{kind}-remaining", f"anthropic-ratelimit-{kind}-reset")
    for kind in ("tokens", "input-tokens", "output-tokens")
)


def rate_hint_from_headers(
    status: int, headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> RateHint | None:
    """The rate-limit news in one response's headers; None when there is none (most replies
    of most upstreams). Never raises."""
    retry_after = None
    if status == 429 or "retry-after" in headers or "retry-after-ms" in headers:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            try:
                retry_after = clamp_retry_after(float(millis) / 1000.0)
            except ValueError:
                retry_after = None
        if retry_after is None:
            retry_after = parse_retry_after(headers.get("retry-after"), now=now)
    req_left = req_reset = None
    tokens: list[tuple[int, float | None]] = []
    if _OPENAI_REQUESTS[0] in headers or _OPENAI_TOKENS[0] in headers:
        req_left = _count(headers.get(_OPENAI_REQUESTS[0]))
        req_reset = parse_duration(headers.get(_OPENAI_REQUESTS[1], ""))
        left = _count(headers.get(_OPENAI_TOKENS[0]))
        if left is not None:
            tokens.append((left, parse_duration(headers.get(_OPENAI_TOKENS[1], ""))))
    if _ANTHROPIC_REQUESTS[0] in headers or _ANTHROPIC_TOKENS[0][0] in headers:
        req_left = _count(headers.get(_ANTHROPIC_REQUESTS[0]))
        req_reset = parse_reset_time(headers.get(_ANTHROPIC_REQUESTS[1]), now=now)
        for left_name, reset_name in _ANTHROPIC_TOKENS:
            left = _count(headers.get(left_name))
            if left is not None:
                tokens.append((left, parse_reset_time(headers.get(reset_name), now=now)))
    if retry_after is None and req_left is None and not tokens:
        return None
    tok_left, tok_reset = min(tokens, key=lambda t: t[0]) if tokens else (None, None)
    return RateHint(
        status=status,
        retry_after_s=retry_after,
        requests_remaining=req_left,
        requests_reset_s=req_reset,
        tokens_remaining=tok_left,
        tokens_reset_s=tok_reset,
    )


RateHintSink = Callable[[RateHint], Awaitable[None]]

# Who wants the rate-limit news of the attempt running in this task (the rate limiter's permit
# sets it for the attempt's duration); None: nobody, and the headers are not even parsed.
rate_hint_sink: ContextVar[RateHintSink | None] = ContextVar("aurea_rate_hint_sink", default=None)


async def report_rate_headers(status: int, headers: Mapping[str, str]) -> None:
    """Hand the rate-limit news in a response's headers to the current sink, if any. Never
    raises (but cancellation): a listener's failure must not fail the call it watches."""
    sink = rate_hint_sink.get()
    if sink is None:
        return
    try:
        hint = rate_hint_from_headers(status, headers)
        if hint is not None:
            await sink(hint)
    except Exception as exc:
        log.warning("rate_hint_failed", error=f"{type(exc).__name__}: {exc}")
