"""Protobuf <-> domain conversion for InfrastructureService, with request validation (every
bad field reported at once)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from google.protobuf import timestamp_pb2

from aurea.errors import FieldViolation, InvalidRequest
from aurea.infra.model import BackendKind, InfraStats, Resource, ResourceStatus, Spec
from aurea.v1 import infrastructure_pb2 as pb

MAX_REPLICAS = 64
MAX_ENV = 256
MAX_LABELS = 64
MAX_ID = 64
MAX_STDIN = 4 << 20
MAX_TEXT = 256
MAX_ARGS = 4096

BACKENDS = {
    pb.COMPUTE_BACKEND_LOCAL_PROCESS: BackendKind.LOCAL,
    pb.COMPUTE_BACKEND_DOCKER: BackendKind.DOCKER,
    pb.COMPUTE_BACKEND_PROXMOX_VM: BackendKind.PROXMOX_VM,
    pb.COMPUTE_BACKEND_PROXMOX_LXC: BackendKind.PROXMOX_LXC,
}
BACKEND_PB = {v: k for k, v in BACKENDS.items()}
STATUSES = {
    pb.RESOURCE_STATUS_PROVISIONING: ResourceStatus.PROVISIONING,
    pb.RESOURCE_STATUS_RUNNING: ResourceStatus.RUNNING,
    pb.RESOURCE_STATUS_RELEASING: ResourceStatus.RELEASING,
    pb.RESOURCE_STATUS_RELEASED: ResourceStatus.RELEASED,
    pb.RESOURCE_STATUS_FAILED: ResourceStatus.FAILED,
}
STATUS_PB = {v: k for k, v in STATUSES.items()}

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
_RANGES = (("cpu_millis", 256_000), ("memory_mib", 1_048_576), ("disk_gib", 65_536))


def _env(env: Mapping[str, str], where: str, bad: list[FieldViolation]) -> None:
    if len(env) > MAX_ENV:
        bad.append(FieldViolation(where, f"at most {MAX_ENV} entries"))
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            bad.append(FieldViolation(f"{where}[{name[:40]}]", "is not a variable name"))
        elif "\0" in value:
            bad.append(FieldViolation(f"{where}[{name}]", "must not contain NUL"))


def backend_of(value: int, field: str, bad: list[FieldViolation]) -> BackendKind | None:
    kind: BackendKind | None = BACKENDS.get(value)  # type: ignore[call-overload]
    if kind is None:
        bad.append(FieldViolation(field, "must name a backend (LOCAL_PROCESS, DOCKER, PROXMOX_*)"))
    return kind


def provision_args(req: pb.ProvisionRequest) -> tuple[BackendKind, Spec, int, str]:
    bad: list[FieldViolation] = []
    kind = backend_of(req.backend, "backend", bad)
    s = req.spec
    for name, hi in _RANGES:
        if not 0 <= getattr(s, name) <= hi:
            bad.append(FieldViolation(f"spec.{name}", f"must be in [0, {hi}]"))
    if not 0 <= s.gpu_count <= 16:
        bad.append(FieldViolation("spec.gpu_count", "must be in [0, 16]"))
    for name in ("gpu_type", "image", "template", "node", "storage", "network"):
        if len(getattr(s, name)) > MAX_TEXT:
            bad.append(FieldViolation(f"spec.{name}", f"at most {MAX_TEXT} characters"))
    source = s.WhichOneof("source")
    if kind is BackendKind.DOCKER and source != "image":
        bad.append(FieldViolation("spec.image", "is required for DOCKER"))
    if kind in (BackendKind.PROXMOX_VM, BackendKind.PROXMOX_LXC) and source != "template":
        bad.append(FieldViolation("spec.template", "is required for the Proxmox backends"))
    if kind is BackendKind.LOCAL and source is not None:
        bad.append(FieldViolation(f"spec.{source}", "LOCAL_PROCESS takes no image or template"))
    _env(s.env, "spec.env", bad)
    if len(s.labels) > MAX_LABELS:
        bad.append(FieldViolation("spec.labels", f"at most {MAX_LABELS} entries"))
    for key, value in s.labels.items():
        if not _LABEL_KEY.match(key) or key.startswith("aurea"):
            bad.append(
                FieldViolation(
                    f"spec.labels[{key[:40]}]",
                    "keys are 1-63 of a-z 0-9 _ . -, start with a letter, not with 'aurea'",
                )
            )
        elif len(value) > MAX_TEXT:
            bad.append(FieldViolation(f"spec.labels[{key}]", f"at most {MAX_TEXT} characters"))
    if not 0 <= req.replicas <= MAX_REPLICAS:
        bad.append(FieldViolation("replicas", f"must be in [0, {MAX_REPLICAS}]"))
    if len(req.request_id) > MAX_ID:
        bad.append(FieldViolation("request_id", f"at most {MAX_ID} characters"))
    if bad or kind is None:
        raise InvalidRequest("; ".join(f"{v.field}: {v.description}" for v in bad), bad)
    spec = Spec(
        cpu_millis=s.cpu_millis,
        memory_mib=s.memory_mib,
        disk_gib=s.disk_gib,
        gpu_count=s.gpu_count,
        gpu_type=s.gpu_type if s.gpu_count else "",
        image=s.image,
        template=s.template,
        node=s.node,
        storage=s.storage,
        env=tuple(sorted(s.env.items())),
        network=s.network,
        labels=tuple(sorted(s.labels.items())),
    )
    return kind, spec, req.replicas or 1, req.request_id


def resource_id(value: str) -> str:
    if not value:
        raise InvalidRequest.field("resource_id", "is required")
    if len(value) > MAX_ID:
        raise InvalidRequest.field("resource_id", f"at most {MAX_ID} characters")
    return value


def check_exec(req: pb.ExecuteRequest) -> None:
    bad: list[FieldViolation] = []
    if not req.resource_id:
        bad.append(FieldViolation("resource_id", "is required"))
    if not req.command or not req.command[0]:
        bad.append(FieldViolation("command", "needs the program as its first entry"))
    elif len(req.command) > MAX_ARGS or any("\0" in a for a in req.command):
        bad.append(FieldViolation("command", f"at most {MAX_ARGS} entries, without NUL"))
    _env(req.env, "env", bad)
    if len(req.stdin) > MAX_STDIN:
        bad.append(FieldViolation("stdin", "at most 4 MiB"))
    if req.timeout_ms < 0:
        bad.append(FieldViolation("timeout_ms", "must be at least 0"))
    if req.replica < 0:
        bad.append(FieldViolation("replica", "must be at least 0"))
    if bad:
        raise InvalidRequest("; ".join(f"{v.field}: {v.description}" for v in bad), bad)


def _ts(unix_s: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(unix_s * 1e9))
    return t


def resource_pb(r: Resource) -> pb.Resource:
    s = r.spec
    spec = pb.ResourceSpec(
        cpu_millis=s.cpu_millis,
        memory_mib=s.memory_mib,
        disk_gib=s.disk_gib,
        gpu_count=s.gpu_count,
        gpu_type=s.gpu_type,
        node=s.node,
        storage=s.storage,
        env={name: "" for name, _ in s.env},  # names only: values may be secrets
        network=s.network,
        labels=dict(s.labels),
    )
    if s.image:
        spec.image = s.image
    elif s.template:
        spec.template = s.template
    out = pb.Resource(
        resource_id=r.resource_id,
        backend=BACKEND_PB[r.backend],
        spec=spec,
        status=STATUS_PB[r.status],
        status_message=r.status_message[:1024],
        replicas=len(r.replicas),
        backend_ids=[x.backend_id for x in r.replicas],
        addresses=[x.address for x in r.replicas],
        create_time=_ts(r.created_at),
    )
    if r.last_used_at is not None:
        out.last_used_time.CopyFrom(_ts(r.last_used_at))
    if r.released_at is not None:
        out.release_time.CopyFrom(_ts(r.released_at))
    return out


def stats_pb(s: InfraStats, configured: list[BackendKind]) -> pb.GetStatsResponse:
    def cap(c: object) -> pb.ComputeCapacity:
        return pb.ComputeCapacity(
            cpu_millis=getattr(c, "cpu_millis", 0),
            memory_mib=getattr(c, "memory_mib", 0),
            disk_gib=getattr(c, "disk_gib", 0),
            gpu_count=getattr(c, "gpu_count", 0),
        )

    return pb.GetStatsResponse(
        total_capacity=cap(s.total),
        available_capacity=cap(s.available),
        status_counts=[
            pb.ResourceStatusCount(status=STATUS_PB[st], count=n)
            for st, n in sorted(s.by_status.items(), key=lambda kv: STATUS_PB[kv[0]])
            if n
        ],
        backend_counts=[
            pb.ComputeBackendCount(backend=BACKEND_PB[k], count=s.by_backend.get(k, 0))
            for k in configured
        ],
        executions=s.executions,
        containers_created=s.containers_created,
        vms_created=s.vms_created,
        processes_created=s.processes_created,
    )
