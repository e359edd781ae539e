"""The WHATWG event-stream parser: framing, fields, line endings, chunk boundaries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aurea.providers._sse import SSEEvent, SSEEventTooLarge, SSEParser, aiter_sse


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


# -- bounds ------------------------------------------------------------------------------------


def test_an_event_at_the_limit_passes_and_one_byte_more_does_not() -> None:
    parser = SSEParser(max_event_bytes=16)
    assert parser.feed(b"data: " + b"x" * 15 + b"\n\n") == [SSEEvent("x" * 15)]  # 15 + its LF
    with pytest.raises(SSEEventTooLarge, match="over 16 bytes"):
        parser.feed(b"data: " + b"x" * 16 + b"\n\n")


def test_data_lines_add_up_towards_the_limit() -> None:
    parser = SSEParser(max_event_bytes=100)
    parser.feed(b"data: " + b"y" * 40 + b"\n" + b"data: " + b"y" * 40 + b"\n")
    with pytest.raises(SSEEventTooLarge):
        parser.feed(b"data: " + b"y" * 40 + b"\n")
    fresh = SSEParser(max_event_bytes=100)
    for _ in range(10):  # the count restarts with each dispatched event
        assert fresh.feed(b"data: " + b"y" * 60 + b"\n\n") == [SSEEvent("y" * 60)]


@pytest.mark.parametrize("line", [b"data: ", b": a comment ", b"event: ", b"nocolon"])
def test_an_unterminated_line_is_refused_while_it_grows(line: bytes) -> None:
    parser = SSEParser(max_event_bytes=1000)
    parser.feed(line)
    with pytest.raises(SSEEventTooLarge):
        for _ in range(100):
            parser.feed(b"z" * 64)  # never a line end: nothing would ever dispatch


def test_a_long_line_in_many_small_chunks() -> None:
    # The line is kept as pieces until its end arrives (re-joining per chunk was quadratic).
    parser = SSEParser()
    assert parser.feed(b"data: ") == []
    for _ in range(20_000):
        assert parser.feed(b"a" * 100) == []
    assert len(parser._pending) == 20_001  # one piece per chunk, nothing joined yet
    assert parser.feed(b"\n\n") == [SSEEvent("a" * 2_000_000)]
    stream = [b"da", b"ta: ", *([b"b" * 1000] * 50), b"\r", b"\n", b"\r\n"]
    assert parse(*stream) == [SSEEvent("b" * 50_000)]


def test_an_empty_chunk_does_not_lose_a_pending_cr() -> None:
    # CR | (nothing) | LF: still one CRLF, not a CR and then an empty line that dispatches.
    assert parse(b"data: a\r", b"", b"\ndata: b\n\n") == [SSEEvent("a\nb")]


async def test_aiter_sse_raises_what_it_is_told() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"data: " + b"q" * 100

    with pytest.raises(LookupError):
        async for _ in aiter_sse(chunks(), max_event_bytes=10, too_large=lambda: LookupError()):
            pass
    with pytest.raises(SSEEventTooLarge):
        async for _ in aiter_sse(chunks(), max_event_bytes=10):
            pass
