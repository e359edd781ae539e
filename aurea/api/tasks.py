"""TaskService: protobuf <-> the task domain (``aurea.tasks.Tasks``), with the checks only the
wire can need (enum values out of range, timestamps, id counts).

A ``Struct`` holds every number as a double; whole numbers within 2**53 reach handlers as
``int`` (JSON does not tell 2 from 2.0 either), so ``{"n": 3}`` stays usable as a count.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from aurea.errors import FieldViolation, InvalidRequest
from aurea.tasks import (
    Current,
    ListQuery,
    PoolStats,
    Priority,
    Progress,
    Status,
    SubmitSpec,
    TaskChanged,
    TaskInfo,
    TaskKind,
    Tasks,
    WatchFilter,
)
from aurea.v1 import task_pb2 as pb
from aurea.v1 import task_pb2_grpc

__all__ = ["TaskServicer", "pool_pb", "task_pb"]

MAX_WATCH_IDS = 1000
MAX_PAGE = 1000
DEFAULT_PAGE = 100
_EXACT = 2.0**53

PRIORITY_IN = {
    pb.TASK_PRIORITY_UNSPECIFIED: Priority.NORMAL,
    pb.TASK_PRIORITY_LOW: Priority.LOW,
    pb.TASK_PRIORITY_NORMAL: Priority.NORMAL,
    pb.TASK_PRIORITY_HIGH: Priority.HIGH,
    pb.TASK_PRIORITY_CRITICAL: Priority.CRITICAL,
}
PRIORITY_OUT = {v: k for k, v in PRIORITY_IN.items() if k != pb.TASK_PRIORITY_UNSPECIFIED}
STATUS_OUT = {
    Status.QUEUED: pb.TASK_STATUS_QUEUED,
    Status.RUNNING: pb.TASK_STATUS_RUNNING,
    Status.SUCCEEDED: pb.TASK_STATUS_SUCCEEDED,
    Status.FAILED: pb.TASK_STATUS_FAILED,
    Status.CANCELLED: pb.TASK_STATUS_CANCELLED,
    Status.TIMED_OUT: pb.TASK_STATUS_TIMED_OUT,
}
STATUS_IN = {v: k for k, v in STATUS_OUT.items()}


def _ts(unix_s: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(unix_s * 1e9))
    return t


def _whole_numbers(value: Any) -> Any:
    """Struct numbers come as floats: give whole ones back as ints."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= _EXACT else value
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _struct_of(text: str) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    json_format.Parse(text or "{}", out)
    return out


def _progress_pb(p: Progress) -> pb.TaskProgress:
    return pb.TaskProgress(fraction=p.fraction, message=p.message, report_time=_ts(p.time_s))


def task_pb(info: TaskInfo, *, full: bool, default_timeout_s: float = 0.0) -> pb.Task:
    r = info.record
    priority = Priority(min(max(r.priority, Priority.LOW), Priority.CRITICAL))
    msg = pb.Task(
        task_id=r.task_id,
        kind=r.kind,
        priority=PRIORITY_OUT[priority],
        pool=r.pool,
        idempotency_key=r.idempotency_key,
        max_attempts=r.max_attempts,
        timeout_ms=round((info.timeout_s or default_timeout_s) * 1e3),
        status=STATUS_OUT[info.status],
        attempts=r.attempts,
        error_message=info.error_message,
        error_reason=info.error_reason,
        create_time=_ts(r.created_at),
        update_time=_ts(r.updated_at),
        job_id=r.job_id,
        cancel_requested=r.cancel_requested,
    )
    if r.finished_at is not None:
        msg.end_time.CopyFrom(_ts(r.finished_at))
    if r.deadline is not None:
        msg.deadline.CopyFrom(_ts(r.deadline))
    if info.progress is not None:
        msg.progress.CopyFrom(_progress_pb(info.progress))
    if full:
        msg.payload.CopyFrom(_struct_of(info.payload_json()))
        if info.status is Status.SUCCEEDED and r.result:
            json_format.Parse(r.result, msg.result)
    return msg


