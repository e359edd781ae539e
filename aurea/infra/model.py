"""The provisioning domain: what a resource is, the spec it is made from, and the values that
travel between the provisioner, its backends and the API edge (no protobuf here)."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = [
    "LIVE",
    "TERMINAL",
    "BackendKind",
    "Capacity",
    "ExecRequest",
    "ExecResult",
    "Found",
    "InfraStats",
    "OutputSink",
    "Replica",
    "Resource",
    "ResourceStatus",
    "Spec",
]


class BackendKind(enum.StrEnum):
    """Where a resource runs."""

    LOCAL = "local"  # processes on the Aurea host
    DOCKER = "docker"  # containers on any Docker Engine API endpoint
    PROXMOX_VM = "proxmox_vm"  # QEMU VMs cloned from a template
    PROXMOX_LXC = "proxmox_lxc"  # LXC containers from an OS template


class ResourceStatus(enum.StrEnum):
    PROVISIONING = "provisioning"
    RUNNING = "running"
    RELEASING = "releasing"
    RELEASED = "released"
    FAILED = "failed"


TERMINAL = frozenset({ResourceStatus.RELEASED, ResourceStatus.FAILED})
LIVE = frozenset({ResourceStatus.PROVISIONING, ResourceStatus.RUNNING, ResourceStatus.RELEASING})
"""Statuses that hold capacity: the backend may still have something for them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    """What one replica is made of. Zero amounts are replaced by the configured defaults before
    anything is created, so a stored spec always states the limits really applied."""

    cpu_millis: int = 0
    memory_mib: int = 0
    disk_gib: int = 0
    gpu_count: int = 0
    gpu_type: str = ""
    image: str = ""
    template: str = ""
    node: str = ""
    storage: str = ""
    env: tuple[tuple[str, str], ...] = ()
    network: str = ""
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Capacity:
    """An amount of compute: what a spec takes, or what the configured limits allow."""

    cpu_millis: int = 0
    memory_mib: int = 0
    disk_gib: int = 0
    gpu_count: int = 0

    @classmethod
    def of(cls, spec: Spec, replicas: int = 1) -> Capacity:
        return cls(
            spec.cpu_millis * replicas,
            spec.memory_mib * replicas,
            spec.disk_gib * replicas,
            spec.gpu_count * replicas,
        )

    def __add__(self, other: Capacity) -> Capacity:
        return Capacity(
            self.cpu_millis + other.cpu_millis,
            self.memory_mib + other.memory_mib,
            self.disk_gib + other.disk_gib,
            self.gpu_count + other.gpu_count,
        )

    def __sub__(self, other: Capacity) -> Capacity:
        return Capacity(
            self.cpu_millis - other.cpu_millis,
            self.memory_mib - other.memory_mib,
            self.disk_gib - other.disk_gib,
            self.gpu_count - other.gpu_count,
        )

    def shortfall(self, need: Capacity) -> list[str]:
        """What ``need`` lacks in ``self`` (the available part), in words; empty if it fits."""
        out = []
        for name, have, want in (
            ("cpu_millis", self.cpu_millis, need.cpu_millis),
            ("memory_mib", self.memory_mib, need.memory_mib),
            ("disk_gib", self.disk_gib, need.disk_gib),
            ("gpu_count", self.gpu_count, need.gpu_count),
        ):
            if want > have:
                out.append(f"{name} {want} > {max(have, 0)} available")
        return out


@dataclass(frozen=True, slots=True)
class Replica:
    """One unit a backend made: its id there (a pid, a container id, a Proxmox vmid), the node
    it runs on (Proxmox), an address where there is one, and ``key``, the backend's own handle
    where the id alone is not enough (a local replica's directory name); never shown."""

    backend_id: str
    node: str = ""
    address: str = ""
    key: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    """A provisioned unit of compute with its replicas, as the provisioner and the store keep it.
    Times are wall seconds (they must mean something after a restart)."""

    resource_id: str
    backend: BackendKind
    spec: Spec
    status: ResourceStatus
    status_message: str = ""
    replicas: tuple[Replica, ...] = ()
    created_at: float = 0.0
    last_used_at: float | None = None
    released_at: float | None = None
    request_id: str = ""

    @property
    def live(self) -> bool:
        return self.status in LIVE


@dataclass(frozen=True, slots=True)
class Found:
    """A replica a backend found carrying this Aurea's owner label (at start, to re-adopt what
    the store knows and release what it does not)."""

    resource_id: str
    replica: Replica
    running: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecRequest:
    """One command to run in a replica. ``timeout_s`` 0 means no limit of its own."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str = ""
    stdin: bytes = b""
    timeout_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ExecResult:
    """How a command ended: its exit code (-1 killed by a signal or timed out)."""

    exit_code: int
    duration_s: float
    timed_out: bool = False


OutputSink = Callable[[int, bytes], Awaitable[None]]
"""Receives each chunk of output as it is read: (1 stdout | 2 stderr, bytes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InfraStats:
    total: Capacity
    available: Capacity
    by_status: dict[ResourceStatus, int] = field(default_factory=dict)
    by_backend: dict[BackendKind, int] = field(default_factory=dict)
    executions: int = 0
    containers_created: int = 0
    vms_created: int = 0
    processes_created: int = 0
