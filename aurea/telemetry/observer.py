"""The edge's telemetry hook: per RPC, ``aurea_requests_total``/``aurea_request_latency_seconds``,
the in-flight inference gauge, and the call's span (continuing the caller's trace context).

``Edge.open_call`` calls ``opened`` and ``Edge.finish_call`` calls ``finished``, exactly once
each per call and in the call's own task, so the call's state lives in a context variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

from aurea.telemetry import metrics
from aurea.telemetry.tracing import CallTrace, Tracing

__all__ = ["CallTelemetry", "method_label"]

_PREFIX = "aurea.v1."


def method_label(operation: str) -> str:
    """``aurea.v1.InferenceService/Generate`` -> ``InferenceService/Generate``."""
    return operation[len(_PREFIX) :] if operation.startswith(_PREFIX) else operation


# The HTTP door's inference routes (its operations are "METHOD /route").
HTTP_INFERENCE = frozenset(
    {"POST /v1/chat/completions", "POST /v1/embeddings", "POST /v1/messages"}
)


def is_inference(operation: str) -> bool:
    """Inference calls: gRPC ``InferenceService`` methods and the HTTP door's inference routes."""
    return "InferenceService/" in operation or operation in HTTP_INFERENCE


class _Open:
    __slots__ = ("inference", "method", "trace")

    def __init__(self, method: str, inference: bool, trace: CallTrace | None) -> None:
        self.method = method
        self.inference = inference
        self.trace = trace


_open: ContextVar[_Open | None] = ContextVar("aurea_edge_call", default=None)


class CallTelemetry:
    """One per server; shared by its transports through the ``Edge``."""

    __slots__ = ("_labels", "_metrics", "_tracing")

    def __init__(self, *, metrics_on: bool = True, tracing: Tracing | None = None) -> None:
        self._metrics = metrics_on
        self._tracing = tracing
        # operation -> (method label, is inference); operations are the registered RPCs
        self._labels: dict[str, tuple[str, bool]] = {}

    def opened(
        self, operation: str, headers: Mapping[str, str], request_id: str, transport: str
    ) -> None:
        labels = self._labels.get(operation)
        if labels is None:
            labels = self._labels[operation] = (method_label(operation), is_inference(operation))
        method, inference = labels
        inference = inference and self._metrics
        trace = None
        if self._tracing is not None:
            trace = self._tracing.start_call(operation, headers, request_id, transport)
        _open.set(_Open(method, inference, trace))
        if inference:
            metrics.inference_started()

    def finished(self, status: str, latency_s: float) -> None:
        state = _open.get()
        if state is None:
            return
        _open.set(None)
        if self._metrics:
            metrics.rpc_finished(state.method, status, latency_s)
            if state.inference:
                metrics.inference_ended()
        if state.trace is not None and self._tracing is not None:
            self._tracing.end_call(state.trace, status)
