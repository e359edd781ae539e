"""structlog setup: context vars first (request id, trace id), one JSON object per line off a TTY
(console on one), and the PII-redaction processor (on by default, ``[log] redact_pii``).

Lines go to stderr through a ``LineSink`` (see ``_sink``): logging never raises into a call and
never blocks the event loop, whatever happens to the reader of stderr.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from typing import Any

import structlog

from aurea.inference.calls import CallRecord, current_record, log_fields
from aurea.providers._base import FinishReason
from aurea.runtime.context import request_id_var
from aurea.telemetry._sink import LineSink, SinkLoggerFactory, sink_for
from aurea.telemetry.redact import redact_event
from aurea.telemetry.tracing import trace_ids

STDERR_FD = 2  # the descriptor, not sys.stderr: test harnesses swap the object


def redact_pii(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask personal data and secrets anywhere in an event, nested values included (see
    ``aurea.telemetry.redact``). Runs after exceptions are formatted, so tracebacks are masked
    too."""
    return redact_event(event)


class _SinkHandler(logging.Handler):
    """Routes the standard library's log records (asyncio, grpc, aiohttp) to the same sink, so
    they cannot block the loop on a stalled stderr either."""

    def __init__(self, sink: LineSink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.write(self.format(record))
        except Exception:
            self.handleError(record)


class _ClientGone(logging.Filter):
    """grpc's core logs an error with a traceback when it cannot send an answer because the
    client already left (its deadline passed or it cancelled while the handler finished): a
    normal event under load, already counted in the call's ``rpc_finished`` line. It becomes
    one info line, ``rpc_answer_undelivered`` with the method, so errors stay worth paging on."""

    _PREFIX = "ExecuteBatchError raised in core by servicer method"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("grpc.") and record.levelno >= logging.ERROR:
            message = record.getMessage()
            if message.startswith(self._PREFIX):
                record.msg = "rpc_answer_undelivered"
                record.args = None
                record.levelno, record.levelname = logging.INFO, "INFO"
                record.exc_info = record.exc_text = None
                record.__dict__["method"] = message[len(self._PREFIX) :].strip(" []")
        return True


def add_request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Name the call a line belongs to even where the edge's log context is not bound (inside
    an actor handling the call's message: the runtime restores ``request_id_var`` there)."""
    if "request_id" not in event:
        rid = request_id_var.get()
        if rid:
            event["request_id"] = rid
    return event


def add_call_record(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The canonical ``rpc_finished`` line carries the call's record (model, provider,
    attempts, tokens, cost, outcome, labels), rendered only when the line is written."""
    if event.get("event") == "rpc_finished":
        record = current_record.get()
        if record is not None:
            for k, v in log_fields(record).items():
                event.setdefault(k, v)
    return event


def add_trace_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The trace and span ids of the span current where the line is logged (when traced), so a
    log line leads to its trace."""
    if "trace_id" not in event:
        ids = trace_ids()
        if ids is not None:
            event["trace_id"], event["span_id"] = ids
    return event


_calls_log = structlog.get_logger("aurea.inference")


def log_call_events(record: CallRecord) -> None:
    """A record sink: one line per fallback the call made (from, to, cause) and one for a
    budget stop or refusal, written in the call's task (so with its request and trace ids).
    Costs nothing for a call without either."""
    if record.fallbacks:
        prev = None
        for a in record.attempts:
            if prev is not None and prev.error and a.model != prev.model:
                _calls_log.info(
                    "upstream_fallback", from_model=prev.model, to_model=a.model, cause=prev.error
                )
            prev = a
    if record.finish_reason is FinishReason.BUDGET_EXCEEDED:
        _calls_log.warning(
            "budget_stop", model=record.model, job_id=record.job_id, cost_nanos=record.cost_nanos
        )
    elif record.error == "BUDGET_EXCEEDED":
        _calls_log.warning("budget_refused", model=record.model, job_id=record.job_id)


def context_processors() -> list[Any]:
    """The processors that add a line's call context (also for ``capture_logs`` in tests)."""
    return [structlog.contextvars.merge_contextvars, add_request_id, add_trace_id, add_call_record]


def configure(
    level: str = "info",
    fmt: str = "auto",
    redact: bool = True,
    *,
    stdlib: bool = False,
    cache_loggers: bool = True,
) -> None:
    """Configure structlog for the ``aurea`` process: ``level`` and up, ``fmt`` json, console or
    auto (console on a TTY), to stderr through the process's ``LineSink``. With ``stdlib``, the
    standard library's logging and warnings go the same way (a process-wide change, so only
    the command line asks for it). ``cache_loggers`` binds each module's logger to this
    configuration on first use (fast; right for ``aurea serve``); a host process that embeds
    Aurea passes False, so its own later logging setup still reaches Aurea's loggers."""
    use_console = fmt == "console" or (fmt == "auto" and os.isatty(STDERR_FD))
    processors: list[Any] = [
        *context_processors(),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if redact or not use_console:  # redaction must see tracebacks as text
        processors.append(structlog.processors.format_exc_info)
    if redact:
        processors.append(redact_pii)
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    processors.append(renderer)
    sink = sink_for(STDERR_FD)
    sink.notice = lambda n: str(
        renderer(None, "warning", {"event": "log_lines_dropped", "level": "warning", "count": n})
    )
    if stdlib:
        _route_stdlib(sink, renderer, level, redact)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=SinkLoggerFactory(sink),
        cache_logger_on_first_use=cache_loggers,
    )


def _route_stdlib(sink: LineSink, renderer: Any, level: str, redact: bool) -> None:
    chain: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(allow=("method",)),  # see _ClientGone
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if redact:  # asyncio, grpc and aiohttp lines may quote addresses and payloads too
        chain.append(redact_pii)
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=chain,
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _SinkHandler)]:
        root.removeHandler(old)
    handler = _SinkHandler(sink)
    handler.addFilter(_ClientGone())
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(max(logging.getLevelNamesMapping()[level.upper()], logging.INFO))
    logging.captureWarnings(True)
