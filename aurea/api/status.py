"""The one table from AureaError to what a client receives: a gRPC status with ``google.rpc``
details, and the HTTP status and OpenAI-style error body the HTTP door sends.

The most specific class wins (the first class of the error's MRO that has a row). Anything that
is not an AureaError is a bug: INTERNAL / 500 with a generic message; the traceback goes to the
log only. Every reply is bounded: a message to 1 KiB, field violations to 20 (and 1 KiB), the
serialized details to 3 KiB, so the trailers stay well under grpc's 8 KiB metadata limit (past
it the client gets RESOURCE_EXHAUSTED "Stream removed" instead of the error). Retry hints are
clamped to [0.1 s, 1 h]; a garbage hint (nan, inf, negative) never breaks the reply.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from aurea import errors as e
from aurea.config import ConfigError

__all__ = [
    "ANTHROPIC_TYPES",
    "DOMAIN",
    "Row",
    "Status",
    "anthropic_error",
    "bound_text",
    "code_for",
    "internal_status",
    "openai_error",
    "retry_delay_s",
    "row_for",
    "to_status",
    "with_metadata",
]

DOMAIN = "aurea.v1"
C = grpc.StatusCode


class Row(NamedTuple):
    """How one error class reaches a client: gRPC code, HTTP status, OpenAI ``type``/``code``."""

    grpc: grpc.StatusCode
    http: int
    openai_type: str
    openai_code: str | None = None


INTERNAL = Row(C.INTERNAL, 500, "api_error")

# Choices worth a word:
# - An upstream that rejects Aurea's own credentials is FAILED_PRECONDITION / 502: the server's
#   configuration must change, the caller's request is fine, retrying will not help.
# - Context length is INVALID_ARGUMENT (the caller's request is too long); content policy is
#   FAILED_PRECONDITION (well-formed but refused); both are HTTP 400 with OpenAI's codes.
# - An upstream 429 is RESOURCE_EXHAUSTED / 429 like Aurea's own limits, so a client backs off
#   the same way whoever refused; other provider failures are 502 (504 for a timeout).
# - The Unavailable family (Overloaded included) is 503: that is what OpenAI sends when busy and
#   what every OpenAI SDK retries with backoff; 529 is Anthropic's and unknown to OpenAI clients.
# - 5xx bodies say "api_error", 4xx ones the specific type OpenAI-compatible servers use.
# - A ConfigError reaching a call means this server's configuration cannot serve it: 503.
_TABLE: dict[type[BaseException], Row] = {
    e.AureaError: INTERNAL,
    e.InvalidRequest: Row(C.INVALID_ARGUMENT, 400, "invalid_request_error"),
    e.UnsupportedFeature: Row(
        C.INVALID_ARGUMENT, 400, "invalid_request_error", "unsupported_feature"
    ),
    e.Unauthenticated: Row(C.UNAUTHENTICATED, 401, "authentication_error", "invalid_api_key"),
    e.PermissionDenied: Row(C.PERMISSION_DENIED, 403, "permission_error"),
    e.ModelDenied: Row(C.PERMISSION_DENIED, 403, "permission_error", "model_not_allowed"),
    e.NotFound: Row(C.NOT_FOUND, 404, "not_found_error"),
    e.UnknownModel: Row(C.NOT_FOUND, 404, "not_found_error", "model_not_found"),
    e.FailedPrecondition: Row(C.FAILED_PRECONDITION, 400, "invalid_request_error"),
    e.Unimplemented: Row(C.UNIMPLEMENTED, 501, "api_error", "not_implemented"),
    e.ResourceExhausted: Row(C.RESOURCE_EXHAUSTED, 429, "rate_limit_error"),
    e.RateLimited: Row(C.RESOURCE_EXHAUSTED, 429, "rate_limit_error", "rate_limit_exceeded"),
    e.BudgetExceeded: Row(C.RESOURCE_EXHAUSTED, 429, "insufficient_quota", "insufficient_quota"),
    e.Unavailable: Row(C.UNAVAILABLE, 503, "api_error"),
    e.Overloaded: Row(C.UNAVAILABLE, 503, "api_error", "overloaded"),
    e.DeadlineExceeded: Row(C.DEADLINE_EXCEEDED, 504, "api_error", "timeout"),
    e.ProviderError: Row(C.UNAVAILABLE, 502, "api_error"),
    e.ProviderAuthError: Row(C.FAILED_PRECONDITION, 502, "api_error"),
    e.ProviderRateLimited: Row(
        C.RESOURCE_EXHAUSTED, 429, "rate_limit_error", "rate_limit_exceeded"
    ),
    e.ProviderTimeout: Row(C.UNAVAILABLE, 504, "api_error", "timeout"),
    e.ProviderSilent: Row(C.UNAVAILABLE, 504, "api_error", "timeout"),
    e.ProviderStalled: Row(C.UNAVAILABLE, 504, "api_error", "timeout"),
    e.UpstreamRejected: Row(C.INVALID_ARGUMENT, 400, "invalid_request_error"),
    e.ContextLengthExceeded: Row(
        C.INVALID_ARGUMENT, 400, "invalid_request_error", "context_length_exceeded"
    ),
    e.ContentFiltered: Row(C.FAILED_PRECONDITION, 400, "invalid_request_error", "content_filter"),
    ConfigError: Row(C.FAILED_PRECONDITION, 503, "api_error", "config_error"),
}
_ROWS: dict[type[BaseException], Row] = {}  # per concrete class, filled on first use

# The Anthropic Messages door's column: Anthropic's error ``type`` for each HTTP status of the
# table above (a status not listed is a 5xx: ``api_error``). Two rows differ from the table:
# Overloaded is Anthropic's own 529 ``overloaded_error`` (which its SDKs retry), and a body too
# large is 413 ``request_too_large`` (the door answers that one itself). An exhausted budget
# stays 429 ``rate_limit_error`` (Anthropic's own spend limit is that too), with
# ``x-should-retry: false`` so the SDKs do not retry it.
ANTHROPIC_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
ANTHROPIC_OVERLOADED = 529

MAX_MESSAGE_BYTES = 1024  # of UTF-8 (512 when not ASCII: grpc-message escapes each such byte x3)
MAX_FIELD_BYTES = 128  # a violation's field path, an ErrorInfo metadata value
MAX_DESCRIPTION_BYTES = 256  # one violation's or quota failure's description
MAX_VIOLATIONS = 20
MAX_VIOLATION_BYTES = 1024  # all listed violations together
MAX_DETAILS_BYTES = 3072  # the serialized google.rpc.Status (base64 in the trailer: ~4 KiB)
MIN_RETRY_S = 0.1  # a sooner retry cannot help a remote client and feeds retry storms
MAX_RETRY_S = 3600.0
DEFAULT_RETRY_S = 1.0  # an UNAVAILABLE without its own hint, or a hint that is not a number


def row_for(exc: BaseException) -> Row:
    """The table row for ``exc``: its most specific class with a row; INTERNAL for non-Aurea."""
    cls = type(exc)
    row = _ROWS.get(cls)
    if row is None:
        row = INTERNAL
        for base in cls.__mro__:
            found = _TABLE.get(base)
            if found is not None:
                row = found
                break
        _ROWS[cls] = row
    return row


def code_for(exc: e.AureaError) -> grpc.StatusCode:
    return row_for(exc).grpc


class _Status(NamedTuple):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


class Status(_Status, grpc.Status):
    """A grpc.Status whose trailers can carry more than the status details."""


def with_metadata(status: grpc.Status, *pairs: tuple[str, str]) -> grpc.Status:
    """``status`` with extra trailing metadata (abort_with_status replaces the trailers)."""
    return Status(status.code, status.details, (*status.trailing_metadata, *pairs))


def bound_text(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``text`` cut to ``limit`` bytes of UTF-8 (half that when not ASCII), ending in
    "... (N more characters)" when cut. Lone surrogates become "?" so protobuf accepts it."""
    if text.isascii():
        if len(text) <= limit:
            return text
        keep = text[: limit - 32]
    else:
        limit //= 2
        head = text[: limit + 1].encode("utf-8", "replace")
        if len(text) <= limit and len(head) <= limit:
            return head.decode("utf-8")
        keep = head[: limit - 32].decode("utf-8", "ignore")
    return f"{keep}... ({len(text) - len(keep)} more characters)"


