"""The client's error tree: every failed call raises one of these, carrying the ``google.rpc``
details Aurea attaches (ErrorInfo reason and metadata, BadRequest field violations, RetryInfo
delay, QuotaFailure violations) and the call's request id.

::

    AureaError                      .code .message .reason .field_violations .retry_delay_s ...
    ├── InvalidArgument             INVALID_ARGUMENT (field_violations name the bad fields)
    ├── Unauthenticated             UNAUTHENTICATED
    ├── PermissionDenied            PERMISSION_DENIED
    ├── NotFound                    NOT_FOUND
    ├── FailedPrecondition          FAILED_PRECONDITION
    ├── ResourceExhausted           RESOURCE_EXHAUSTED
    │   ├── RateLimited             reason RATE_LIMITED / UPSTREAM_RATE_LIMITED
    │   └── BudgetExceeded          reason BUDGET_EXCEEDED
    ├── Unavailable                 UNAVAILABLE (retried by the client, RetryInfo honoured)
    ├── DeadlineExceeded            DEADLINE_EXCEEDED
    ├── Cancelled                   CANCELLED
    ├── Unimplemented               UNIMPLEMENTED
    └── InternalError               INTERNAL, UNKNOWN and anything else (a bug somewhere)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "AureaError",
    "BudgetExceeded",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "QuotaViolation",
    "RateLimited",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "from_rpc_error",
]

_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request: its path (``messages[2].role``) and what is wrong."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class QuotaViolation:
    """One quota a call ran into (``job:JOB_ID`` for a budget, ``rate`` for a rate limit)."""

    subject: str
    description: str


@dataclass(slots=True, kw_only=True)
class _Details:
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: tuple[FieldViolation, ...] = ()
    retry_delay_s: float | None = None
    quota_violations: tuple[QuotaViolation, ...] = ()


class AureaError(Exception):
    """A failed call: ``code`` is the gRPC status code's name (``"INVALID_ARGUMENT"``)."""

    code = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
        retry_delay_s: float | None = None,
        quota_violations: tuple[QuotaViolation, ...] = (),
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations = field_violations
        self.retry_delay_s = retry_delay_s
        self.quota_violations = quota_violations
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    @property
    def fields(self) -> list[str]:
        """The paths of the fields the server named as bad."""
        return [v.field for v in self.field_violations]


class InvalidArgument(AureaError):
    code = "INVALID_ARGUMENT"


class Unauthenticated(AureaError):
    code = "UNAUTHENTICATED"


class PermissionDenied(AureaError):
    code = "PERMISSION_DENIED"


class NotFound(AureaError):
    code = "NOT_FOUND"


class FailedPrecondition(AureaError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(AureaError):
    code = "RESOURCE_EXHAUSTED"


class RateLimited(ResourceExhausted):
    pass


class BudgetExceeded(ResourceExhausted):
    pass


class Unavailable(AureaError):
    code = "UNAVAILABLE"


class DeadlineExceeded(AureaError):
    code = "DEADLINE_EXCEEDED"


class Cancelled(AureaError):
    code = "CANCELLED"


class Unimplemented(AureaError):
    code = "UNIMPLEMENTED"


class InternalError(AureaError):
    code = "INTERNAL"


_BY_CODE: dict[str, type[AureaError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Unimplemented,
    )
}
_BY_REASON: dict[str, type[AureaError]] = {
    "BUDGET_EXCEEDED": BudgetExceeded,
    "RATE_LIMITED": RateLimited,
    "UPSTREAM_RATE_LIMITED": RateLimited,
}


def _decode(raw: bytes) -> _Details:
    out = _Details()
    try:
        status = status_pb2.Status.FromString(raw)
    except Exception:  # a garbled trailer must not hide the call's own error
        return out
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out.reason, out.domain, out.metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.field_violations = tuple(
                FieldViolation(v.field, v.description) for v in bad.field_violations
            )
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            out.retry_delay_s = retry.retry_delay.ToTimedelta().total_seconds()
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            out.quota_violations = tuple(
                QuotaViolation(v.subject, v.description) for v in quota.violations
            )
    return out


def _metadata(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items or ():
        out.setdefault(key, value)
    return out


def from_rpc_error(exc: grpc.RpcError, request_id: str = "") -> AureaError:
    """The typed error for a failed grpc call (sync or asyncio)."""
    code_obj: Any = exc.code() if hasattr(exc, "code") else None
    code = code_obj.name if code_obj is not None else "UNKNOWN"
    message: str = (exc.details() if hasattr(exc, "details") else None) or code
    trailers = _metadata(exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else ())
    raw = trailers.get(_DETAILS_KEY)
    details = _decode(raw) if isinstance(raw, bytes) else _Details()
    rid = trailers.get("x-request-id")
    cls = _BY_REASON.get(details.reason) or _BY_CODE.get(code, InternalError)
    if cls is RateLimited and code != "RESOURCE_EXHAUSTED":
        cls = _BY_CODE.get(code, InternalError)
    return cls(
        message,
        code=code,
        reason=details.reason,
        domain=details.domain,
        metadata=details.metadata,
        field_violations=details.field_violations,
        retry_delay_s=details.retry_delay_s,
        quota_violations=details.quota_violations,
        request_id=rid if isinstance(rid, str) else request_id,
    )
