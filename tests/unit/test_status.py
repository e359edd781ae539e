"""The one error -> gRPC status table, with google.rpc details."""

from __future__ import annotations

import math

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

import aurea
from aurea import errors as e
from aurea.api.status import code_for, openai_error, retry_delay_s, row_for, to_status


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


def _all_subclasses(cls: type) -> set[type]:
    out: set[type] = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _all_subclasses(sub)
    return out


def _instance(cls: type[e.AureaError]) -> e.AureaError:
    """An instance of ``cls`` built from its constructor's required arguments."""
    import inspect

    kwargs: dict[str, object] = {}
    args: list[object] = []
    for p in list(inspect.signature(cls).parameters.values()):
        if p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value: object = 1 if p.name.endswith(("_nanos", "_s")) else "x"
        if p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    return cls(*args, **kwargs)  # type: ignore[arg-type]


def _import_all_of_aurea() -> None:
    """Import every module of the package, so every AureaError subclass anywhere is defined."""
    import importlib
    import pkgutil

    for mod in pkgutil.walk_packages(aurea.__path__, "aurea."):
        if mod.name.startswith("aurea.v1"):
            continue
        try:
            importlib.import_module(mod.name)
        except ModuleNotFoundError as exc:  # an optional extra that is not installed
            assert exc.name and not exc.name.startswith("aurea"), exc


def test_every_aurea_error_subclass_maps_to_a_real_status() -> None:
    import aurea.config

    _import_all_of_aurea()
    classes = _all_subclasses(e.AureaError)
    assert len(classes) >= 25 and aurea.config.ConfigError in classes
    bad = {}
    for cls in classes:
        exc = _instance(cls)
        row = row_for(exc)
        status = to_status(exc)
        http, body = openai_error(exc)
        if (
            row.grpc in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
            or status.code is not row.grpc
            or http == 500
            or http != row.http
            or body["error"]["type"] == ""
        ):
            bad[cls.__name__] = (row, status.code, http)
    assert not bad, f"errors without a proper status: {bad}"


@pytest.mark.parametrize(
    ("exc", "http", "kind", "code"),
    [
        (e.InvalidRequest.field("prompt", "empty"), 400, "invalid_request_error", None),
        (e.Unauthenticated("x"), 401, "authentication_error", "invalid_api_key"),
        (e.PermissionDenied("x"), 403, "permission_error", None),
        (e.UnknownModel("x"), 404, "not_found_error", "model_not_found"),
        (e.RateLimited("x", retry_after_s=1), 429, "rate_limit_error", "rate_limit_exceeded"),
        (
            e.BudgetExceeded("x", job_id="j", spent_nanos=5, budget_nanos=4),
            429,
            "insufficient_quota",
            "insufficient_quota",
        ),
        (e.Overloaded("x"), 503, "api_error", "overloaded"),
        (e.ShuttingDown("x"), 503, "api_error", None),
        (e.DeadlineExceeded("x"), 504, "api_error", "timeout"),
        (
            e.ContextLengthExceeded("x", provider="p"),
            400,
            "invalid_request_error",
            "context_length_exceeded",
        ),
        (e.ContentFiltered("x", provider="p"), 400, "invalid_request_error", "content_filter"),
        (e.ProviderServerError("x", provider="p"), 502, "api_error", None),
        (e.ProviderAuthError("x", provider="p"), 502, "api_error", None),
        (e.ProviderRateLimited("x", provider="p"), 429, "rate_limit_error", "rate_limit_exceeded"),
        (e.AureaError("secret detail"), 500, "api_error", None),
        (ValueError("secret detail"), 500, "api_error", None),
    ],
)
def test_http_column(exc: BaseException, http: int, kind: str, code: str | None) -> None:
    status, body = openai_error(exc, "rid-1")
    assert status == http
    assert body["error"]["type"] == kind and body["error"]["code"] == code
    if http == 500:
        assert "secret" not in body["error"]["message"] and "rid-1" in body["error"]["message"]


def test_openai_error_names_the_first_bad_field() -> None:
    _, body = openai_error(e.InvalidRequest.field("messages[3].role", "must be set"))
    assert body["error"]["param"] == "messages[3].role"


