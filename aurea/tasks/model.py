"""What a task is above the store: priorities, the statuses the API reports (TIMED_OUT is a
failure whose reason says so), the envelope that carries a task's own options through the
store's opaque payload column, and how a failed attempt's reason is recorded.

The envelope is one JSON header line, a newline, then the payload as canonical JSON (compact,
sorted keys; JSON text never holds a raw newline), so reading a task's options never parses
its payload.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any

from aurea.stores.tasks import DEADLINE_EXCEEDED, LEASE_EXPIRED, TaskRecord, TaskState

__all__ = [
    "Failure",
    "Priority",
    "Progress",
    "Reason",
    "Status",
    "TaskInfo",
    "canonical_json",
    "decode_error",
    "encode_envelope",
    "encode_error",
    "info_of",
    "split_envelope",
]


class Priority(enum.IntEnum):
    """The store's priority levels (higher runs first)."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


class Status(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)


class Reason(enum.StrEnum):
    """Why an attempt failed (an error the handler raised on purpose keeps its own reason)."""

    TIMED_OUT = "TIMED_OUT"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    CANCELLED = "CANCELLED"
    LEASE_EXPIRED = "LEASE_EXPIRED"
    LEASE_LOST = "LEASE_LOST"  # never recorded: the task is someone else's now
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERRUPTED = "INTERRUPTED"
    HANDLER_ERROR = "HANDLER_ERROR"
    BAD_RESULT = "BAD_RESULT"
    BAD_PAYLOAD = "BAD_PAYLOAD"
    KIND_NOT_FOUND = "KIND_NOT_FOUND"


@dataclass(frozen=True, slots=True)
class Failure:
    """How an attempt failed, and whether another attempt may succeed."""

    reason: str
    message: str
    retryable: bool


@dataclass(frozen=True, slots=True)
class Progress:
    fraction: float  # in [0, 1]
    message: str
    time_s: float  # wall time of the report


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys; raises ValueError for NaN/infinity or non-JSON values."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def encode_envelope(payload_json: str, *, timeout_s: float) -> str:
    return f'{{"timeout_s":{timeout_s!r},"v":1}}\n{payload_json}'


def split_envelope(text: str) -> tuple[float, str]:
    """(timeout_s, payload JSON) of a stored envelope; a task stored without one (by another
    writer) gets no timeout of its own (0.0: its kind's) and its text as the payload."""
    header, sep, payload = text.partition("\n")
    if sep:
        try:
            meta = json.loads(header)
            timeout_s = float(meta["timeout_s"])
        except (ValueError, KeyError, TypeError):
            pass
        else:
            if math.isfinite(timeout_s) and timeout_s > 0:
                return timeout_s, payload
    return 0.0, text


def encode_error(reason: str, message: str) -> str:
    return json.dumps({"reason": reason, "message": message}, separators=(",", ":"))


def decode_error(text: str) -> tuple[str, str]:
    """(reason, message) of a stored error: ours are JSON; the store writes its own two as
    plain text; anything else is a handler error."""
    if not text:
        return "", ""
    if text == LEASE_EXPIRED:
        return Reason.LEASE_EXPIRED, text
    if text == DEADLINE_EXCEEDED:
        return Reason.DEADLINE_EXCEEDED, text
    if text.startswith("{"):
        try:
            data = json.loads(text)
            return str(data["reason"]), str(data["message"])
        except (ValueError, KeyError, TypeError):
            pass
    return Reason.HANDLER_ERROR, text


_STATUS = {
    TaskState.QUEUED: Status.QUEUED,
    TaskState.RUNNING: Status.RUNNING,
    TaskState.SUCCEEDED: Status.SUCCEEDED,
    TaskState.FAILED: Status.FAILED,
    TaskState.CANCELLED: Status.CANCELLED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInfo:
    """A stored task as the API shows it. ``payload()`` and ``result()`` parse on demand, so a
    listing that leaves them out never parses them."""

    record: TaskRecord
    status: Status
    timeout_s: float  # 0.0: the kind's (a task stored without an envelope)
    error_reason: str
    error_message: str
    progress: Progress | None = None

    @property
    def task_id(self) -> str:
        return self.record.task_id

    def payload_json(self) -> str:
        return split_envelope(self.record.payload)[1]

    def payload(self) -> Any:
        text = self.payload_json()
        return json.loads(text) if text else {}

    def result(self) -> Any:
        """The handler's return value (None unless SUCCEEDED)."""
        if self.status is not Status.SUCCEEDED or not self.record.result:
            return None
        return json.loads(self.record.result)


def info_of(record: TaskRecord, progress: Progress | None = None) -> TaskInfo:
    reason, message = decode_error(record.error)
    status = _STATUS[record.state]
    if status is Status.FAILED and reason == Reason.TIMED_OUT:
        status = Status.TIMED_OUT
    return TaskInfo(
        record=record,
        status=status,
        timeout_s=split_envelope(record.payload)[0],
        error_reason=reason,
        error_message=message,
        progress=progress if status is Status.RUNNING else None,
    )
