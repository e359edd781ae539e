"""Durable stores on one SQLite file (WAL, one dedicated thread): the embedded default.

``async with SqliteDatabase(path) as db:`` then build any of the stores on ``db``; they share
its connection, its thread and so one serialized order of writes.
"""

from aurea.stores import LedgerStore, LimiterStore, RouterStatsStore, TaskQueueStore
from aurea.stores.sqlite._db import SqliteDatabase
from aurea.stores.sqlite.ledger import SqliteLedgerStore
from aurea.stores.sqlite.limiter import SqliteLimiterStore
from aurea.stores.sqlite.router_stats import SqliteRouterStatsStore
from aurea.stores.sqlite.tasks import SqliteTaskQueueStore

__all__ = [
    "SqliteDatabase",
    "SqliteLedgerStore",
    "SqliteLimiterStore",
    "SqliteRouterStatsStore",
    "SqliteTaskQueueStore",
]


def _conforms(
    ledger: SqliteLedgerStore,
    limiter: SqliteLimiterStore,
    stats: SqliteRouterStatsStore,
    tasks: SqliteTaskQueueStore,
) -> tuple[LedgerStore, LimiterStore, RouterStatsStore, TaskQueueStore]:
    """Never called: here mypy checks that each class implements its protocol."""
    return ledger, limiter, stats, tasks
