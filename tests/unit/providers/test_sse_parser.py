"""The WHATWG event-stream parser: framing, fields, line endings, chunk boundaries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aurea.providers._sse import SSEEvent, SSEParser, aiter_sse


def parse(*chunks: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    parser.close()
    return events


def test_data_only_events() -> None:
    assert parse(b"data: one\n\ndata: two\n\n") == [SSEEvent("one"), SSEEvent("two")]


def test_named_events_and_multiline_data() -> None:
    stream = b'event: message_start\ndata: {"a":\ndata: 1}\n\n'
    assert parse(stream) == [SSEEvent('{"a":\n1}', event="message_start")]


def test_event_name_resets_after_dispatch() -> None:
    events = parse(b"event: ping\ndata: x\n\ndata: y\n\n")
    assert [e.event for e in events] == ["ping", "message"]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_line_endings(newline: bytes) -> None:
    stream = newline.join([b"event: e", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert parse(stream) == [SSEEvent("a\nb", event="e"), SSEEvent("c")]


def test_crlf_split_across_chunks_is_one_line_ending() -> None:
    # A CR at the end of one chunk and the LF starting the next must not make an empty line.
    assert parse(b"data: a\r", b"\ndata: b\r\n\r\n") == [SSEEvent("a\nb")]


def test_every_chunk_boundary() -> None:
    stream = "event: x\r\ndata: héllo\r\n: comment\r\nid: 7\r\n\r\ndata: second\n\n".encode()
    expected = [SSEEvent("héllo", event="x", id="7"), SSEEvent("second", id="7")]
    for cut in range(len(stream) + 1):
        assert parse(stream[:cut], stream[cut:]) == expected, cut
    assert parse(*[stream[i : i + 1] for i in range(len(stream))]) == expected


def test_comments_are_ignored_and_keepalives_dispatch_nothing() -> None:
    assert parse(b": ping\n\n: another\ndata: x\n\n") == [SSEEvent("x")]


def test_field_parsing_rules() -> None:
    # No space after the colon; only one leading space removed; a line without a colon is a
    # field with an empty value; unknown fields are ignored.
    stream = b"data:a\ndata:  b\ndata\nfoo: bar\n\n"
    assert parse(stream) == [SSEEvent("a\n b\n")]


def test_empty_data_buffer_does_not_dispatch() -> None:
    assert parse(b"event: lonely\n\ndata: x\n\n") == [SSEEvent("x")]


def test_id_and_retry() -> None:
    events = parse(b"id: 1\nretry: 3000\ndata: a\n\nid: bad\0id\nretry: soon\ndata: b\n\n")
    assert events == [SSEEvent("a", id="1", retry_ms=3000), SSEEvent("b", id="1")]


def test_leading_bom_is_dropped_once() -> None:
    assert parse(b"\xef\xbb", b"\xbfdata: x\n\n") == [SSEEvent("x")]
    assert parse("\ufeffdata: x\n\n\ufeffdata: y\n\n".encode()) == [SSEEvent("x")]


def test_unterminated_event_is_dropped_and_reported() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: complete\n\ndata: partial") == [SSEEvent("complete")]
    assert parser.close() is True
    clean = SSEParser()
    clean.feed(b"data: x\n\n")
    assert clean.close() is False


def test_invalid_utf8_is_replaced() -> None:
    assert parse(b"data: \xff\n\n") == [SSEEvent("\ufffd")]


async def test_aiter_sse() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"data: [DO", b"NE]\n", b"\n", b"data: tail"):
            yield part

    assert [e async for e in aiter_sse(chunks())] == [SSEEvent("[DONE]")]
