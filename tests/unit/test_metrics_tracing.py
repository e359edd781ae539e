"""Tracing helpers and the log pipeline's telemetry processors, without a server: tracing is off
by default, the traceparent injected upstream is the current span's, trace ids reach log lines,
and the configured pipeline redacts tracebacks and standard-library lines."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aurea.config import TelemetrySettings
from aurea.inference.calls import AttemptRecord, CallKind, CallOutcome, CallRecord
from aurea.providers._base import FinishReason
from aurea.telemetry import tracing
from aurea.telemetry.logging import add_trace_id, configure, log_call_events


def test_tracing_is_off_by_default() -> None:
    assert tracing.build_tracing(TelemetrySettings(), version="t") is None


def test_an_otlp_endpoint_without_the_exporter_package_leaves_tracing_off() -> None:
    settings = TelemetrySettings(otlp_endpoint="http://127.0.0.1:4318")
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:
        with structlog.testing.capture_logs() as logs:
            assert tracing.build_tracing(settings, version="t") is None
        assert [e["event"] for e in logs] == ["otlp_exporter_missing"]
    else:
        built = tracing.build_tracing(settings, version="t")
        assert built is not None
        built.shutdown()


def test_injected_headers_carry_the_current_span() -> None:
    exporter = InMemorySpanExporter()
    traced = tracing.build_tracing(TelemetrySettings(), version="t", exporter=exporter)
    assert traced is not None
    headers = {"Authorization": "Bearer k"}
    assert tracing.inject_trace_headers(headers) is headers  # no span: untouched, no copy
    call = traced.start_call(
        "aurea.v1.InferenceService/Generate",
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        "rid",
        "grpc",
    )
    try:
        out = tracing.inject_trace_headers(headers)
        assert out is not None and out["Authorization"] == "Bearer k"
        ids = tracing.trace_ids()
        assert ids is not None
        assert out["traceparent"] == f"00-{ids[0]}-{ids[1]}-01"
        assert ids[0] == "4bf92f3577b34da6a3ce929d0e0e4736"
        event = add_trace_id(None, "info", {"event": "x"})
        assert event["trace_id"] == ids[0] and event["span_id"] == ids[1]
    finally:
        traced.end_call(call, "OK")
    assert tracing.trace_ids() is None
    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})["aurea.status"] == "OK"
    traced.shutdown()


def test_an_unsampled_call_opens_no_attempt_span() -> None:
    exporter = InMemorySpanExporter()
    settings = TelemetrySettings(trace_sample_ratio=0.0)
    traced = tracing.build_tracing(settings, version="t", exporter=exporter)
    assert traced is not None
    call = traced.start_call("aurea.v1.InferenceService/Generate", {}, "rid", "grpc")
    try:
        assert not call.span.is_recording()
    finally:
        traced.end_call(call, "OK")
    assert exporter.get_finished_spans() == ()
    traced.shutdown()


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    buffer = io.StringIO()
    configure(level="info", fmt="json", stdlib=True)  # redaction on by default
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=buffer), cache_logger_on_first_use=False
    )
    try:
        yield buffer
    finally:
        structlog.configure(**saved)
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
        logging.captureWarnings(False)


def test_tracebacks_are_redacted(json_logs: io.StringIO) -> None:
    log = structlog.get_logger("aurea.test")
    try:
        raise ValueError("upstream said: contact jane@example.org from 203.0.113.9")
    except ValueError:
        log.exception("boom")
    line: dict[str, Any] = json.loads(json_logs.getvalue().splitlines()[-1])
    assert "jane@example.org" not in json.dumps(line)
    assert "203.0.113.9" not in json.dumps(line)
    assert "ValueError" in line["exception"]


def test_standard_library_lines_are_redacted(json_logs: io.StringIO) -> None:
    from aurea.telemetry._sink import sink_for
    from aurea.telemetry.logging import STDERR_FD

    read_fd, write_fd = os.pipe()
    sink = sink_for(STDERR_FD)
    saved_fd = sink.fd
    sink.fd = write_fd
    try:
        logging.getLogger("aiohttp.access").warning("peer 198.51.100.7 sent card 4111111111111111")
        assert sink.flush(5.0)
    finally:
        sink.fd = saved_fd
        os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        text = pipe.read()
    assert "peer" in text
    assert "198.51.100.7" not in text and "4111111111111111" not in text


def test_fallback_and_budget_lines_from_the_record() -> None:
    fell_back = CallRecord(
        request_id="r",
        kind=CallKind.UNARY,
        model="b",
        fallbacks=1,
        outcome=CallOutcome.OK,
        attempts=[
            AttemptRecord(model="a", provider="p", error="UPSTREAM_TIMEOUT"),
            AttemptRecord(model="a", provider="p", error="UPSTREAM_TIMEOUT"),  # a retry
            AttemptRecord(model="b", provider="q"),
        ],
    )
    stopped = CallRecord(
        request_id="s",
        kind=CallKind.STREAM,
        model="b",
        job_id="j",
        cost_nanos=7,
        finish_reason=FinishReason.BUDGET_EXCEEDED,
        outcome=CallOutcome.OK,
    )
    refused = CallRecord(request_id="t", kind=CallKind.UNARY, model="b", error="BUDGET_EXCEEDED")
    plain = CallRecord(request_id="u", kind=CallKind.UNARY, model="b", outcome=CallOutcome.OK)
    with structlog.testing.capture_logs() as logs:
        for record in (fell_back, stopped, refused, plain):
            log_call_events(record)
    assert [(e["event"], e.get("from_model"), e.get("job_id")) for e in logs] == [
        ("upstream_fallback", "a", None),
        ("budget_stop", None, "j"),
        ("budget_refused", None, ""),
    ]
    assert logs[0]["to_model"] == "b" and logs[0]["cause"] == "UPSTREAM_TIMEOUT"
