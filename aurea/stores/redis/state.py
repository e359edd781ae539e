"""The state replicas share when ``[redis] url`` is set: one connection and the four stores on
it (limiter, ledger, router stats, task queue), opened by the server in place of the in-process
ones, and closed after everything that writes them has stopped."""

from __future__ import annotations

import structlog

from aurea.config import RedisSettings
from aurea.stores import StoreUnavailable
from aurea.stores.redis._client import RedisClient, open_redis
from aurea.stores.redis.ledger import RedisLedgerStore
from aurea.stores.redis.limiter import RedisLimiterStore
from aurea.stores.redis.router_stats import RedisRouterStatsStore
from aurea.stores.redis.tasks import RedisTaskQueueStore

__all__ = ["SharedState"]

log = structlog.get_logger("aurea.stores")

# Settled and released leases are remembered this long (a repeated settle is recognised);
# blocks rotate every quarter of the ledger's lease TTL, so a day would keep many.
_CLOSED_LEASE_RETENTION_S = 3600.0


class SharedState:
    """The shared stores on one Redis connection."""

    def __init__(self, client: RedisClient, *, aging_s_per_priority: float) -> None:
        self.client = client
        self.limiter = RedisLimiterStore(client)
        self.ledger = RedisLedgerStore(client, closed_lease_retention_s=_CLOSED_LEASE_RETENTION_S)
        self.router_stats = RedisRouterStatsStore(client)
        self.tasks = RedisTaskQueueStore(client, aging_s_per_priority=aging_s_per_priority)

    @classmethod
    async def open(cls, settings: RedisSettings, *, aging_s_per_priority: float) -> SharedState:
        """Connect (a server that does not answer yet is not fatal: the limiter and ledger fail
        closed until it does, and recover by themselves)."""
        client = open_redis(settings.url, prefix=settings.key_prefix, cluster=settings.cluster)
        try:
            await client.ping()
        except StoreUnavailable as exc:
            log.warning("redis_unavailable_at_start", error=exc.message)
        else:
            log.info(
                "redis_connected",
                server=client.where,
                key_prefix=settings.key_prefix,
                cluster=settings.cluster,
            )
        return cls(client, aging_s_per_priority=aging_s_per_priority)

    async def aclose(self) -> None:
        await self.client.aclose()
