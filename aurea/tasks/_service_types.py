"""What ``aurea.tasks.service.Tasks`` takes and returns at the edge (submissions, listing
queries, watch items), how a submission's payload is read, and the opaque page token."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from aurea.errors import InvalidRequest
from aurea.tasks.events import TaskChanged, TaskProgressed
from aurea.tasks.model import Priority, Status, TaskInfo

__all__ = ["Current", "ListQuery", "SubmitSpec", "Submitted", "WatchItem"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSpec:
    """A submission as the edge decoded it; ``Tasks.submit`` checks everything else."""

    kind: str
    payload: Any = None  # a JSON object, or None
    payload_json: str | None = None  # JSON text instead of ``payload``
    priority: Priority = Priority.NORMAL
    pool: str = ""
    idempotency_key: str = ""
    max_attempts: int = 0  # 0: the kind's
    timeout_s: float = 0.0  # 0: the kind's
    job_id: str = ""
    deadline: float | None = None  # wall time by which the task must start


@dataclass(frozen=True, slots=True)
class Submitted:
    info: TaskInfo
    deduplicated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ListQuery:
    statuses: frozenset[Status] = frozenset()
    pool: str = ""
    kind: str = ""
    job_id: str = ""
    page_size: int = 0
    page_token: str = ""
    full: bool = False


@dataclass(frozen=True, slots=True)
class Current:
    """A matching task's state when a watch opened."""

    info: TaskInfo


WatchItem = Current | TaskChanged | TaskProgressed


def _parse_payload(spec: SubmitSpec) -> Any:
    if spec.payload_json is None:
        return {} if spec.payload is None else spec.payload
    try:
        return json.loads(spec.payload_json, parse_constant=_no_constant)
    except ValueError as exc:
        raise InvalidRequest.field("payload_json", f"is not JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


@dataclass(slots=True)
class _Token:
    """The opaque page token: the cursor and a digest of the filters it belongs to."""

    after: int
    digest: str = field(default="")

    def encode(self) -> str:
        raw = json.dumps({"a": self.after, "f": self.digest}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, digest: str) -> _Token:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
            out = cls(int(data["a"]), str(data["f"]))
        except (ValueError, KeyError, TypeError):
            out = None
        if out is None or out.digest != digest or out.after < 0:
            raise InvalidRequest.field(
                "page_token", "is not a token this RPC returned for the same filters"
            )
        return out
