"""URLs as they may be shown: a configured ``base_url`` can carry a password
(``https://user:secret@host/v1``) or a key in its query string (``?key=...``), and neither may
reach an error message, a log line or an API response.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

__all__ = ["safe_url", "url_secrets"]

# Query parameters whose values are credentials (API keys, tokens, AWS presigned signatures).
_SECRET_PARAM = re.compile(
    r"key|token|secret|passw|pwd|sig|auth|credential|session|code", re.IGNORECASE
)


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:
        return None


def _secret_pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if value and _SECRET_PARAM.search(unquote(name)):
            pairs.append((name, value))
    return pairs


def safe_url(url: str) -> str:
    """``url`` without its userinfo, and with secret-looking query values replaced by ``***``."""
    parts = _split(url)
    if parts is None:
        return "<an invalid URL>"
    netloc = parts.netloc.rpartition("@")[2]
    pieces = []
    for part in parts.query.split("&") if parts.query else []:
        name, _, value = part.partition("=")
        pieces.append(f"{name}=***" if value and _SECRET_PARAM.search(unquote(name)) else part)
    query = "&".join(pieces)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """Every form in which ``url``'s credentials could be echoed back: the password (as written
    and percent-decoded), the Basic auth token an HTTP client derives from the userinfo, and the
    values of secret-looking query parameters."""
    parts = _split(url)
    if parts is None:
        return [url] if "@" in url else []
    found: list[str] = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and userinfo:
        user, colon, password = userinfo.partition(":")
        if colon and password:
            found += [password, unquote(password)]
        raw = f"{unquote(user)}:{unquote(password)}"
        try:
            credential = raw.encode("latin-1")
        except UnicodeEncodeError:
            credential = raw.encode("utf-8")
        found.append(base64.b64encode(credential).decode("ascii"))
        found += [userinfo, unquote(userinfo)]  # a token may be the user name alone
    for _, value in _secret_pairs(parts.query):
        found += [value, unquote(value)]
    return [s for s in dict.fromkeys(found) if len(s) >= 4]
