"""A Server-Sent Events parser that follows the WHATWG "event stream interpretation" rules.

It is incremental (feed it bytes as they arrive, chunk boundaries anywhere, even inside a CRLF or a
multi-byte UTF-8 character) and knows nothing of HTTP, so every adapter shares one tested parser.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser", "aiter_sse"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. ``event`` defaults to ``"message"`` as the spec says."""

    data: str
    event: str = "message"
    id: str = ""  # the last event id in force when this event was dispatched
    retry_ms: int | None = None  # a reconnection time the server asked for, if any


class SSEParser:
    """Turns a byte stream into ``SSEEvent`` s.

    Spec points honoured: a leading BOM is dropped; lines end at CRLF, LF or CR; ``:`` starts a
    comment; ``field:value`` loses one space after the colon; a line without a colon is a field
    with an empty value; ``data`` lines join with LF; a blank line dispatches (nothing happens
    when the data buffer is empty); ``id`` containing NUL is ignored; ``retry`` must be all
    ASCII digits; unknown fields are ignored; an unterminated event at end of stream is dropped.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._pending_cr = False  # the last chunk ended in CR: a following LF belongs to it
        self._data: list[str] = []
        self._event = ""
        self._last_id = ""
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume ``chunk`` and return the events it completed (possibly none)."""
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = False
        return self._consume(self._buffer + text)

    def close(self) -> bool:
        """End of stream: flush the decoder; True if an event was left unterminated (dropped)."""
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._consume(self._buffer + tail)
        return bool(self._buffer) or bool(self._data) or bool(self._event)

    def _consume(self, text: str) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        start = 0
        length = len(text)
        while start < length:
            cr = text.find("\r", start)
            lf = text.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, nxt = lf, lf + 1
            elif cr + 1 < length:
                end, nxt = cr, cr + 2 if text[cr + 1] == "\n" else cr + 1
            else:  # CR is the last char we have: the LF that may follow is in the next chunk
                end, nxt = cr, cr + 1
                self._pending_cr = True
            event = self._line(text[start:end])
            if event is not None:
                events.append(event)
            start = nxt
        self._buffer = text[start:]
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(
            data="\n".join(self._data),
            event=self._event or "message",
            id=self._last_id,
            retry_ms=self._retry,
        )
        self._data = []
        self._event = ""
        self._retry = None
        return event


async def aiter_sse(chunks: AsyncIterable[bytes]) -> AsyncGenerator[SSEEvent, None]:
    """Parse an async byte stream into events (an unterminated last event is dropped).

    Closing it (``aclose``) closes ``chunks`` too when that is an async generator.
    """
    parser = SSEParser()
    try:
        async for chunk in chunks:
            for event in parser.feed(chunk):
                yield event
        parser.close()
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:  # closing the events closes their source generator too
            await close()
