"""The HTTP plumbing every remote adapter shares: one pooled aiohttp session per adapter, the
timeouts of ``ProviderSpec.timeouts``, a concurrency cap, the API key read from the env var the
spec names, and the single place where transport failures become ``aurea.errors`` classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from aurea.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    StreamBroken,
    UpstreamRejected,
)
from aurea.providers._base import ProviderSpec
from aurea.providers._sse import SSEEvent, aiter_sse

__all__ = [
    "ErrorParser",
    "HttpClient",
    "Response",
    "error_for_status",
    "is_content_filter",
    "is_context_length",
    "json_object",
    "parse_duration",
    "parse_json",
    "parse_retry_after",
    "retry_after_from_headers",
]

E = TypeVar("E", bound=ProviderError)
# (status, body text with secrets already removed, response headers) -> the error to raise
ErrorParser = Callable[[int, str, Mapping[str, str]], ProviderError]

_CONTEXT_WORDS = (
    "context_length",
    "context length",
    "context window",
    "context size",
    "exceed_context_size",
    "maximum context",
    "prompt is too long",
    "too many tokens",
    "input token count",
    "maximum number of tokens",
)
_FILTER_WORDS = (
    "content_filter",
    "content filter",
    "content_policy",
    "content policy",
    "content management policy",
    "safety system",
    "responsibleai",
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def is_context_length(text: str) -> bool:
    """Does a provider's error text say the prompt did not fit the model's context window?"""
    lowered = text.lower()
    return any(word in lowered for word in _CONTEXT_WORDS)


def is_content_filter(text: str) -> bool:
    """Does a provider's error text say a content / safety policy blocked the request?"""
    lowered = text.lower()
    return any(word in lowered for word in _FILTER_WORDS)


def parse_duration(value: str) -> float | None:
    """Seconds in a Go-style duration (``"1m30s"``, ``"20ms"``, ``"17s"``, ``"0.5s"``)."""
    text = value.strip()
    if not text or _DURATION_PART.sub("", text):
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[unit] for n, unit in _DURATION_PART.findall(text))


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
        return max(0.0, seconds) if seconds == seconds else None  # NaN guard
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP-date is always GMT; anything else is not one
    return max(0.0, when.timestamp() - now())


