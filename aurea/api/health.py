"""``grpc.health.v1.Health`` with a cap on open ``Watch`` streams.

Health stays unauthenticated on purpose: load balancers and Kubernetes probes send no API key,
and the answer (SERVING / NOT_SERVING per service) reveals nothing. What an open door must not
allow is unbounded resources, so at most ``server.max_health_watches`` Watch streams are open at
once; one more gets RESOURCE_EXHAUSTED (``Check`` is unary, cheap and stays uncapped).
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health

__all__ = ["MAX_SERVICE_NAME", "CappedHealthServicer"]

# Longer names name no service here, and each watched name holds memory while watched.
MAX_SERVICE_NAME = 256


class CappedHealthServicer(health.aio.HealthServicer):
    """grpc's asyncio HealthServicer, refusing Watch streams beyond ``max_watches``."""

    def __init__(self, *, max_watches: int) -> None:
        super().__init__()
        self.max_watches = max_watches
        self.watching = 0

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        if len(request.service) > MAX_SERVICE_NAME:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"service names are at most {MAX_SERVICE_NAME} characters",
            )
        if self.watching >= self.max_watches:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.watching} health Watch streams are open, the most this server allows "
                "(server.max_health_watches); poll with Check, or retry later",
            )
        self.watching += 1
        try:
            await super().Watch(request, context)
        finally:
            self.watching -= 1
