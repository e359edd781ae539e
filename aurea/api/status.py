"""The one table from AureaError to gRPC status, with ``google.rpc`` error details.

The most specific class wins. Anything that is not an AureaError is a bug: INTERNAL with a
generic message; the traceback goes to the log only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from aurea import errors as e

DOMAIN = "aurea.v1"

# Ordered most specific first; the first isinstance match wins. Choices STYLE.md leaves open:
# an upstream that rejects Aurea's own credentials is FAILED_PRECONDITION (the server's
# configuration must change; retrying will not help, so not UNAVAILABLE); a context-length
# rejection is INVALID_ARGUMENT (the caller's request is too long) and a content-policy one
# FAILED_PRECONDITION (the request is well-formed but refused); an upstream 429 stays
# RESOURCE_EXHAUSTED with RetryInfo, like Aurea's own rate limits.
_TABLE: tuple[tuple[type[e.AureaError], grpc.StatusCode], ...] = (
    (e.InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (e.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (e.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (e.NotFound, grpc.StatusCode.NOT_FOUND),
    (e.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (e.Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
    (e.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (e.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (e.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (e.ContextLengthExceeded, grpc.StatusCode.INVALID_ARGUMENT),
    (e.ContentFiltered, grpc.StatusCode.FAILED_PRECONDITION),
    (e.UpstreamRejected, grpc.StatusCode.INVALID_ARGUMENT),
    (e.ProviderAuthError, grpc.StatusCode.FAILED_PRECONDITION),
    (e.ProviderRateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (e.ProviderError, grpc.StatusCode.UNAVAILABLE),
)


class _Status(NamedTuple):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


class Status(_Status, grpc.Status):
    """A grpc.Status whose trailers can carry more than the status details."""


def with_metadata(status: grpc.Status, *pairs: tuple[str, str]) -> grpc.Status:
    """``status`` with extra trailing metadata (abort_with_status replaces the trailers)."""
    return Status(status.code, status.details, (*status.trailing_metadata, *pairs))


def code_for(exc: e.AureaError) -> grpc.StatusCode:
    for cls, code in _TABLE:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def _pack(msg: object) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)  # type: ignore[arg-type]
    return a


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = math.floor(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))


def to_status(exc: e.AureaError) -> grpc.Status:
    """A grpc.Status (code, message, ``grpc-status-details-bin``) for ``exc``."""
    code = code_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        return internal_status("")
    metadata: dict[str, str] = {}
    details: list[any_pb2.Any] = []
    if isinstance(exc, e.ProviderError):
        metadata["provider"] = exc.provider
        if exc.status is not None:
            metadata["upstream_status"] = str(exc.status)
    if isinstance(exc, e.BudgetExceeded):
        metadata.update(
            job_id=exc.job_id, spent_nanos=str(exc.spent_nanos), budget_nanos=str(exc.budget_nanos)
        )
        details.append(
            _pack(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(
                            subject=f"job:{exc.job_id}", description=exc.message
                        )
                    ]
                )
            )
        )
    if isinstance(exc, e.RateLimited):
        details.append(
            _pack(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(
                            subject="rate", description=exc.message
                        )
                    ]
                )
            )
        )
    details.insert(
        0, _pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=metadata))
    )
    if isinstance(exc, e.InvalidRequest) and exc.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in exc.violations
                    ]
                )
            )
        )
    elif isinstance(exc, e.UnknownModel):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=exc.field, description=exc.message
                        )
                    ]
                )
            )
        )
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is None and code is grpc.StatusCode.UNAVAILABLE:
        retry_after = 1.0
    if retry_after is not None:
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=_duration(retry_after))))
    status = status_pb2.Status(code=code.value[0], message=exc.message, details=details)
    return rpc_status.to_status(status)


def internal_status(request_id: str) -> grpc.Status:
    msg = "internal error; this is a bug in Aurea"
    if request_id:
        msg += f" (request id {request_id}; the server log has the details)"
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN)
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=msg, details=[_pack(info)])
    return rpc_status.to_status(status)
