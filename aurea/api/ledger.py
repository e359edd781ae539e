"""LedgerService: jobs, budgets and cost summaries, read from (and budgets written through) the
ledger book, so every answer includes everything decided before it; and the admin metrics
summary, from the same settled spend."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

import grpc
from google.protobuf import timestamp_pb2

from aurea.errors import InvalidRequest, NotFound
from aurea.ledger import CallMetrics, CallMetricsBook, LedgerBook
from aurea.stores import MAX_PAGE_SIZE, JobView, UsageTotals
from aurea.stores.ledger import MAX_NANOS, SUMMARY_BUCKET_S, bucket_start
from aurea.v1 import admin_pb2 as admin_pb
from aurea.v1 import ledger_pb2 as pb
from aurea.v1 import ledger_pb2_grpc

__all__ = ["LedgerServicer", "job_pb", "metrics_summary_pb"]

MAX_JOB_ID = 128
DEFAULT_PAGE_SIZE = 100
_MAX_TIMESTAMP_S = 253_402_300_799  # 9999-12-31T23:59:59Z, the Timestamp type's own maximum


def _ts(unix_s: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(unix_s * 1e9))
    return t


def _check_job_id(job_id: str) -> None:
    if not job_id:
        raise InvalidRequest.field("job_id", "is required")
    if len(job_id) > MAX_JOB_ID:
        raise InvalidRequest.field("job_id", f"must be at most {MAX_JOB_ID} characters")


def _by_cost(rows: tuple[UsageTotals, ...]) -> list[UsageTotals]:
    """Most expensive first; ties by name, so the order is stable."""
    return sorted(rows, key=lambda r: (-r.cost_nanos, r.model, r.provider))


def _model_pb(t: UsageTotals) -> pb.ModelSpend:
    return pb.ModelSpend(
        model=t.model,
        provider=t.provider,
        calls=t.calls,
        input_tokens=t.input_tokens,
        output_tokens=t.output_tokens,
        cost_nanos=t.cost_nanos,
    )


def job_pb(view: JobView) -> pb.Job:
    """The proto of a job; ``remaining_nanos`` may be negative after a budget was lowered."""
    job = pb.Job(
        job_id=view.job_id,
        cost_nanos=view.spent_nanos,
        reserved_nanos=view.reserved_nanos,
        input_tokens=sum(t.input_tokens for t in view.by_model),
        output_tokens=sum(t.output_tokens for t in view.by_model),
        calls=sum(t.calls for t in view.by_model),
        models=[_model_pb(t) for t in _by_cost(view.by_model)],
        create_time=_ts(view.created_at),
        update_time=_ts(view.updated_at),
        calls_in_flight=view.active_leases,
    )
    if view.budget_nanos is not None:
        job.budget_nanos = view.budget_nanos
        job.remaining_nanos = view.budget_nanos - view.spent_nanos - view.reserved_nanos
    return job


def _page_token(prefix: str, after: str) -> str:
    raw = json.dumps({"p": prefix, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_page_token(token: str, prefix: str) -> str | None:
    """The cursor in ``token`` (None for the first page); INVALID_ARGUMENT for a token this RPC
    did not return for ``prefix``."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after = data["a"]
        ok = isinstance(after, str) and data["p"] == prefix and after.startswith(prefix)
    except (ValueError, KeyError, TypeError, binascii.Error):
        ok = False
    if not ok:
        raise InvalidRequest.field(
            "page_token", "is not a token ListJobs returned for this job_id_prefix"
        )
    return str(after)