def retry_delay_s(exc: BaseException) -> float | None:
    """The retry hint to send for ``exc`` in seconds, clamped to [MIN_RETRY_S, MAX_RETRY_S];
    None when the error carries none (an UNAVAILABLE always gets one)."""
    raw: Any = getattr(exc, "retry_after_s", None)
    if raw is None:
        return DEFAULT_RETRY_S if row_for(exc).grpc is C.UNAVAILABLE else None
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        value = math.nan
    if math.isnan(value):
        value = DEFAULT_RETRY_S
    return min(max(value, MIN_RETRY_S), MAX_RETRY_S)


def _pack(msg: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(
        seconds=whole, nanos=min(int((seconds - whole) * 1e9), 999_999_999)
    )


def _violations(
    pairs: list[tuple[str, str]],
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    out: list[error_details_pb2.BadRequest.FieldViolation] = []
    used = 0
    for field, description in pairs:
        if len(out) == MAX_VIOLATIONS or used >= MAX_VIOLATION_BYTES:
            break
        v = error_details_pb2.BadRequest.FieldViolation(
            field=bound_text(field, MAX_FIELD_BYTES),
            description=bound_text(description, MAX_DESCRIPTION_BYTES),
        )
        used += v.ByteSize()
        out.append(v)
    if len(out) < len(pairs):
        out.append(
            error_details_pb2.BadRequest.FieldViolation(
                field="",
                description=f"and {len(pairs) - len(out)} more field violations, not listed",
            )
        )
    return out


def _quota(subject: str, description: str) -> any_pb2.Any:
    violation = error_details_pb2.QuotaFailure.Violation(
        subject=bound_text(subject, MAX_FIELD_BYTES),
        description=bound_text(description, MAX_DESCRIPTION_BYTES),
    )
    return _pack(error_details_pb2.QuotaFailure(violations=[violation]))


def _budget_quota(exc: e.BudgetExceeded) -> any_pb2.Any:
    """The job's figures, readable (``description``) and typed: ``quota_value`` is the budget,
    ``quota_dimensions`` name the job and hold what it spent and has reserved, in nano-dollars."""
    # Figures first: a long job id is what gets cut when the text is bounded.
    description = (
        f"budget {exc.budget_nanos}, spent {exc.spent_nanos}, reserved {exc.reserved_nanos} "
        f"nano-dollars, job {exc.job_id!r}"
    )
    violation = error_details_pb2.QuotaFailure.Violation(
        subject=bound_text(f"job:{exc.job_id}", MAX_FIELD_BYTES),
        description=bound_text(description, MAX_DESCRIPTION_BYTES),
        api_service=DOMAIN,
        quota_metric=f"{DOMAIN}/job_budget_nanos",
        quota_id="JobBudget",
        quota_dimensions={
            "job_id": bound_text(exc.job_id, MAX_FIELD_BYTES),
            "spent_nanos": str(exc.spent_nanos),
            "reserved_nanos": str(exc.reserved_nanos),
        },
        quota_value=exc.budget_nanos,
    )
    return _pack(error_details_pb2.QuotaFailure(violations=[violation]))


def to_status(exc: e.AureaError) -> grpc.Status:
    """A grpc.Status (code, bounded message, ``grpc-status-details-bin``) for ``exc``."""
    row = row_for(exc)
    if row is INTERNAL:
        return internal_status("")
    message = bound_text(exc.message)
    metadata: dict[str, str] = {}
    if isinstance(exc, e.ProviderError):
        metadata["provider"] = exc.provider
        if exc.status is not None:
            metadata["upstream_status"] = str(exc.status)
    if isinstance(exc, e.RateLimited) and exc.model:
        metadata.update(model=exc.model, limit=exc.limit)
    if isinstance(exc, e.BudgetExceeded):
        metadata.update(
            job_id=exc.job_id,
            spent_nanos=str(exc.spent_nanos),
            budget_nanos=str(exc.budget_nanos),
            reserved_nanos=str(exc.reserved_nanos),
        )
    info = error_details_pb2.ErrorInfo(
        reason=exc.reason,
        domain=DOMAIN,
        metadata={k: bound_text(v, MAX_FIELD_BYTES) for k, v in metadata.items()},
    )
    # Most useful first: if the backstop below must drop something, it drops from the end.
    details = [_pack(info)]
    retry = retry_delay_s(exc)
    if retry is not None:
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=_duration(retry))))
    if isinstance(exc, e.BudgetExceeded):
        details.append(_budget_quota(exc))
    elif isinstance(exc, e.RateLimited):
        subject = f"model:{exc.model}:{exc.limit}" if exc.model else "rate"
        details.append(_quota(subject, message))
    pairs: list[tuple[str, str]] = []
    if isinstance(exc, e.InvalidRequest):
        pairs = [(v.field, v.description) for v in exc.violations]
    elif isinstance(exc, e.UnknownModel):
        pairs = [(exc.field, message)]
    if pairs:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=_violations(pairs))))
    status = status_pb2.Status(code=row.grpc.value[0], message=message, details=details)
    while status.ByteSize() > MAX_DETAILS_BYTES and len(status.details) > 1:
        del status.details[-1]
    return rpc_status.to_status(status)