def retry_after_from_headers(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """``retry-after-ms``, then ``Retry-After``, then OpenAI's ``x-ratelimit-reset-*`` (longest)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(millis) / 1000.0)
    seconds = parse_retry_after(headers.get("retry-after"), now=now)
    if seconds is not None:
        return seconds
    resets = [
        parse_duration(headers.get(name, ""))
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
    ]
    known = [r for r in resets if r is not None]
    return max(known) if known else None


def error_for_status(
    provider: str,
    status: int,
    detail: str,
    *,
    retry_after_s: float | None = None,
    in_stream: bool = False,
) -> ProviderError:
    """The most specific ``ProviderError`` for an HTTP error status and the provider's own text.

    ``in_stream``: the error came as an event inside a 200 stream; ``status`` is then the HTTP
    status the provider uses for that error type, used to classify but not reported.
    """
    where = "in-stream error" if in_stream else f"HTTP {status}"
    message = f"{provider}: {where}: {detail}" if detail else f"{provider}: {where}"
    cls: type[ProviderError]
    if status in (401, 403):
        cls = ProviderAuthError
    elif status == 429:
        cls = ProviderRateLimited
    elif status in (503, 529) or (status >= 500 and "overloaded" in detail.lower()):
        cls = ProviderOverloaded
    elif status >= 500:
        cls = ProviderServerError
    elif is_context_length(detail):
        cls = ContextLengthExceeded
    elif is_content_filter(detail):
        cls = ContentFiltered
    elif 400 <= status < 500:
        cls = UpstreamRejected
    else:
        cls = ProviderServerError  # 1xx/3xx we did not expect
    reported = None if in_stream else status
    return cls(message, provider=provider, status=reported, retry_after_s=retry_after_s)


def model_ids(data: Mapping[str, Any]) -> list[str]:
    """The ids of a ``{"data": [{"id": ...}, ...]}`` model list (OpenAI's and Anthropic's shape)."""
    return [
        str(item["id"])
        for item in data.get("data") or []
        if isinstance(item, Mapping) and "id" in item
    ]


def json_object(data: Any, *, provider: str, what: str) -> Mapping[str, Any]:
    """``data`` if it is a JSON object, else ProviderServerError (the upstream broke its API)."""
    if not isinstance(data, Mapping):
        raise ProviderServerError(f"{provider}: {what} is not a JSON object", provider=provider)
    return data


def parse_json(text: str | bytes, *, provider: str, what: str, broken: type[E]) -> Any:
    """``json.loads`` that raises ``broken`` (e.g. StreamBroken) naming what was malformed."""
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise broken(f"{provider}: malformed JSON in {what}", provider=provider) from exc


class Response:
    """An open HTTP response whose body reads honour the first-byte / idle / total timeouts."""

    def __init__(
        self, client: HttpClient, raw: aiohttp.ClientResponse, deadline: float, first_s: float
    ) -> None:
        self._client = client
        self.raw = raw
        self.status = raw.status
        self.headers: Mapping[str, str] = raw.headers
        self._deadline = deadline
        self._first_s = first_s
        self._readers: list[AsyncGenerator[Any, None]] = []

    def events(self) -> AsyncIterator[SSEEvent]:
        """The body as Server-Sent Events (closed with the response)."""
        reader = aiter_sse(self.chunks())
        self._readers.append(reader)
        return reader

    async def close_readers(self) -> None:
        """Finish the generators handed out by ``events()`` now, not whenever GC gets to them."""
        readers, self._readers = self._readers, []
        for reader in readers:
            with contextlib.suppress(Exception):
                await reader.aclose()

    async def chunks(self, *, broken: type[ProviderError] = StreamBroken) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; a dropped connection raises ``broken``."""
        limit, label = self._first_s, "first_byte_s"
        while True:
            data = await self._read_some(limit, label, broken)
            if not data:
                return
            limit, label = self._client.timeouts.idle_s, "idle_s"
            yield data

    async def read(self) -> bytes:
        """The whole body (a drop mid-body is a connection error: no reply was received)."""
        parts = [chunk async for chunk in self.chunks(broken=ProviderConnectionError)]
        return b"".join(parts)

    async def json(self) -> Any:
        body = await self.read()
        return parse_json(
            body,
            provider=self._client.provider,
            what="the response body",
            broken=ProviderServerError,
        )

    async def _read_some(self, limit: float, label: str, broken: type[ProviderError]) -> bytes:
        remaining = self._deadline - asyncio.get_running_loop().time()
        if remaining < limit:
            limit, label = max(remaining, 0.0), "total_s"
        try:
            async with asyncio.timeout(limit):
                return await self.raw.content.readany()
        except TimeoutError as exc:
            raise self._client.error(
                ProviderTimeout, f"no data from the upstream for {limit:g} s ({label})"
            ) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise self._client.error(
                broken, f"the connection dropped mid-response ({type(exc).__name__})"
            ) from exc


class HttpClient:
    """One adapter's HTTP side: a lazily created pooled session and the error boundary.

    ``parse_error`` turns a non-2xx reply into the adapter's most specific error; it sees the body
    with every secret this client knows replaced by ``***``.
    """

    def __init__(self, spec: ProviderSpec, *, default_base_url: str, parse_error: ErrorParser):
        self.provider = spec.name
        self.timeouts = spec.timeouts
        self.base_url = (spec.base_url or default_base_url).rstrip("/")
        self.api_key_env = spec.api_key_env
        # Read once, at construction; a missing variable only fails when a call needs the key.
        self._api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        self._secrets: list[str] = [self._api_key] if self._api_key else []
        self._semaphore = asyncio.Semaphore(max(1, spec.max_concurrency))
        self._max_connections = max(1, spec.max_concurrency)
        self._parse_error = parse_error
        self._session: aiohttp.ClientSession | None = None

    @property
    def api_key(self) -> str:
        """The key, or ProviderAuthError naming the unset variable (never a value)."""
        if self._api_key:
            return self._api_key
        if not self.api_key_env:
            raise self.error(ProviderAuthError, "no api_key_env is configured for this provider")
        raise self.error(
            ProviderAuthError, f"environment variable {self.api_key_env} is not set or empty"
        )

    @property
    def has_api_key(self) -> bool:
        return bool(self._api_key)

    def add_secret(self, secret: str | None) -> None:
        """Another value that must never appear in an error message (e.g. an AWS secret key)."""
        if secret and len(secret) >= 4:
            self._secrets.append(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def scrub(self, exc: E) -> E:
        """``exc`` with its message scrubbed of secrets (for errors built from stream events)."""
        exc.message = self.redact(exc.message)
        exc.args = (exc.message,)
        return exc

    def error(
        self,
        cls: type[E],
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> E:
        """An error of ``cls`` for this provider, its message prefixed and scrubbed of secrets."""
        text = self.redact(message)
        if not text.startswith(f"{self.provider}:"):
            text = f"{self.provider}: {text}"
        return cls(text, provider=self.provider, status=status, retry_after_s=retry_after_s)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=None, sock_connect=self.timeouts.connect_s
                ),
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                raise_for_status=False,
            )
        return self._session

    @contextlib.asynccontextmanager
    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        streaming: bool = False,
    ) -> AsyncIterator[Response]:
        """Open ``method url`` and yield the 2xx response; any other status raises via the parser.

        Pass a ``yarl.URL(..., encoded=True)`` to send a path byte for byte (signed requests).

        The wait for response headers is bounded by ``first_byte_s`` for streams; a unary
        generation's headers only come when the whole answer is ready, so there ``total_s`` bounds
        it. Leaving the block early (an exception, ``aclose()``, cancellation) closes the
        connection at once so the upstream sees the disconnect; a fully read body goes back to
        the pool.
        """
        async with self._semaphore:
            loop = asyncio.get_running_loop()
            total = self.timeouts.total_s
            deadline = loop.time() + total
            wait = self.timeouts.connect_s + self.timeouts.first_byte_s if streaming else total
            label = "first_byte_s" if streaming and wait < total else "total_s"
            wait = min(wait, total)
            try:
                async with asyncio.timeout(wait):
                    raw = await self._get_session().request(
                        method, url, json=json_body, data=data, headers=headers
                    )
            except aiohttp.ConnectionTimeoutError as exc:  # a TimeoutError too: check it first
                raise self.error(
                    ProviderTimeout, f"connect timed out after {self.timeouts.connect_s:g} s"
                ) from exc
            except TimeoutError as exc:
                raise self.error(
                    ProviderTimeout, f"no response within {wait:g} s ({label})"
                ) from exc
            except aiohttp.ClientError as exc:
                raise self.error(
                    ProviderConnectionError, f"{method} {url} failed: {type(exc).__name__}: {exc}"
                ) from exc
            response = Response(self, raw, deadline, self.timeouts.first_byte_s)
            try:
                if not 200 <= raw.status < 300:
                    body = (await response.read()).decode("utf-8", errors="replace")
                    raise self._parse_error(raw.status, self.redact(body), raw.headers)
                yield response
            except BaseException:
                raw.close()  # first: the upstream must see the disconnect at once
                await response.close_readers()
                raise
            else:
                await response.close_readers()
                raw.release()

    async def aclose(self) -> None:
        """Close the pooled session (idempotent)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