def _seconds(field: str, t: timestamp_pb2.Timestamp) -> float:
    if not 0 <= t.seconds <= _MAX_TIMESTAMP_S or not 0 <= t.nanos < 1_000_000_000:
        raise InvalidRequest.field(field, "must be between 1970-01-01 and 9999-12-31 UTC")
    return t.seconds + t.nanos / 1e9


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self, book: LedgerBook) -> None:
        self._book = book

    async def GetJob(
        self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJobResponse:
        _check_job_id(request.job_id)
        view = await self._book.get_job(request.job_id)
        if view is None:
            raise NotFound(f"job {request.job_id!r} has no charges and no budget")
        return pb.GetJobResponse(job=job_pb(view))

    async def SetBudget(
        self, request: pb.SetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetBudgetResponse:
        _check_job_id(request.job_id)
        if request.unlimited:
            if request.budget_nanos:
                raise InvalidRequest.field(
                    "budget_nanos", "must be 0 when unlimited is set (an unlimited job has none)"
                )
            budget: int | None = None
        elif not 0 <= request.budget_nanos <= MAX_NANOS:
            raise InvalidRequest.field(
                "budget_nanos", f"must be between 0 and {MAX_NANOS} nano-dollars"
            )
        else:
            budget = request.budget_nanos
        view = await self._book.set_budget(request.job_id, budget)
        return pb.SetBudgetResponse(job=job_pb(view))

    async def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListJobsResponse:
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidRequest.field("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
        prefix = request.job_id_prefix
        if len(prefix) > MAX_JOB_ID:
            raise InvalidRequest.field("job_id_prefix", f"must be at most {MAX_JOB_ID} characters")
        after = _read_page_token(request.page_token, prefix)
        page = await self._book.list_jobs(
            prefix=prefix, after=after, limit=request.page_size or DEFAULT_PAGE_SIZE
        )
        return pb.ListJobsResponse(
            jobs=[job_pb(v) for v in page.items],
            next_page_token=_page_token(prefix, page.next_cursor) if page.next_cursor else "",
        )

    async def GetSummary(
        self, request: pb.GetSummaryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSummaryResponse:
        since = (
            _seconds("start_time", request.start_time) if request.HasField("start_time") else None
        )
        until = _seconds("end_time", request.end_time) if request.HasField("end_time") else None
        if since is not None and until is not None and until <= since:
            raise InvalidRequest.field("end_time", "must be after start_time")
        summary = await self._book.summary(since=since, until=until)
        total = summary.total
        out = pb.GetSummaryResponse(
            total_cost_nanos=total.cost_nanos,
            total_input_tokens=total.input_tokens,
            total_output_tokens=total.output_tokens,
            total_calls=total.calls,
            providers=[
                pb.ProviderSpend(
                    provider=t.provider,
                    calls=t.calls,
                    input_tokens=t.input_tokens,
                    output_tokens=t.output_tokens,
                    cost_nanos=t.cost_nanos,
                )
                for t in _by_cost(summary.by_provider)
            ],
            models=[_model_pb(t) for t in _by_cost(summary.by_model)],
        )
        # The window actually summed: charges are kept per whole hour.
        if since is not None:
            out.start_time.CopyFrom(_ts(bucket_start(since)))
        if until is not None:
            start = bucket_start(until)
            out.end_time.CopyFrom(_ts(start if start == until else start + SUMMARY_BUCKET_S))
        return out


def metrics_summary_pb(
    calls: CallMetricsBook,
    spend: Mapping[tuple[str, str], UsageTotals],
    *,
    started_at: float,
    tasks_processed: int,
) -> admin_pb.GetMetricsSummaryResponse:
    """AdminService.GetMetricsSummary from the calls' records and the ledger's settled spend."""
    total, models = calls.summary(spend)
    return admin_pb.GetMetricsSummaryResponse(
        total=_call_metrics_pb(total),
        models=[
            admin_pb.ModelCallMetrics(
                model=m.model, provider=m.provider, metrics=_call_metrics_pb(m)
            )
            for m in models
        ],
        start_time=_ts(started_at),
        tasks_processed=tasks_processed,
    )


def _call_metrics_pb(m: CallMetrics) -> admin_pb.CallMetrics:
    return admin_pb.CallMetrics(
        requests=m.requests,
        errors=m.errors,
        input_tokens=m.input_tokens,
        output_tokens=m.output_tokens,
        cost_nanos=m.cost_nanos,
        p50_latency_ms=m.p50_s * 1e3,
        p95_latency_ms=m.p95_s * 1e3,
        p99_latency_ms=m.p99_s * 1e3,
        avg_latency_ms=m.mean_s * 1e3,
    )
