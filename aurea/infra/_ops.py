"""The provisioner's helpers that hold no actor state: backend work run by its tasks (create
and destroy many replicas, all or nothing), the capacity check, paging and stats."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import structlog

from aurea.errors import (
    AureaError,
    FailedPrecondition,
    InvalidRequest,
    ResourceExhausted,
    Unavailable,
)
from aurea.infra.backend import ComputeBackend, ReplicaRef
from aurea.infra.model import (
    BackendKind,
    Capacity,
    InfraStats,
    Replica,
    Resource,
    ResourceStatus,
    Spec,
)

if TYPE_CHECKING:
    from aurea.infra.messages import ListResources, ResourcePage
    from aurea.infra.provisioner import Limits

log = structlog.get_logger("aurea.infra")

_DESTROY_TRIES = 3
_DESTROY_BACKOFF_S = 0.5


class Counters:
    """What the provisioner made since it started, for GetStats."""

    __slots__ = ("containers", "executions", "processes", "vms")

    def __init__(self) -> None:
        self.executions = self.containers = self.vms = self.processes = 0

    def created(self, kind: BackendKind, n: int) -> None:
        if kind is BackendKind.PROXMOX_VM:
            self.vms += n
        elif kind is BackendKind.LOCAL:
            self.processes += n
        else:
            self.containers += n


def text_of(exc: BaseException) -> str:
    return exc.message if isinstance(exc, AureaError) else f"{type(exc).__name__}: {exc}"


def unavailable(backend: str, exc: BaseException) -> AureaError:
    """The error for a backend call that failed in a way the backend did not classify."""
    if isinstance(exc, AureaError):
        return exc
    err = Unavailable(f"backend {backend} failed: {text_of(exc)}", retry_after_s=1.0)
    err.__cause__ = exc
    return err


async def create_all(
    backend: ComputeBackend, spec: Spec, refs: Sequence[ReplicaRef]
) -> tuple[tuple[Replica, ...], str]:
    """Make every replica, or none: when one fails the others are destroyed. Returns the
    replicas made (on failure: those that could not be destroyed) and the error text."""
    results = await asyncio.gather(
        *(backend.create(ref, spec) for ref in refs), return_exceptions=True
    )
    made = tuple(r for r in results if isinstance(r, Replica))
    errors = [r for r in results if isinstance(r, BaseException)]
    for e in errors:
        if not isinstance(e, Exception):  # cancelled: the start-up sweep finds what was made
            raise e
    if not errors:
        return made, ""
    error = text_of(errors[0])
    if made:
        left = await destroy_all(backend, made)
        if left:
            return made, f"{error}; removing the replicas made also failed: {left}"
    return (), error


async def destroy_all(backend: ComputeBackend, replicas: Iterable[Replica]) -> str:
    """Destroy replicas (retrying each a few times); the error text of those that stayed."""

    async def one(replica: Replica) -> str:
        for attempt in range(_DESTROY_TRIES):
            try:
                await backend.destroy(replica)
                return ""
            except Exception as exc:
                if attempt == _DESTROY_TRIES - 1:
                    return f"{replica.backend_id}: {text_of(exc)}"
                log.warning(
                    "infra_destroy_retry", backend_id=replica.backend_id, error=text_of(exc)
                )
                await asyncio.sleep(_DESTROY_BACKOFF_S * 2**attempt)
        return ""

    errors = [e for e in await asyncio.gather(*(one(r) for r in replicas)) if e]
    return "; ".join(errors)


def scale_failed(resource_id: str, error: str) -> AureaError:
    return FailedPrecondition(f"resource {resource_id}: adding replicas failed: {error}")


def check_room(*, limits: Limits, live: int, held: Capacity, need: Capacity, new: bool) -> None:
    """Refuse (RESOURCE_EXHAUSTED) what would exceed ``max_resources`` or the capacity."""
    if new and live >= limits.max_resources:
        raise ResourceExhausted(
            f"max_resources reached: {live} live resources of {limits.max_resources}; "
            "release some (Release, Cleanup) or raise [infra] max_resources"
        )
    short = (limits.total - held).shortfall(need)
    if short:
        raise ResourceExhausted(
            "not enough capacity for the spec: " + ", ".join(short) + " (limits in [infra])"
        )


def _fingerprint(msg: ListResources) -> str:
    key = json.dumps([sorted(msg.statuses), str(msg.backend or "")])
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def page(resources: Iterable[Resource], msg: ListResources) -> ResourcePage:
    """One page, most recent first; the cursor names the last item and the filters."""
    from aurea.infra.messages import ResourcePage

    statuses = msg.statuses or frozenset(ResourceStatus) - {ResourceStatus.RELEASED}
    rows = sorted(
        (
            r
            for r in resources
            if r.status in statuses and (msg.backend is None or r.backend is msg.backend)
        ),
        key=lambda r: (r.created_at, r.resource_id),
        reverse=True,
    )
    fp = _fingerprint(msg)
    if msg.cursor:
        try:
            raw = json.loads(base64.urlsafe_b64decode(msg.cursor.encode()))
            ok = raw["f"] == fp
            after = (float(raw["c"]), str(raw["i"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            ok = False
        if not ok:
            raise InvalidRequest.field(
                "page_token", "is not a token this RPC returned for these filters"
            )
        rows = [r for r in rows if (r.created_at, r.resource_id) < after]
    out = rows[: msg.page_size]
    cursor = ""
    if len(rows) > msg.page_size:
        last = out[-1]
        token = json.dumps({"f": fp, "c": last.created_at, "i": last.resource_id})
        cursor = base64.urlsafe_b64encode(token.encode()).decode()
    return ResourcePage(resources=tuple(out), next_cursor=cursor)


def stats(
    resources: Iterable[Resource], total: Capacity, held: Capacity, counts: Counters
) -> InfraStats:
    by_status: dict[ResourceStatus, int] = {}
    by_backend: dict[BackendKind, int] = {}
    for r in resources:
        by_status[r.status] = by_status.get(r.status, 0) + 1
        if r.status is not ResourceStatus.RELEASED:
            by_backend[r.backend] = by_backend.get(r.backend, 0) + 1
    left = total - held
    return InfraStats(
        total=total,
        available=Capacity(
            max(left.cpu_millis, 0),
            max(left.memory_mib, 0),
            max(left.disk_gib, 0),
            max(left.gpu_count, 0),
        ),
        by_status=by_status,
        by_backend=by_backend,
        executions=counts.executions,
        containers_created=counts.containers,
        vms_created=counts.vms,
        processes_created=counts.processes,
    )