def test_a_subclass_without_its_own_row_takes_its_nearest_ancestors() -> None:
    class Mine(e.CircuitOpen):
        pass

    assert row_for(Mine("x")) == row_for(e.CircuitOpen("x"))
    assert code_for(Mine("x")) is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("exc", "seconds"),
    [
        (e.Overloaded("full", retry_after_s=math.inf), 3600.0),
        (e.Overloaded("full", retry_after_s=1e19), 3600.0),
        (e.ProviderRateLimited("429", provider="p", retry_after_s=1e300), 3600.0),
        (e.Overloaded("full", retry_after_s=math.nan), 1.0),
        (e.RateLimited("slow", retry_after_s=math.nan), 1.0),
        (e.Overloaded("full", retry_after_s=-5), 0.1),
        (e.Overloaded("full", retry_after_s=0.01), 0.1),  # the mailbox's 10 ms hint
        (e.RateLimited("slow", retry_after_s=-math.inf), 0.1),
        (e.CircuitOpen("open"), 1.0),  # an UNAVAILABLE always tells when to retry
    ],
)
def test_retry_hints_are_clamped(exc: e.AureaError, seconds: float) -> None:
    status = to_status(exc)
    assert status.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
    retry = _details(status)["RetryInfo"]
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToMilliseconds() == round(seconds * 1000)
    assert retry_delay_s(exc) == seconds


def test_no_retry_hint_where_none_applies() -> None:
    assert "RetryInfo" not in _details(to_status(e.InvalidRequest.field("a", "b")))
    assert retry_delay_s(e.NotFound("x")) is None


def _size(status: grpc.Status) -> int:
    return sum(len(k) + len(v) for k, v in status.trailing_metadata) + len(status.details)


def test_a_huge_message_is_bounded_and_says_how_much_was_cut() -> None:
    body = "upstream said: " + "x" * 100_000
    status = to_status(e.ProviderServerError(body, provider="p", status=500))
    assert status.code is grpc.StatusCode.UNAVAILABLE
    assert len(status.details) <= 1024
    assert status.details.startswith("upstream said: xxx")
    assert status.details.endswith(
        f"... ({len(body) - status.details.index('...')} more characters)"
    )
    assert _size(status) < 4096


def test_non_ascii_and_surrogates_are_bounded_and_serializable() -> None:
    text = "é" * 5000 + "\udcff"
    status = to_status(e.InvalidRequest.field("prompt", text))
    assert len(status.details.encode()) <= 1024
    assert status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    short = to_status(e.UnknownModel("model \udcff is unknown"))
    assert short.details == "model ? is unknown"


def test_many_field_violations_are_bounded_with_a_summary() -> None:
    bad = [e.FieldViolation(f"inputs[{i}]", "must not be empty") for i in range(600)]
    summary = "; ".join(f"{v.field}: {v.description}" for v in bad)
    status = to_status(e.InvalidRequest(f"invalid request: {summary}", bad))
    assert status.code is grpc.StatusCode.INVALID_ARGUMENT
    violations = _details(status)["BadRequest"].field_violations  # type: ignore[attr-defined]
    assert [v.field for v in violations[:20]] == [f"inputs[{i}]" for i in range(20)]
    assert len(violations) == 21 and "580 more" in violations[20].description
    assert _size(status) < 4096


def test_long_fields_and_descriptions_are_bounded() -> None:
    bad = [e.FieldViolation("f" * 5000, "d" * 50_000) for _ in range(50)]
    status = to_status(e.InvalidRequest("bad", bad))
    violations = _details(status)["BadRequest"].field_violations  # type: ignore[attr-defined]
    assert 1 <= len(violations) < 50
    assert violations[-1].field == "" and "more field violations" in violations[-1].description
    assert _size(status) < 4096


def test_error_info_metadata_is_bounded() -> None:
    exc = e.BudgetExceeded("over " * 1000, job_id="j" * 10_000, spent_nanos=1, budget_nanos=0)
    status = to_status(exc)
    info = _details(status)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert len(info.metadata["job_id"]) <= 128
    assert "QuotaFailure" in _details(status)
    assert _size(status) < 4096
