"""The one error -> gRPC status table, with google.rpc details."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

import aurea
from aurea import errors as e
from aurea.api.status import code_for, to_status


def _details(status: grpc.Status) -> dict[str, object]:
    raw = dict(status.trailing_metadata)["grpc-status-details-bin"]
    st = status_pb2.Status.FromString(raw)
    out: dict[str, object] = {}
    for d in st.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
            error_details_pb2.QuotaFailure,
        ):
            if d.Is(cls.DESCRIPTOR):
                msg = cls()
                d.Unpack(msg)
                out[cls.__name__] = msg
    return out


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (e.InvalidRequest.field("prompt", "empty"), grpc.StatusCode.INVALID_ARGUMENT),
        (e.Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
        (e.ModelDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
        (e.UnknownModel("x"), grpc.StatusCode.NOT_FOUND),
        (e.RateLimited("x", retry_after_s=1), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (
            e.BudgetExceeded("x", job_id="j", spent_nanos=5, budget_nanos=4),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
        (e.Overloaded("x"), grpc.StatusCode.UNAVAILABLE),
        (e.ShuttingDown("x"), grpc.StatusCode.UNAVAILABLE),
        (e.ProvidersUnavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (e.ProviderServerError("x", provider="p"), grpc.StatusCode.UNAVAILABLE),
        (e.ProviderRateLimited("x", provider="p"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (e.ProviderAuthError("x", provider="p"), grpc.StatusCode.FAILED_PRECONDITION),
        (e.ContextLengthExceeded("x", provider="p"), grpc.StatusCode.INVALID_ARGUMENT),
        (e.ContentFiltered("x", provider="p"), grpc.StatusCode.FAILED_PRECONDITION),
        (e.Unimplemented("x"), grpc.StatusCode.UNIMPLEMENTED),
        (e.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_table(exc: e.AureaError, code: grpc.StatusCode) -> None:
    assert code_for(exc) is code
    status = to_status(exc)
    assert status.code is code
    info = _details(status)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.reason == exc.reason


def test_field_violations_and_retry_info() -> None:
    d = _details(to_status(e.InvalidRequest.field("max_tokens", "must be >= 0")))
    bad = d["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert bad.field_violations[0].field == "max_tokens"
    d = _details(to_status(e.Overloaded("full", retry_after_s=0.25)))
    retry = d["RetryInfo"]
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToMilliseconds() == 250


def test_a_bare_aurea_error_is_internal_with_generic_text() -> None:
    status = to_status(e.AureaError("secret detail"))
    assert status.code is grpc.StatusCode.INTERNAL and "secret" not in status.details


def test_public_surface_is_pinned() -> None:
    assert aurea.__all__ == [
        "AureaError",
        "ConfigError",
        "Settings",
        "build_settings",
        "load_settings",
    ]
