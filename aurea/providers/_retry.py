"""How long an upstream asks us to wait: ``Retry-After`` and its vendor variants, parsed by one
set of helpers into a finite number of seconds in ``[0, MAX_RETRY_AFTER_S]``.

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
from collections.abc import Callable, Mapping

__all__ = [
    "MAX_RETRY_AFTER_S",
    "clamp_retry_after",
    "parse_duration",
    "parse_reset_time",
    "parse_retry_after",
    "retry_after_from_headers",
]

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
