"""Where log lines go: a bounded buffer drained to a file descriptor by one writer thread, so a
log write never raises into a call and never blocks the event loop.

A reader that went away (``aurea serve | head -2``: EPIPE), a closed descriptor or a full disk
makes writes fail: those lines are dropped and counted, and the first failure is reported once on
stderr. A reader that stalls (a paused pager, a backed-up log shipper) blocks only the writer
thread: lines queue up to ``max_chars`` and past that are dropped and counted, and the writer
says how many once it can write again. At exit, pending lines get a bounded time to drain.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import threading
from collections.abc import Callable
from typing import Any

DEFAULT_MAX_CHARS = 4 << 20  # pending text held for a stalled reader before lines are dropped
EXIT_FLUSH_S = 2.0  # how long exit waits for pending lines before giving up on a stalled reader

Notice = Callable[[int], str]


def _plain_notice(dropped: int) -> str:
    return f'{{"event": "log_lines_dropped", "level": "warning", "count": {dropped}}}'


class LineSink:
    """Writes whole lines to ``fd`` from a daemon thread. ``write`` never raises and never waits
    on the reader; ``flush`` waits (bounded) until what was written so far reached ``fd``."""

    def __init__(
        self,
        fd: int,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        notice: Notice = _plain_notice,
        report_fd: int = 2,
    ) -> None:
        self.fd = fd
        self.max_chars = max_chars
        self.notice = notice  # renders the "N lines were dropped" line
        self._report_fd = report_fd
        self._cond = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._pending: list[str] = []
        self._pending_chars = 0
        self._queued = 0  # lines accepted into the buffer, ever
        self._done = 0  # of those, lines written or dropped by the writer
        self._dropped_full = 0  # dropped because the buffer was full, not yet announced
        self._closing = False
        self.dropped = 0  # every line that never reached fd (full buffer or failed write)
        self.failures = 0  # failed writes (each may have carried several lines)
        self._reported = False
        self._thread = threading.Thread(target=self._run, name="aurea-log-writer", daemon=True)
        self._thread.start()

    def write(self, line: str) -> None:
        """Queue one line (without its newline). Never raises; drops the line if the buffer
        is full or the sink is closed."""
        with self._cond:
            if self._closing or self._pending_chars + len(line) > self.max_chars:
                self._dropped_full += 1
                self.dropped += 1
                return
            wake = not self._pending
            self._pending.append(line)
            self._pending_chars += len(line) + 1
            self._queued += 1
        if wake:  # a non-empty buffer already has a wake-up on its way
            self._wake.set()

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until every line queued so far was written (or dropped);
        return whether that happened."""
        with self._cond:
            target = self._queued
            self._wake.set()
            return self._cond.wait_for(lambda: self._done >= target, timeout=timeout_s)

    def close(self, timeout_s: float = EXIT_FLUSH_S) -> None:
        """Flush (bounded), then stop the writer. Later writes are dropped. Idempotent."""
        drained = self.flush(timeout_s)
        with self._cond:
            self._closing = True
        self._wake.set()
        if drained:  # else the writer is stuck on a stalled reader: leave it (a daemon) be
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._cond:
                batch, self._pending, self._pending_chars = self._pending, [], 0
                dropped, self._dropped_full = self._dropped_full, 0
                closing = self._closing
            lines = len(batch)
            if dropped:
                batch.append(self._render_notice(dropped))
            ok = not batch or self._write_all(("\n".join(batch) + "\n").encode("utf-8", "replace"))
            with self._cond:
                if not ok:
                    self.dropped += lines
                self._done += lines
                self._cond.notify_all()
            if closing:
                return

    def _render_notice(self, dropped: int) -> str:
        try:
            return self.notice(dropped)
        except Exception:  # a renderer bug must not kill the writer thread
            return _plain_notice(dropped)

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:  # an inherited O_NONBLOCK descriptor: wait until writable
                select.select([], [self.fd], [], 1.0)
                continue
            except InterruptedError:
                continue
            except (OSError, ValueError) as exc:
                self.failures += 1
                self._report(exc)
                return False
            view = view[n:]
        return True

    def _report(self, exc: BaseException) -> None:
        if self._reported:
            return
        self._reported = True
        msg = f"aurea: cannot write logs ({type(exc).__name__}: {exc}); dropping log lines\n"
        with contextlib.suppress(OSError, ValueError):  # stderr may be the broken one
            os.write(self._report_fd, msg.encode("utf-8", "replace"))


class SinkLogger:
    """A structlog logger that hands each rendered line to a ``LineSink``."""

    __slots__ = ("_sink",)

    def __init__(self, sink: LineSink) -> None:
        self._sink = sink

    def msg(self, message: str) -> None:
        self._sink.write(message)

    log = debug = info = warn = warning = error = err = critical = fatal = exception = msg


class SinkLoggerFactory:
    """``structlog.configure(logger_factory=SinkLoggerFactory(sink))``."""

    def __init__(self, sink: LineSink) -> None:
        self._logger = SinkLogger(sink)

    def __call__(self, *args: Any) -> SinkLogger:
        return self._logger


_sinks: dict[int, LineSink] = {}


def sink_for(fd: int) -> LineSink:
    """The process's one sink for ``fd``, created on first use and flushed (bounded) at exit."""
    sink = _sinks.get(fd)
    if sink is None:
        sink = _sinks[fd] = LineSink(fd)
        atexit.register(sink.close)
    return sink


def flush_all(timeout_s: float) -> None:
    """Flush every sink (each bounded by ``timeout_s``), so a message written directly to
    stderr after this lands after the log lines that preceded it."""
    for sink in list(_sinks.values()):
        sink.flush(timeout_s)
