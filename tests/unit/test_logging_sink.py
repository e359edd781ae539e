"""The log sink: lines reach the descriptor in order; a reader that went away or stalled never
makes a write raise or wait; dropped lines are counted and announced; exit is bounded."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from aurea.telemetry import _sink
from aurea.telemetry._sink import LineSink, SinkLogger
from aurea.telemetry.logging import configure

SMALL_PIPE = 4096  # bytes; the smallest pipe Linux makes, so a stalled reader fills it at once


@contextlib.contextmanager
def pipe(size: int | None = None) -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    if size is not None:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, size)
    try:
        yield r, w
    finally:
        for fd in (r, w):
            with contextlib.suppress(OSError):
                os.close(fd)


def read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_lines_arrive_whole_and_in_order() -> None:
    with pipe() as (r, w):
        sink = LineSink(w)
        for i in range(500):
            sink.write(f"line {i}")
        assert sink.flush(timeout_s=30)
        sink.close()
        os.close(w)
        assert read_all(r).splitlines() == [f"line {i}" for i in range(500)]
        assert sink.dropped == 0 and sink.failures == 0


def test_a_reader_that_went_away_drops_lines_and_reports_once() -> None:
    with pipe() as (r, w), pipe() as (report_r, report_w):
        os.close(r)  # the reader is gone: every write fails with EPIPE
        sink = LineSink(w, report_fd=report_w)
        for i in range(3):
            sink.write(f"lost {i}")
            assert sink.flush(timeout_s=30)  # one failing batch per line
        sink.write("lost 3")
        sink.close()
        os.close(report_w)
        report = read_all(report_r)
    assert sink.dropped == 4
    assert sink.failures >= 3
    assert report.count("\n") == 1, report  # reported once, not once per failure
    assert "BrokenPipeError" in report and "dropping log lines" in report


def test_a_closed_descriptor_never_raises() -> None:
    r, w = os.pipe()
    os.close(r)
    with pipe() as (report_r, report_w):
        sink = LineSink(w, report_fd=report_w)
        os.close(w)  # EBADF from now on
        sink.write("after close")
        assert sink.flush(timeout_s=30)
        sink.close()
        os.close(report_w)
        assert "dropping log lines" in read_all(report_r)
    assert sink.dropped == 1


def test_a_stalled_reader_never_blocks_the_writer_and_drops_are_announced() -> None:
    line = "x" * 200
    with pipe(SMALL_PIPE) as (r, w):
        os.write(w, b"." * (SMALL_PIPE - 1) + b"\n")  # a reader that stopped: the pipe is full
        sink = LineSink(w, max_chars=10 * len(line), notice=lambda n: f"dropped {n}")
        # The writer thread blocks, the buffer fills, and then write() drops. None of these
        # calls may block (the test timeout is the bound).
        for _ in range(200):
            sink.write(line)
        assert sink.dropped > 0
        dropped = sink.dropped
        assert not sink.flush(timeout_s=0.05)  # still stalled: flush gives up, bounded

        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(read_all(r)))
        reader.start()
        sink.write("after the stall")
        assert sink.flush(timeout_s=30)
        sink.close()
        os.close(w)
        reader.join(30)
    lines = got[0].splitlines()[1:]  # after the line that filled the pipe
    assert f"dropped {dropped}" in lines  # once, with the count, after the drops
    lines.remove(f"dropped {dropped}")
    assert lines[-1] == "after the stall"
    assert lines.count(line) == 200 - dropped  # every accepted line arrived


def test_close_with_a_stalled_reader_returns() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    with pipe(SMALL_PIPE) as (_, w):
        os.write(w, b"." * SMALL_PIPE)  # full, and nobody reads
        # (The stuck writer fails with EPIPE once the pipe is closed below: report to nowhere.)
        sink = LineSink(w, report_fd=devnull)
        for _ in range(100):
            sink.write("y" * 200)
        sink.close(timeout_s=0.05)  # must return although the writer is stuck
        sink.write("after close")
        assert sink.dropped >= 1
    sink._thread.join(30)  # the closed pipe freed it
    os.close(devnull)


def test_a_failing_notice_renderer_does_not_kill_the_writer() -> None:
    def bad(_: int) -> str:
        raise RuntimeError("renderer bug")

    with pipe(SMALL_PIPE) as (r, w):
        os.write(w, b"." * (SMALL_PIPE - 1) + b"\n")
        sink = LineSink(w, max_chars=100, notice=bad)
        for _ in range(200):
            sink.write("z" * 60)
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(read_all(r)))
        reader.start()
        sink.write("still alive")
        assert sink.flush(timeout_s=30)
        sink.close()
        os.close(w)
        reader.join(30)
    lines = got[0].splitlines()
    assert any("log_lines_dropped" in x for x in lines)  # the plain fallback notice
    assert [x for x in lines if "log_lines_dropped" not in x][-1] == "still alive"


def test_structlog_writes_through_the_sink() -> None:
    with pipe() as (r, w):
        sink = LineSink(w)
        log = structlog.wrap_logger(
            SinkLogger(sink), processors=[structlog.processors.JSONRenderer()]
        )
        log.info("hello", n=1)
        log.error("oops")
        sink.close()
        os.close(w)
        events = [json.loads(line) for line in read_all(r).splitlines()]
    assert events == [{"n": 1, "event": "hello"}, {"event": "oops"}]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)


def test_configure_sends_structlog_and_stdlib_lines_to_stderr(
    restore_logging: None, capfd: pytest.CaptureFixture[str]
) -> None:
    configure("info", "json", stdlib=True)
    structlog.get_logger("t").info("from_structlog", k="v")
    logging.getLogger("some.library").warning("from %s", "stdlib")
    _sink.flush_all(timeout_s=30)
    lines: list[Any] = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x]
    ours = [e for e in lines if e["event"] == "from_structlog"]
    theirs = [e for e in lines if e["event"] == "from stdlib"]
    assert ours and ours[0]["k"] == "v" and ours[0]["level"] == "info"
    assert theirs and theirs[0]["logger"] == "some.library" and theirs[0]["level"] == "warning"


def test_grpcs_client_gone_error_becomes_one_info_line(
    restore_logging: None, capfd: pytest.CaptureFixture[str]
) -> None:
    configure("info", "json", stdlib=True)
    core = logging.getLogger("grpc._cython.cygrpc")
    try:
        raise RuntimeError('Failed "execute_batch"')
    except RuntimeError:
        core.exception(
            "ExecuteBatchError raised in core by servicer method [%s]",
            "/aurea.v1.InferenceService/Generate",
        )
    core.error("something else broke")
    _sink.flush_all(timeout_s=30)
    lines: list[Any] = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x]
    (gone,) = [e for e in lines if e["event"] == "rpc_answer_undelivered"]
    assert gone["level"] == "info" and "exception" not in gone
    assert gone["method"] == "/aurea.v1.InferenceService/Generate"
    (other,) = [e for e in lines if e["event"] == "something else broke"]
    assert other["level"] == "error"
