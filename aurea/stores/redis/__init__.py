"""Stores shared by replicas on one Redis server: rate limits, the ledger, router stats and the
task queue, each operation one Lua script (one round trip, atomic), keys laid out for Redis
Cluster (see ``_client``). Needs the ``redis`` extra (``redis.asyncio``)."""

from aurea.stores import LedgerStore, LimiterStore, RouterStatsStore, TaskQueueStore
from aurea.stores.redis._client import RedisClient, open_redis
from aurea.stores.redis.ledger import RedisLedgerStore
from aurea.stores.redis.limiter import RedisLimiterStore
from aurea.stores.redis.router_stats import RedisRouterStatsStore
from aurea.stores.redis.tasks import RedisTaskQueueStore

__all__ = [
    "RedisClient",
    "RedisLedgerStore",
    "RedisLimiterStore",
    "RedisRouterStatsStore",
    "RedisTaskQueueStore",
    "open_redis",
]


def _conforms(
    ledger: RedisLedgerStore,
    limiter: RedisLimiterStore,
    stats: RedisRouterStatsStore,
    tasks: RedisTaskQueueStore,
) -> tuple[LedgerStore, LimiterStore, RouterStatsStore, TaskQueueStore]:
    """Never called: here mypy checks that each class implements its protocol."""
    return ledger, limiter, stats, tasks