def internal_status(request_id: str) -> grpc.Status:
    """INTERNAL with a generic message naming the request id (the log has the details)."""
    msg = "internal error; this is a bug in Aurea"
    if request_id:
        msg += f" (request id {request_id}; the server log has the details)"
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN)
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=msg, details=[_pack(info)])
    return rpc_status.to_status(status)


def openai_error(exc: BaseException, request_id: str = "") -> tuple[int, dict[str, Any]]:
    """The HTTP status and OpenAI-style body (``{"error": {message, type, param, code}}``) for
    ``exc``; anything that is not an AureaError gets the generic INTERNAL text. The door adds a
    ``Retry-After`` header from ``retry_delay_s``."""
    row = row_for(exc)
    if row is INTERNAL or not isinstance(exc, e.AureaError):
        message = internal_status(request_id).details
        return 500, {
            "error": {"message": message, "type": "api_error", "param": None, "code": None}
        }
    param: str | None = None
    if isinstance(exc, e.InvalidRequest) and exc.violations:
        param = bound_text(exc.violations[0].field, MAX_FIELD_BYTES)
    elif isinstance(exc, e.UnknownModel):
        param = exc.field
    body = {
        "message": bound_text(exc.message),
        "type": row.openai_type,
        "param": param,
        "code": row.openai_code,
    }
    return row.http, {"error": body}


def anthropic_error(exc: BaseException, request_id: str = "") -> tuple[int, dict[str, Any]]:
    """The HTTP status and Anthropic-style body (``{"type": "error", "error": {type, message},
    "request_id"}``) for ``exc``, from the same rows as every other door; anything that is not
    an AureaError is the generic INTERNAL text (500 ``api_error``). Aurea's field name for a bad
    request rides in ``error.param`` (Anthropic's clients ignore what they do not know)."""
    row = row_for(exc)
    if row is INTERNAL or not isinstance(exc, e.AureaError):
        error: dict[str, Any] = {
            "type": "api_error",
            "message": internal_status(request_id).details,
        }
        return 500, {"type": "error", "error": error, "request_id": request_id}
    status = ANTHROPIC_OVERLOADED if isinstance(exc, e.Overloaded) else row.http
    error = {
        "type": ANTHROPIC_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        ),
        "message": bound_text(exc.message),
    }
    if isinstance(exc, e.InvalidRequest) and exc.violations:
        error["param"] = bound_text(exc.violations[0].field, MAX_FIELD_BYTES)
    elif isinstance(exc, e.UnknownModel):
        error["param"] = exc.field
    return status, {"type": "error", "error": error, "request_id": request_id}
