"""A Server-Sent Events parser that follows the WHATWG "event stream interpretation" rules.

It is incremental (feed it bytes as they arrive, chunk boundaries anywhere, even inside a CRLF or a
multi-byte UTF-8 character) and knows nothing of HTTP, so every adapter shares one tested parser.
Its work is linear in the input however the lines are split, and with ``max_event_bytes`` it
refuses an event (or one unterminated line) larger than that instead of buffering it.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEEventTooLarge", "SSEParser", "aiter_sse"]


class SSEEventTooLarge(ValueError):
    """An event (or a line still waiting for its end) grew past the parser's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an SSE event over {limit} bytes")
        self.limit = limit


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

    def __init__(self, *, max_event_bytes: int | None = None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # The unterminated line so far, as pieces: joining only when its end arrives keeps a
        # long line linear (re-concatenating it per chunk would be quadratic).
        self._pending: list[str] = []
        self._pending_len = 0
        self._data_len = 0  # characters in _data plus their joining newlines
        # Characters are counted: each is at least one byte, so the limit holds for bytes too.
        self._limit = max_event_bytes
        self._started = False
        self._pending_cr = False  # the last chunk ended in CR: a following LF belongs to it
        self._data: list[str] = []
        self._event = ""
        self._last_id = ""
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume ``chunk`` and return the events it completed (possibly none)."""
        text = self._decoder.decode(chunk)
        if not text:
            return []  # e.g. half a multi-byte character: nothing to look at yet
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = False
        if "\n" not in text and "\r" not in text:
            self._pending.append(text)
            self._pending_len += len(text)
            self._check()
            return []
        return self._consume(self._take_pending() + text)

    def close(self) -> bool:
        """End of stream: flush the decoder; True if an event was left unterminated (dropped)."""
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._consume(self._take_pending() + tail)
        return bool(self._pending) or bool(self._data) or bool(self._event)

    def _take_pending(self) -> str:
        text = "".join(self._pending)
        self._pending = []
        self._pending_len = 0
        return text

    def _check(self) -> None:
        if self._limit is not None and self._pending_len + self._data_len > self._limit:
            raise SSEEventTooLarge(self._limit)

    def _consume(self, text: str) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        start = 0
        length = len(text)
        # Each search resumes where it left off: rescanning for a CR that is not there from every
        # line start would be quadratic in a chunk of many LF-terminated lines.
        cr = text.find("\r")
        lf = text.find("\n")
        while start < length:
            if -1 < cr < start:
                cr = text.find("\r", start)
            if -1 < lf < start:
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
        if start < length:
            self._pending = [text[start:]]
            self._pending_len = length - start
            self._check()
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
            self._data_len += len(value) + 1
            self._check()
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
        self._data_len = 0
        self._event = ""
        self._retry = None
        return event


async def aiter_sse(
    chunks: AsyncIterable[bytes],
    *,
    max_event_bytes: int | None = None,
    too_large: Callable[[], BaseException] | None = None,
) -> AsyncGenerator[SSEEvent, None]:
    """Parse an async byte stream into events (an unterminated last event is dropped).

    An event over ``max_event_bytes`` raises ``too_large()`` (default: ``SSEEventTooLarge``).
    Closing it (``aclose``) closes ``chunks`` too when that is an async generator.
    """
    parser = SSEParser(max_event_bytes=max_event_bytes)
    try:
        try:
            async for chunk in chunks:
                for event in parser.feed(chunk):
                    yield event
            parser.close()
        except SSEEventTooLarge as exc:
            if too_large is None:
                raise
            raise too_large() from exc
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:  # closing the events closes their source generator too
            await close()
