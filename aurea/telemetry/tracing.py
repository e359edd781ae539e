"""OpenTelemetry traces: a span per call, opened by the edge and continuing the caller's W3C trace
context; a child span per upstream attempt, from ``TracingGuard`` (first in the guard list, so it
sees later guards' refusals); retries, fallbacks, breaker skips and budget stops as span events;
export over OTLP/HTTP when ``[telemetry] otlp_endpoint`` is set.

Optional: without the ``otel`` extra (``opentelemetry-sdk``) ``HAVE_OTEL`` is False,
``build_tracing`` returns None and nothing is traced; Aurea runs the same. With tracing off the
server registers neither the guard nor the span hooks, so an untraced call pays nothing.

Span attributes carry bounded, PII-free values only: operation, request id, catalog model and
provider names, error *reasons* (never messages, prompts, labels or upstream bodies), counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

import structlog

from aurea.errors import AureaError
from aurea.inference.guards import NOOP_PERMIT, AttemptInfo, Permit
from aurea.providers._base import Usage
from aurea.telemetry.redact import redact_text

if TYPE_CHECKING:
    from aurea.config import TelemetrySettings
    from aurea.inference.calls import CallRecord
    from aurea.routing import Candidate

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    HAVE_OTEL = True
except ImportError:  # the otel extra is not installed: traces are off
    HAVE_OTEL = False

__all__ = [
    "HAVE_OTEL",
    "CallTrace",
    "Tracing",
    "TracingGuard",
    "build_tracing",
    "current_call_trace",
    "inject_trace_headers",
    "trace_ids",
]

log = structlog.get_logger("aurea.telemetry")


class CallTrace:
    """The span of the call running in this task, and what the attempt guard remembers of the
    previous attempt (to tell a retry from a fallback)."""

    __slots__ = ("attempts", "last_error", "last_model", "span", "token")

    def __init__(self, span: Any, token: Token[Any] | None) -> None:
        self.span = span
        self.token = token
        self.attempts = 0
        self.last_model = ""
        self.last_error = ""


current_call_trace: ContextVar[CallTrace | None] = ContextVar("aurea_call_trace", default=None)


class Tracing:
    """A private ``TracerProvider`` (not the process-global one, so servers and tests do not
    share exporters) and the hooks the edge, the guard and the record sink call."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("aurea")
        self._propagator = TraceContextTextMapPropagator()

    # -- the call span (the edge) --------------------------------------------------------------
    def start_call(
        self, operation: str, headers: Mapping[str, str], request_id: str, transport: str
    ) -> CallTrace:
        """Open the call's span as a child of the caller's ``traceparent`` (if any) and make it
        current for the rest of this task."""
        parent = self._propagator.extract(headers)
        attributes: dict[str, str] = {
            # a caller may choose its request id: it could be an e-mail address
            "aurea.request_id": redact_text(request_id),
        }
        if transport == "http":  # the HTTP door's operations are "METHOD /route"
            verb, _, route = operation.partition(" ")
            attributes["http.request.method"] = verb
            attributes["http.route"] = route
        else:
            service, _, method = operation.rpartition("/")
            attributes |= {"rpc.system": transport, "rpc.service": service, "rpc.method": method}
        span = self.tracer.start_span(
            operation, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        call = CallTrace(span, token)
        current_call_trace.set(call)
        return call

    def end_call(self, call: CallTrace, status: str) -> None:
        span = call.span
        span.set_attribute("aurea.status", status)
        if status != "OK":
            span.set_status(Status(StatusCode.ERROR, status))
        span.end()
        if call.token is not None:
            otel_context.detach(call.token)
            call.token = None
        current_call_trace.set(None)

    # -- the call's outcome (a record sink) --------------------------------------------------
    def record_call(self, record: CallRecord) -> None:
        """Annotate the call's span with its record (a sink on ``Inference``)."""
        call = current_call_trace.get()
        if call is None or not call.span.is_recording():
            return
        span = call.span
        span.set_attributes(
            {
                "aurea.model": record.model,
                "aurea.provider": record.provider,
                "aurea.attempts": len(record.attempts),
                "aurea.fallbacks": record.fallbacks,
                "aurea.input_tokens": record.usage.input_tokens,
                "aurea.output_tokens": record.usage.output_tokens,
                "aurea.cost_nanos": record.cost_nanos,
                "aurea.outcome": record.outcome.value,
                "aurea.cache_hit": record.cache_hit,
            }
        )
        if record.ttft_s is not None:
            span.set_attribute("aurea.ttft_ms", round(record.ttft_s * 1e3, 3))
        if record.error:
            span.set_attribute("aurea.error", record.error)
        if record.finish_reason is not None:
            span.set_attribute("aurea.finish", record.finish_reason.value)
            if record.finish_reason.value == "budget_exceeded":
                span.add_event(
                    "budget_stop",
                    {"aurea.model": record.model, "aurea.cost_nanos": record.cost_nanos},
                )

    def shutdown(self) -> None:
        self.provider.shutdown()


class TracingGuard:
    """Opens a span per upstream attempt. Put it first: a refusal by a later guard (breaker,
    limiter, ledger) unwinds through its permit and ends the span with that reason."""

    name = "tracing"

    def __init__(self, tracing: Tracing) -> None:
        self._tracer = tracing.tracer

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> Permit:
        model = candidate.model
        ct = current_call_trace.get()
        number = 1
        if ct is not None and not ct.span.is_recording():
            return NOOP_PERMIT  # the call is not sampled: neither are its attempts
        if ct is not None:
            ct.attempts += 1
            number = ct.attempts
            if ct.last_error:
                if ct.last_model == model.name:
                    ct.span.add_event(
                        "retry",
                        {
                            "aurea.model": model.name,
                            "aurea.attempt": number,
                            "aurea.cause": ct.last_error,
                        },
                    )
                else:
                    ct.span.add_event(
                        "fallback",
                        {
                            "aurea.from_model": ct.last_model,
                            "aurea.to_model": model.name,
                            "aurea.attempt": number,
                            "aurea.cause": ct.last_error,
                        },
                    )
            ct.last_model = model.name
        span = self._tracer.start_span(
            f"attempt {model.name}",
            kind=SpanKind.CLIENT,
            attributes={
                "aurea.model": model.name,
                "aurea.provider": model.provider,
                "aurea.attempt": number,
            },
        )
        return _AttemptPermit(span, ct)


class _AttemptPermit:
    __slots__ = ("_call", "_span", "_token")

    def __init__(self, span: Any, call: CallTrace | None) -> None:
        self._span = span
        self._call = call
        self._token: Token[Any] | None = None

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        pass

    async def __aenter__(self) -> _AttemptPermit:
        # Current while the attempt runs, so the upstream request carries this span's context.
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None
        reason = ""
        if exc is not None:
            if isinstance(exc, AureaError):
                reason = exc.reason
            elif isinstance(exc, BaseException) and not isinstance(exc, Exception):
                reason = "CANCELLED"
            else:
                reason = "INTERNAL"
            span.set_attribute("aurea.error", reason)
            span.set_status(Status(StatusCode.ERROR, reason))
            if reason == "CIRCUIT_OPEN":
                span.add_event("breaker_skip")
            elif reason == "BUDGET_EXCEEDED":
                span.add_event("budget_refused")
            elif reason == "RATE_LIMITED":
                span.add_event("rate_limited")
        if self._call is not None:
            self._call.last_error = reason
        span.end()


# -- helpers ---------------------------------------------------------------------------------
def inject_trace_headers(headers: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """``headers`` plus the current span's ``traceparent`` (for the upstream HTTP request);
    ``headers`` itself when nothing is traced, so an untraced request pays one lookup."""
    if not HAVE_OTEL:
        return headers
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return headers
    out = dict(headers or {})
    TraceContextTextMapPropagator().inject(out)
    return out


def trace_ids() -> tuple[str, str] | None:
    """The current trace and span ids (hex), or None outside a traced span."""
    if not HAVE_OTEL:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def build_tracing(
    settings: TelemetrySettings,
    *,
    version: str,
    exporter: SpanExporter | None = None,
    batch: bool = False,
) -> Tracing | None:
    """Tracing per ``[telemetry]``: None (off) unless ``otlp_endpoint`` is set or an
    ``exporter`` is given (tests pass the SDK's in-memory exporter, exported synchronously
    unless ``batch``; OTLP export is always batched, off the event loop)."""
    if not HAVE_OTEL:
        if settings.otlp_endpoint:
            log.warning(
                "tracing_unavailable",
                hint="install aurea[otel] (opentelemetry-sdk) for traces; running without",
            )
        return None
    if exporter is None and not settings.otlp_endpoint:
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": "aurea", "service.version": version}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    if exporter is not None:
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
    else:
        otlp = _otlp_exporter(settings.otlp_endpoint)
        if otlp is None:
            return None
        provider.add_span_processor(BatchSpanProcessor(otlp))
    return Tracing(provider)


def _otlp_exporter(endpoint: str) -> SpanExporter | None:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )
    except ImportError:
        log.warning(
            "otlp_exporter_missing",
            hint="install opentelemetry-exporter-otlp-proto-http for OTLP export; traces are off",
        )
        return None
    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    exporter: SpanExporter = OTLPSpanExporter(endpoint=url)
    return exporter
