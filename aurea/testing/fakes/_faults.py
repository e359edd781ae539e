"""The faults a fake upstream can be told to produce (``FaultKind``, ``Fault``) and scripted
verbatim replies (``Scripted``): what a broken or hostile upstream does to one request."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Fault", "FaultKind", "Scripted", "StreamAborted"]


class FaultKind(enum.StrEnum):
    """A failure a fake can be told to produce for one request."""

    RATE_LIMIT = "rate_limit"  # HTTP 429 with Retry-After
    SERVER_ERROR = "server_error"  # HTTP 500
    OVERLOADED = "overloaded"  # HTTP 503 (Anthropic: 529 overloaded_error)
    CONTEXT_LENGTH = "context_length"  # HTTP 400, the provider's context-length error
    CONTENT_FILTER = "content_filter"  # the provider's content-policy answer
    UNAUTHORIZED = "unauthorized"  # the provider's wrong-key answer
    CUT_STREAM = "cut_stream"  # a stream closed mid-way, without its terminal event
    STREAM_ERROR = "stream_error"  # an in-stream error event after some tokens
    MALFORMED = "malformed"  # a stream event whose JSON is broken
    EARLY_EOF = "early_eof"  # a stream that ends cleanly (HTTP-wise) before its terminal event
    SLOW_FIRST_BYTE = "slow_first_byte"  # response headers only after ``delay_s``
    # Resilience faults (every fake, every path):
    SILENT = "silent"  # the request is read, then nothing at all until the client leaves
    RESET = "reset"  # the connection is reset (TCP RST) before any reply
    # Stream faults after which the stream goes on (if the client is still there):
    SLOW_FIRST_TOKEN = "slow_first_token"  # headers at once, the first token after ``delay_s``
    STALL = "stall"  # silence for ``delay_s`` after ``after_tokens`` tokens
    MALFORMED_CHUNK = "malformed_chunk"  # one broken chunk after ``after_tokens`` tokens


_STREAM_FAULTS = frozenset(
    {FaultKind.CUT_STREAM, FaultKind.STREAM_ERROR, FaultKind.MALFORMED, FaultKind.EARLY_EOF}
)
_INTERLUDES = frozenset({FaultKind.SLOW_FIRST_TOKEN, FaultKind.STALL, FaultKind.MALFORMED_CHUNK})


@dataclass(slots=True)
class Fault:
    """One injected failure; the next request takes it from ``FakeServer.faults``."""

    kind: FaultKind
    # The Retry-After header value sent with RATE_LIMIT; "" sends none (and no other reset hint).
    retry_after: str = "1"
    after_tokens: int = 2  # stream faults: how many tokens are sent before the fault
    delay_s: float = 1.0  # SLOW_FIRST_BYTE, SLOW_FIRST_TOKEN, STALL: how long the silence lasts


@dataclass(slots=True)
class Scripted:
    """A reply sent verbatim, instead of the fake's own, to the next request whose path contains
    ``path``: what a broken or hostile upstream sends. The fake writes ``body``, then each of
    ``frames`` (one write each), then ``filler`` repeated until ``filler_bytes`` were written, then
    ``tail``, stopping as soon as the client goes away. ``bytes_sent`` and ``finished`` tell what
    it managed to write (the client's reading stopped early when ``finished`` stays False)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    frames: tuple[bytes, ...] = ()
    filler: bytes = b""
    filler_bytes: int = 0
    tail: bytes = b""
    path: str = ""
    bytes_sent: int = 0
    finished: bool = False

    @classmethod
    def json(cls, payload: Any, *, status: int = 200, path: str = "", **headers: str) -> Scripted:
        """A JSON body (``NaN``/``Infinity`` allowed, as Python's parser accepts them)."""
        return cls(status=status, body=json.dumps(payload).encode(), path=path, headers=headers)

    @classmethod
    def sse(cls, *events: Any, path: str = "", done: bytes = b"") -> Scripted:
        """``data:`` frames (a str or bytes is sent as the data itself, anything else as JSON;
        a ``(name, payload)`` tuple adds an ``event:`` line), then ``done`` verbatim."""
        frames = []
        for item in events:
            name = ""
            if isinstance(item, tuple):
                name, item = item
            data = item if isinstance(item, str | bytes) else json.dumps(item)
            data = data.encode() if isinstance(data, str) else data
            prefix = f"event: {name}\n".encode() if name else b""
            frames.append(prefix + b"data: " + data + b"\n\n")
        if done:
            frames.append(done)
        return cls(frames=tuple(frames), path=path)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        default_type = "text/event-stream" if self.frames else "application/json"
        response = web.StreamResponse(
            status=self.status, headers={"Content-Type": default_type, **self.headers}
        )
        await response.prepare(request)
        try:
            for piece in (self.body, *self.frames):
                await self._write(request, response, piece)
            block = self.filler * max(1, (64 * 1024) // max(len(self.filler), 1))
            head = self.bytes_sent
            while self.filler and self.bytes_sent - head < self.filler_bytes:
                await self._write(request, response, block)
            await self._write(request, response, self.tail)
            await response.write_eof()
        except (StreamAborted, ConnectionError):
            return response
        self.finished = True
        return response

    async def _write(self, request: web.Request, response: web.StreamResponse, data: bytes) -> None:
        if not data:
            return
        transport = request.transport
        if transport is None or transport.is_closing():
            raise StreamAborted
        await response.write(data)
        self.bytes_sent += len(data)


class StreamAborted(Exception):
    """Raised inside a fake's handler when the client disconnected mid-stream."""
