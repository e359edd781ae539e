"""The HTTP plumbing every remote adapter shares: one pooled aiohttp session per adapter, the
timeouts of ``ProviderSpec.timeouts``, a concurrency cap, the API key read from the env var the
spec names, and the single place where transport failures become ``aurea.errors`` classes.

Upstream bodies are read under caps, so a hostile or broken upstream cannot make Aurea buffer
without limit: an error body is read up to ``MAX_ERROR_BODY_BYTES`` (the rest is dropped with the
connection), a JSON reply up to ``MAX_BODY_BYTES``, and one Server-Sent Event up to
``MAX_EVENT_BYTES``; past the last two the call fails with a ProviderError that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import aiohttp
from yarl import URL

from aurea.errors import (
    ProviderAuthError,
    ProviderConnectionError,
    ProviderError,
    ProviderServerError,
    ProviderSilent,
    ProviderStalled,
    ProviderTimeout,
    StreamBroken,
)
from aurea.providers._base import ProviderSpec, Timeouts
from aurea.providers._http_errors import (
    MAX_BODY_BYTES,
    MAX_ERROR_BODY_BYTES,
    MAX_EVENT_BYTES,
    MAX_MESSAGE_CHARS,
    E,
    ErrorParser,
    clip,
    error_for_status,
    is_content_filter,
    is_context_length,
    json_object,
    parse_json,
)
from aurea.providers._http_errors import (
    model_ids as model_ids,  # re-exported: the adapters import it from here
)
from aurea.providers._retry import (
    MAX_RETRY_AFTER_S,
    clamp_retry_after,
    parse_duration,
    parse_retry_after,
    report_rate_headers,
    retry_after_from_headers,
)
from aurea.providers._sse import SSEEvent, aiter_sse
from aurea.providers._urls import safe_url, url_secrets
from aurea.telemetry.tracing import inject_trace_headers

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_ERROR_BODY_BYTES",
    "MAX_EVENT_BYTES",
    "MAX_MESSAGE_CHARS",
    "MAX_RETRY_AFTER_S",
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
    "safe_url",
]


class Response:
    """An open HTTP response whose body reads honour the first-byte / idle / total timeouts.

    ``first_by`` is the instant (loop time) by which the body's first byte must come: the same
    instant that bounded the headers, so headers that came late leave the body less time
    rather than a fresh ``first_byte_s``.
    """

    def __init__(
        self,
        client: HttpClient,
        raw: aiohttp.ClientResponse,
        deadline: float,
        first_by: float,
        timeouts: Timeouts,
    ) -> None:
        self._client = client
        self.raw = raw
        self.status = raw.status
        self.headers: Mapping[str, str] = raw.headers
        self._deadline = deadline
        self._first_by = first_by
        self._timeouts = timeouts
        self._readers: list[AsyncGenerator[Any, None]] = []

    def events(self) -> AsyncIterator[SSEEvent]:
        """The body as Server-Sent Events (closed with the response); an event over the client's
        ``max_event_bytes`` breaks the stream."""
        limit = self._client.max_event_bytes

        def too_large() -> ProviderError:
            return self._client.error(
                StreamBroken, f"upstream sent an SSE event over {limit} bytes"
            )

        reader = aiter_sse(self.chunks(), max_event_bytes=limit, too_large=too_large)
        self._readers.append(reader)
        return reader

    async def close_readers(self) -> None:
        """Finish the generators handed out by ``events()`` now, not whenever GC gets to them."""
        readers, self._readers = self._readers, []
        for reader in readers:
            with contextlib.suppress(Exception):
                await reader.aclose()

    async def chunks(
        self, *, broken: type[ProviderError] = StreamBroken
    ) -> AsyncGenerator[bytes, None]:
        """Body chunks as they arrive; a dropped connection raises ``broken``."""
        loop = asyncio.get_running_loop()
        limit = self._first_by - loop.time()
        silent: type[ProviderTimeout] = ProviderSilent
        label = "first_byte_s"
        while True:
            data = await self._read_some(limit, label, broken, silent)
            if not data:
                return
            limit, label, silent = self._timeouts.idle_s, "idle_s", ProviderStalled
            yield data

    async def read(self, *, limit: int | None = None, truncate: bool = False) -> bytes:
        """The whole body, at most ``limit`` bytes (default: the client's ``max_body_bytes``).

        A longer body raises ProviderServerError, or with ``truncate`` yields its first ``limit``
        bytes and leaves the rest unread. A drop mid-body is a connection error: no reply came.
        """
        cap = self._client.max_body_bytes if limit is None else limit
        declared = self.raw.content_length
        if not truncate and declared is not None and declared > cap:
            raise self._too_big(cap)
        parts: list[bytes] = []
        size = 0
        async with contextlib.aclosing(self.chunks(broken=ProviderConnectionError)) as chunks:
            async for chunk in chunks:
                size += len(chunk)
                if size > cap:
                    if not truncate:
                        raise self._too_big(cap)
                    parts.append(chunk[: len(chunk) - (size - cap)])
                    break
                parts.append(chunk)
        return b"".join(parts)

    def _too_big(self, cap: int) -> ProviderError:
        return self._client.error(
            ProviderServerError, f"the reply body is over {cap} bytes", status=self.status
        )

    async def json(self) -> Any:
        body = await self.read()
        return parse_json(
            body,
            provider=self._client.provider,
            what="the response body",
            broken=ProviderServerError,
        )

    async def _read_some(
        self,
        limit: float,
        label: str,
        broken: type[ProviderError],
        silent: type[ProviderTimeout],
    ) -> bytes:
        remaining = self._deadline - asyncio.get_running_loop().time()
        if remaining < limit:
            limit, label, silent = remaining, "total_s", ProviderTimeout
        limit = max(limit, 0.0)
        try:
            async with asyncio.timeout(limit):
                return await self.raw.content.readany()
        except TimeoutError as exc:
            raise self._client.error(
                silent, f"no data from the upstream for {limit:.3g} s ({label})"
            ) from exc
        except aiohttp.ClientError as exc:  # payload, connection, content-encoding errors
            raise self._client.error(
                broken, f"the connection dropped mid-response ({type(exc).__name__})"
            ) from exc


class HttpClient:
    """One adapter's HTTP side: a lazily created pooled session and the error boundary.

    ``parse_error`` turns a non-2xx reply into the adapter's most specific error; it sees the body
    with every secret this client knows replaced by ``***``.
    """

    max_error_body_bytes = MAX_ERROR_BODY_BYTES
    max_body_bytes = MAX_BODY_BYTES
    max_event_bytes = MAX_EVENT_BYTES

    def __init__(self, spec: ProviderSpec, *, default_base_url: str, parse_error: ErrorParser):
        self.provider = spec.name
        self.timeouts = spec.timeouts
        self.base_url = (spec.base_url or default_base_url).rstrip("/")
        self.api_key_env = spec.api_key_env
        # Read once, at construction; a missing variable only fails when a call needs the key.
        self._api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        self._secrets: list[str] = []
        self.add_secret(self._api_key)
        # A password or key inside a configured URL is as secret as the API key.
        urls = [self.base_url, *(v for v in spec.options.values() if isinstance(v, str))]
        for url in urls:
            for secret in url_secrets(url) if "://" in url else ():
                self.add_secret(secret)
        self._semaphore = asyncio.Semaphore(max(1, spec.max_concurrency))
        self._max_connections = max(1, spec.max_concurrency)
        self._parse_error = parse_error
        self._session: aiohttp.ClientSession | None = None
        self._connect = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=self.timeouts.connect_s
        )

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
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)  # a longer secret may contain a shorter

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def scrub(self, exc: E) -> E:
        """``exc`` with its message bounded and scrubbed of secrets and its retry hint clamped
        (for errors built from stream events and error bodies)."""
        exc.message = self.redact(clip(exc.message))
        exc.args = (exc.message,)
        exc.retry_after_s = clamp_retry_after(exc.retry_after_s)
        return exc

    def error(
        self,
        cls: type[E],
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> E:
        """An error of ``cls`` for this provider, its message prefixed, bounded and scrubbed of
        secrets, its retry hint clamped."""
        text = self.redact(clip(message))
        if not text.startswith(f"{self.provider}:"):
            text = f"{self.provider}: {text}"
        return cls(
            text,
            provider=self.provider,
            status=status,
            retry_after_s=clamp_retry_after(retry_after_s),
        )

    def _connect_timeout(self, limits: Timeouts) -> aiohttp.ClientTimeout:
        if limits.connect_s == self._connect.sock_connect:
            return self._connect
        return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=limits.connect_s)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._connect,
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
        timeouts: Timeouts | None = None,
    ) -> AsyncIterator[Response]:
        """Open ``method url`` and yield the 2xx response; any other status raises via the parser.

        Pass a ``yarl.URL(..., encoded=True)`` to send a path byte for byte (signed requests).

        ``timeouts`` (default: the provider's) are each honoured as given, counted from the
        request's start, none added to another: ``connect_s`` bounds opening the connection
        (``ProviderSilent``); for streams, ``first_byte_s`` bounds the headers and the body's
        first byte together (``ProviderSilent``), ``idle_s`` each later gap
        (``ProviderStalled``); a unary generation's headers only come when the whole answer is
        ready, so there ``total_s`` bounds them. Leaving the block early (an exception,
        ``aclose()``, cancellation) closes the connection at once so the upstream sees the
        disconnect; a fully read body goes back to the pool.
        """
        limits = timeouts or self.timeouts
        headers = inject_trace_headers(headers)  # the call's trace continues upstream
        async with self._semaphore:
            loop = asyncio.get_running_loop()
            start = loop.time()
            total = limits.total_s
            deadline = start + total
            wait = min(limits.first_byte_s, total) if streaming else total
            label = "first_byte_s" if streaming and wait < total else "total_s"
            late = ProviderSilent if label == "first_byte_s" else ProviderTimeout
            connect = self._connect_timeout(limits)
            try:
                async with asyncio.timeout(wait):
                    raw = await self._get_session().request(
                        method, url, json=json_body, data=data, headers=headers, timeout=connect
                    )
            except aiohttp.ConnectionTimeoutError as exc:  # a TimeoutError too: check it first
                raise self.error(
                    ProviderSilent, f"connect timed out after {limits.connect_s:g} s (connect_s)"
                ) from exc
            except TimeoutError as exc:
                raise self.error(late, f"no response within {wait:g} s ({label})") from exc
            except aiohttp.ClientError as exc:
                raise self.error(
                    ProviderConnectionError,
                    f"{method} {safe_url(str(url))} failed: {type(exc).__name__}: {exc}",
                ) from exc
            except (ValueError, TypeError, UnicodeError) as exc:  # e.g. a header aiohttp refuses
                raise self.error(
                    ProviderConnectionError,
                    f"{method} {safe_url(str(url))} could not be sent: {type(exc).__name__}",
                ) from exc
            response = Response(self, raw, deadline, start + limits.first_byte_s, limits)
            try:
                # The rate limiter hears what the upstream says of its own limits (any status).
                await report_rate_headers(raw.status, raw.headers)
                if not 200 <= raw.status < 300:
                    raise await self._status_error(response)
                yield response
            except BaseException:
                raw.close()  # first: the upstream must see the disconnect at once
                await response.close_readers()
                raise
            else:
                await response.close_readers()
                raw.release()

    async def _status_error(self, response: Response) -> ProviderError:
        """The error for a non-2xx reply, from at most ``max_error_body_bytes`` of its body."""
        try:
            body = await response.read(limit=self.max_error_body_bytes, truncate=True)
        except ProviderError:
            body = b""  # the status says enough; a body that never comes must not hide it
        text = self.redact(body.decode("utf-8", errors="replace"))
        try:
            error = self._parse_error(response.status, text, response.headers)
        except Exception:  # the adapter's parser choked on a hostile body: the status still counts
            error = error_for_status(self.provider, response.status, text.strip())
        return self.scrub(error)

    async def aclose(self) -> None:
        """Close the pooled session (idempotent)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
