"""Fills every RPC a servicer does not implement yet with an UNIMPLEMENTED answer that names
the capability that will provide it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from aurea.errors import Unimplemented

# Which capability brings each not-yet-built part of the API.
CAPABILITY = {
    "RouterService": "adaptive routing (router stats and weights)",
    "LedgerService": "the cost ledger (job budgets and accounting)",
    "TaskService": "the task scheduler (queued tasks and worker pools)",
    "InfrastructureService": "compute provisioning (local processes, Docker, Proxmox)",
    "AdminService.GetMetricsSummary": "telemetry (Prometheus metrics and summaries)",
    "AdminService.WatchEvents": "the event bus",
    "AdminService.SetModelLimits": "the rate limiter",
}


def _message(service: str, method: str) -> str:
    cap = CAPABILITY.get(f"{service}.{method}") or CAPABILITY.get(service, "a later release")
    return f"{service}.{method} is not implemented yet in this Aurea build; it arrives with {cap}"


def fill_unimplemented(servicer: Any, base: type, service: ServiceDescriptor) -> Any:
    """Replace each method ``servicer`` inherits unchanged from the generated ``base``."""
    for m in service.methods:
        if getattr(type(servicer), m.name, None) is not getattr(base, m.name, None):
            continue  # implemented
        msg = _message(service.name, m.name)
        if m.server_streaming:

            async def stream(request: Any, context: Any, _msg: str = msg) -> AsyncIterator[Any]:
                raise Unimplemented(_msg)
                yield  # pragma: no cover - makes this an async generator

            setattr(servicer, m.name, stream)
        else:

            async def unary(request: Any, context: Any, _msg: str = msg) -> Any:
                raise Unimplemented(_msg)

            setattr(servicer, m.name, unary)
    return servicer
