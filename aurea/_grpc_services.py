"""The server's gRPC services: every servicer built on ``AureaServer``'s parts (services a
server does not run answer UNIMPLEMENTED), health and reflection, on one ``grpc.aio`` server
that ``AureaServer.start`` binds and starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from aurea._services import _SERVICES, SERVICE_NAMES
from aurea.api.inference import InferenceServicer
from aurea.api.infrastructure import InfrastructureServicer
from aurea.api.interceptors import server_kwargs
from aurea.api.keys import KeyedAdminServicer
from aurea.api.ledger import LedgerServicer
from aurea.api.router import RouterServicer
from aurea.api.tasks import TaskServicer
from aurea.api.unimplemented import fill_unimplemented
from aurea.cache import CachedInference

if TYPE_CHECKING:
    from aurea.server import AureaServer

__all__ = ["grpc_server"]


def grpc_server(
    server: AureaServer, inference: CachedInference, *, version: str
) -> grpc.aio.Server:
    """The gRPC server of ``server`` with every service added, not yet bound to a port."""
    s = server.settings
    out = grpc.aio.server(**server_kwargs(s, server.edge))
    servicers: Mapping[str, Any] = {
        "InferenceService": InferenceServicer(inference),
        "TaskService": server.task_system.tasks and TaskServicer(server.task_system.tasks),
        "AdminService": KeyedAdminServicer(
            keys=server.key_admin,
            settings=s,
            system=server.system,
            providers=server.provider_refs,
            version=version,
            features=server._features(),
            draining=lambda: server.draining,
            cpu=server.cpu,
            limits=server.limits,
            host_cpu=server.host_cpu,
            events=server.events,
            pools=server._task_pools,
            call_metrics=server.call_metrics,
            ledger=server.ledger,
            cache=server.cache,
        ),
        "InfrastructureService": server.infra and InfrastructureServicer.of(server.infra, s),
        "LedgerService": server.ledger and LedgerServicer(server.ledger),
        "RouterService": server.router
        and RouterServicer(
            view=server.router_view,
            router=server.router,
            ask_timeout_s=s.runtime.ask_timeout_s,
        ),
    }
    for module, base, add, name in _SERVICES:
        servicer = servicers.get(name) or base()
        add(fill_unimplemented(servicer, base, module.DESCRIPTOR.services_by_name[name]), out)
    health_pb2_grpc.add_HealthServicer_to_server(server.health, out)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), out
    )
    return out
