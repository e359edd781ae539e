"""PII and secret redaction for log events (seed 003's ``REDACT_PII``): e-mail addresses, phone
numbers, US social security numbers, payment card numbers (Luhn-checked, so ids and counts
survive), IPv4 and IPv6 addresses, API keys and bearer tokens, ``password=...``-style pairs in
text, and the whole value of any key named like a secret (password, secret, token,
authorization, cookie, credentials, ...), at any depth of nested mappings and sequences.

One compiled alternation scans each string once; values that are not strings (counts, latencies)
pass untouched. Aurea logs an API key's *name* under ``api_key`` (never the key), so that one
key name is not treated as a secret; its value is still scanned like any other string.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

__all__ = ["SECRET_KEY", "redact_event", "redact_text", "redact_value"]

REDACTED: Final = "[redacted]"

# Keys whose values are never logged as is. Whole segments only: "input_tokens" (a count) is not
# "token", but "access_token", "x-api-key" and "client_secret" are.
SECRET_KEY: Final = re.compile(
    r"(?i)(?:^|[_.-])(?:pass(?:word|wd|phrase)?|pwd|secrets?|token|auth|authorization|"
    r"cookies?|set-cookie|credentials?|apikey|api[_-]key|api[_-]secret|private[_-]?key|"
    r"access[_-]?key|secret[_-]?key|session[_-]?id)$"
)
_NOT_SECRET: Final = frozenset({"api_key"})  # the key's name, bound by the edge

# Keys whose values Aurea writes itself and that are never personal data.
_SKIP: Final = frozenset({"timestamp", "level", "logger", "logger_name", "trace_id", "span_id"})

# Keys naming Aurea's own listening addresses and upstream URLs: addresses there are
# configuration, not personal data (other kinds of PII are still masked in them).
_OWN_ADDRESSES: Final = frozenset({"host", "configured_host", "bound_host", "base_url"})

_IPV4_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IP_KINDS = (
    rf"(?P<ipv4>\b{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}\b)",
    r"(?P<ipv6>(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:]))",
)
_KINDS: Final = (
    # "password=hunter2", "api_key: sk-...", "Authorization: Basic ...", in free text
    r"(?P<pair>(?P<head>(?i:\b(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key|"
    r"x-api-key|access[_-]?token|refresh[_-]?token|authorization|client[_-]?secret)\b"
    r"[\"']?\s*[:=]\s*(?:bearer\s+|basic\s+)?[\"']?))[^\s\"',;&}]+)",
    r"(?P<bearer>(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]{8,})",
    r"(?P<email>[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)",
    # vendor key shapes: OpenAI/Anthropic sk-, AWS AKIA, GitHub, Slack, Google AIza
    r"(?P<apikey>\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}|\bAKIA[0-9A-Z]{16}\b|"
    r"\bgh[pousr]_[A-Za-z0-9]{20,}|\bxox[abprs]-[A-Za-z0-9-]{10,}|"
    r"\bAIza[0-9A-Za-z_-]{30,})",
    r"(?P<ssn>\b\d{3}-\d{2}-\d{4}\b)",
    r"(?P<card>\b\d(?:[ -]?\d){12,18}\b)",
    r"(?P<phone>(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\b\d{3})[ .-]?\d{3}[ .-]\d{4}\b|"
    r"\+\d{1,3}(?:[ .-]?\d{2,4}){2,5}\b)",
)
_PATTERN: Final = re.compile("|".join((*_KINDS, *_IP_KINDS)))
_PATTERN_NO_IP: Final = re.compile("|".join(_KINDS))


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _replace(m: re.Match[str]) -> str:
    kind = m.lastgroup
    text = m.group()
    if kind == "pair":  # keep the name and separator, mask the value
        return m.group("head") + REDACTED
    if kind == "bearer":
        return "Bearer " + REDACTED
    if kind == "card":
        digits = text.replace(" ", "").replace("-", "")
        return "[card]" if 13 <= len(digits) <= 19 and _luhn(digits) else text
    if kind == "ipv6":
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            return text  # a time of day, a MAC-like id: not an address
        return "[ip]"
    return _MASKS[kind or ""]


_MASKS: Final = {
    "email": "[email]",
    "apikey": "[api_key]",
    "ssn": "[ssn]",
    "phone": "[phone]",
    "ipv4": "[ip]",
}


def redact_text(text: str) -> str:
    """``text`` with every match masked."""
    return _PATTERN.sub(_replace, text)


def redact_value(value: Any, key: str = "") -> Any:
    """A value with strings masked, recursing into mappings, lists, tuples and sets; the whole
    value of a secret-named key is replaced."""
    if key and key not in _NOT_SECRET and SECRET_KEY.search(key):
        return REDACTED if value not in (None, "") else value
    if isinstance(value, str):
        pattern = _PATTERN_NO_IP if key in _OWN_ADDRESSES else _PATTERN
        return pattern.sub(_replace, value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, k if isinstance(k, str) else "") for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_value(v) for v in value]  # the renderer writes them all as lists
    if isinstance(value, (bytes, bytearray)):
        return redact_value(bytes(value).decode("utf-8", "replace"))
    return value


def redact_event(event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Redact a structlog event dict in place (the processor's work)."""
    for k, v in event.items():
        if k in _SKIP or isinstance(v, (int, float, bool)) or v is None:
            continue
        event[k] = redact_value(v, k)
    return event