def _kind_pb(kind: TaskKind) -> pb.TaskKind:
    msg = pb.TaskKind(
        kind=kind.name,
        description=kind.description,
        default_pool=kind.pool,
        default_max_attempts=kind.retry.max_attempts,
        default_timeout_ms=round(kind.timeout_s * 1e3),
        retry_backoff_ms=round(kind.retry.backoff_s * 1e3),
        retry_backoff_max_ms=round(kind.retry.backoff_max_s * 1e3),
    )
    if kind.payload_schema is not None:
        msg.payload_schema.CopyFrom(_struct_of(json.dumps(kind.payload_schema)))
    return msg


def pool_pb(p: PoolStats) -> pb.Pool:
    return pb.Pool(
        name=p.name,
        workers=p.workers,
        busy=p.busy,
        queued=p.queued,
        queue_capacity=p.queue_capacity,
        running=p.running,
    )


def _priority(value: int) -> Priority:
    found: Priority | None = PRIORITY_IN.get(value)  # type: ignore[call-overload]
    if found is None:
        raise InvalidRequest.field("priority", "must be LOW, NORMAL, HIGH or CRITICAL")
    return found


def _statuses(values: Any) -> frozenset[Status]:
    out = set()
    for i, v in enumerate(values):
        s: Status | None = STATUS_IN.get(v)
        if s is None:
            raise InvalidRequest.field(f"statuses[{i}]", "is not a task status")
        out.add(s)
    return frozenset(out)


def _full(view: int, field: str) -> bool:
    if view not in (pb.TASK_VIEW_UNSPECIFIED, pb.TASK_VIEW_BASIC, pb.TASK_VIEW_FULL):
        raise InvalidRequest.field(field, "must be BASIC or FULL")
    return view == pb.TASK_VIEW_FULL


def submit_spec(req: pb.SubmitTaskRequest) -> SubmitSpec:
    bad: list[FieldViolation] = []
    priority = Priority.NORMAL
    try:
        priority = _priority(req.priority)
    except InvalidRequest as exc:
        bad.extend(exc.violations)
    if not 0 <= req.timeout_ms <= 86_400_000:
        bad.append(FieldViolation("timeout_ms", "must be in [0, 86400000]"))
    if not 0 <= req.max_attempts <= 20:
        bad.append(FieldViolation("max_attempts", "must be in [0, 20]"))
    deadline: float | None = None
    if req.HasField("deadline"):
        try:
            deadline = req.deadline.ToNanoseconds() / 1e9
        except ValueError:
            bad.append(FieldViolation("deadline", "is not a valid timestamp"))
    if bad:
        raise InvalidRequest("; ".join(f"{v.field}: {v.description}" for v in bad), bad)
    source = req.WhichOneof("payload_source")
    return SubmitSpec(
        kind=req.kind,
        payload=_whole_numbers(json_format.MessageToDict(req.payload))
        if source == "payload"
        else None,
        payload_json=req.payload_json if source == "payload_json" else None,
        priority=priority,
        pool=req.pool,
        idempotency_key=req.idempotency_key,
        max_attempts=req.max_attempts,
        timeout_s=req.timeout_ms / 1e3,
        job_id=req.job_id,
        deadline=deadline,
    )


def _page(names: list[str], token: str, size: int) -> tuple[list[str], str]:
    if size < 0:
        raise InvalidRequest.field("page_size", "must not be negative")
    size = min(size or DEFAULT_PAGE, MAX_PAGE)
    start = 0
    if token:
        if token not in names:
            raise InvalidRequest.field("page_token", "is not a token this RPC returned")
        start = names.index(token)
    page = names[start : start + size]
    return page, names[start + size] if start + size < len(names) else ""


