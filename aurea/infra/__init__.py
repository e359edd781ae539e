"""Compute provisioning: the Provisioner actor, its backends (local processes, Docker, Proxmox
VMs and LXC) and the durable record of resources. ``Infra`` is what the server builds from
``[infra]``: it spawns the actor and closes the backends and store at stop."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aurea.config import InfraSettings
from aurea.infra._build import build_backends, build_limits, build_store
from aurea.infra.backend import ComputeBackend
from aurea.infra.messages import ProvisionerMsg
from aurea.infra.model import BackendKind, Resource, ResourceStatus, Spec
from aurea.infra.provisioner import Limits, Provisioner
from aurea.runtime import ActorRef, ActorSystem

__all__ = [
    "BackendKind",
    "ComputeBackend",
    "Infra",
    "Limits",
    "Provisioner",
    "Resource",
    "ResourceStatus",
    "Spec",
]

Publish = Callable[[str, Mapping[str, str]], None]


class Infra:
    """The provisioner as a server runs it. Backends and store outlive actor restarts."""

    def __init__(
        self,
        settings: InfraSettings,
        system: ActorSystem,
        *,
        capacity: int = 1024,
        publish: Publish | None = None,
    ) -> None:
        self.settings = settings
        self.backends = build_backends(settings)
        self.store = build_store(settings)
        self.limits = build_limits(settings)
        backends, store, limits = self.backends, self.store, self.limits

        def factory() -> Provisioner:
            return Provisioner(
                backends=backends,
                store=store,
                limits=limits,
                owner=settings.owner,
                publish=publish,
            )

        self.ref: ActorRef[ProvisionerMsg] = system.spawn("provisioner", factory, capacity=capacity)

    @property
    def kinds(self) -> list[BackendKind]:
        return [BackendKind(k) for k in self.backends]

    async def aclose(self) -> None:
        """Close backends (connections, threads) and the store; resources stay where they are
        and are re-adopted at the next start."""
        for backend in self.backends.values():
            await backend.aclose()
        await self.store.close()
