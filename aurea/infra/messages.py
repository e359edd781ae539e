"""The provisioner's messages (asks from the API edge, settle messages from its own tasks) and
the permit an ``Execute`` call holds while its command runs."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from aurea.errors import AureaError
from aurea.infra.backend import ComputeBackend
from aurea.infra.model import (
    BackendKind,
    Found,
    InfraStats,
    Replica,
    Resource,
    ResourceStatus,
    Spec,
)
from aurea.runtime import Ask

if TYPE_CHECKING:
    from aurea.runtime import ActorRef

__all__ = [
    "BeginExec",
    "Cleanup",
    "ExecDone",
    "ExecPermit",
    "GetResource",
    "GetStats",
    "ListResources",
    "Provision",
    "ProvisionerMsg",
    "Release",
    "ResourcePage",
    "Scale",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Provision(Ask[Resource]):
    backend: BackendKind
    spec: Spec
    replicas: int = 1
    request_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetResource(Ask[Resource]):
    resource_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourcePage:
    resources: tuple[Resource, ...]
    next_cursor: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListResources(Ask[ResourcePage]):
    """``statuses`` empty means every status but RELEASED; ``backend`` None means any."""

    statuses: frozenset[ResourceStatus] = frozenset()
    backend: BackendKind | None = None
    page_size: int = 100
    cursor: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BeginExec(Ask["ExecPermit"]):
    resource_id: str
    replica: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Release(Ask[Resource]):
    resource_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale(Ask[Resource]):
    resource_id: str
    replicas: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Cleanup(Ask[tuple[str, ...]]):
    idle_s: float
    backend: BackendKind | None = None
    validate_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStats(Ask[InfraStats]):
    pass


# Settle messages, posted by the provisioner's own tasks (never refused).


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecDone:
    resource_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    """The backend accepted (error None) or refused a pending resource's spec."""

    resource_id: str
    error: AureaError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Created:
    """Replicas made for a resource (by Provision or a Scale up); ``error`` when some failed
    (those made are in ``replicas`` and must be destroyed)."""

    resource_id: str
    replicas: tuple[Replica, ...]
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Destroyed:
    resource_id: str
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaledUp(Ask[Resource]):
    """Asked by a Scale's task once the backend work is done, so its reply shows the result."""

    resource_id: str
    replicas: tuple[Replica, ...]
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaledDown(Ask[Resource]):
    resource_id: str
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Discovered:
    """What a backend found at start (``error`` when it could not be asked)."""

    backend: BackendKind
    found: tuple[Found, ...] = ()
    error: str = ""


ProvisionerMsg = (
    Provision
    | GetResource
    | ListResources
    | BeginExec
    | Release
    | Scale
    | Cleanup
    | GetStats
    | ExecDone
    | Checked
    | Created
    | Destroyed
    | ScaledUp
    | ScaledDown
    | Discovered
)


class ExecPermit:
    """One admitted command: names the backend and replica to run it in; releasing it
    (``async with``) tells the provisioner the resource is idle again."""

    __slots__ = ("_ref", "_released", "backend", "replica", "resource_id", "spec")

    def __init__(
        self,
        ref: ActorRef[ProvisionerMsg],
        resource_id: str,
        backend: ComputeBackend,
        replica: Replica,
        spec: Spec,
    ) -> None:
        self._ref = ref
        self.resource_id = resource_id
        self.backend = backend
        self.replica = replica
        self.spec = spec
        self._released = False

    def release(self) -> None:
        msg = self.abandon()
        if msg is not None:
            self._ref.post(msg)

    def abandon(self) -> ExecDone | None:
        if self._released:
            return None
        self._released = True
        return ExecDone(resource_id=self.resource_id)

    async def __aenter__(self) -> ExecPermit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