class TaskServicer(task_pb2_grpc.TaskServiceServicer):
    def __init__(self, tasks: Tasks) -> None:
        self._tasks = tasks

    def _task(self, info: TaskInfo, *, full: bool) -> pb.Task:
        kind = self._tasks.registry.get(info.record.kind)
        return task_pb(info, full=full, default_timeout_s=kind.timeout_s if kind else 0.0)

    async def SubmitTask(
        self, request: pb.SubmitTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitTaskResponse:
        if request.WhichOneof("payload_source") == "payload":
            _check_finite(request.payload)
        done = await self._tasks.submit(submit_spec(request))
        return pb.SubmitTaskResponse(
            task=self._task(done.info, full=True), deduplicated=done.deduplicated
        )

    async def GetTask(
        self, request: pb.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTaskResponse:
        info = await self._tasks.get(request.task_id, wait_s=request.wait_ms / 1e3)
        return pb.GetTaskResponse(task=self._task(info, full=True))

    async def ListTasks(
        self, request: pb.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTasksResponse:
        full = _full(request.view, "view")
        infos, token = await self._tasks.list(
            ListQuery(
                statuses=_statuses(request.statuses),
                pool=request.pool,
                kind=request.kind,
                job_id=request.job_id,
                page_size=request.page_size,
                page_token=request.page_token,
                full=full,
            )
        )
        return pb.ListTasksResponse(
            tasks=[self._task(i, full=full) for i in infos], next_page_token=token
        )

    async def CancelTask(
        self, request: pb.CancelTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelTaskResponse:
        info = await self._tasks.cancel(request.task_id)
        return pb.CancelTaskResponse(task=self._task(info, full=True))

    async def WatchTasks(
        self, request: pb.WatchTasksRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchTasksResponse]:
        if len(request.task_ids) > MAX_WATCH_IDS:
            raise InvalidRequest.field("task_ids", f"must hold at most {MAX_WATCH_IDS} ids")
        full = _full(request.view, "view")
        flt = WatchFilter(
            task_ids=frozenset(request.task_ids),
            pool=request.pool,
            kind=request.kind,
            job_id=request.job_id,
        )
        R = pb.WatchTasksResponse
        async for item in self._tasks.watch(flt, include_current=request.include_current):
            if isinstance(item, Current):
                yield R(current=self._task(item.info, full=full))
            elif isinstance(item, TaskChanged):
                change = pb.TaskChange(
                    task=self._task(item.info, full=full),
                    previous_status=STATUS_OUT[item.previous]
                    if item.previous is not None
                    else pb.TASK_STATUS_UNSPECIFIED,
                    change_time=_ts(item.time_s),
                )
                yield R(change=change)
            else:
                yield R(
                    progress=pb.TaskProgressUpdate(
                        task_id=item.record.task_id,
                        attempt=item.record.attempts,
                        progress=_progress_pb(item.progress),
                    )
                )

    async def ListTaskKinds(
        self, request: pb.ListTaskKindsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTaskKindsResponse:
        kinds = {k.name: k for k in self._tasks.registry}
        page, token = _page(sorted(kinds), request.page_token, request.page_size)
        return pb.ListTaskKindsResponse(
            kinds=[_kind_pb(kinds[n]) for n in page], next_page_token=token
        )

    async def ListPools(
        self, request: pb.ListPoolsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPoolsResponse:
        pools = {p.name: p for p in await self._tasks.pools()}
        page, token = _page(sorted(pools), request.page_token, request.page_size)
        return pb.ListPoolsResponse(pools=[pool_pb(pools[n]) for n in page], next_page_token=token)

    async def ScalePool(
        self, request: pb.ScalePoolRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScalePoolResponse:
        stats = await self._tasks.scale(request.pool, request.workers)
        return pb.ScalePoolResponse(pool=pool_pb(stats))


def _check_finite(payload: struct_pb2.Struct) -> None:
    """A Struct may carry NaN or infinity, which JSON cannot: refuse them by field."""
    bad: list[FieldViolation] = []

    def walk(value: struct_pb2.Value, path: str) -> None:
        kind = value.WhichOneof("kind")
        if kind == "number_value" and not math.isfinite(value.number_value):
            bad.append(FieldViolation(path, "is not a JSON number (NaN or infinite)"))
        elif kind == "struct_value":
            for k, v in value.struct_value.fields.items():
                walk(v, f"{path}.{k}")
        elif kind == "list_value":
            for i, v in enumerate(value.list_value.values):
                walk(v, f"{path}[{i}]")

    for key, value in payload.fields.items():
        walk(value, f"payload.{key}")
        if len(bad) >= 20:
            break
    if bad:
        raise InvalidRequest("payload: not JSON: " + bad[0].field + " " + bad[0].description, bad)
