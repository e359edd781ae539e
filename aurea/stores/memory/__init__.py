"""In-memory stores: the zero-config default and the unit tests' stores (nothing persists)."""

from aurea.stores import LedgerStore, LimiterStore, RouterStatsStore, TaskQueueStore
from aurea.stores.memory.ledger import MemoryLedgerStore
from aurea.stores.memory.limiter import MemoryLimiterStore
from aurea.stores.memory.router_stats import MemoryRouterStatsStore
from aurea.stores.memory.tasks import MemoryTaskQueueStore

__all__ = [
    "MemoryLedgerStore",
    "MemoryLimiterStore",
    "MemoryRouterStatsStore",
    "MemoryTaskQueueStore",
]


def _conforms(
    ledger: MemoryLedgerStore,
    limiter: MemoryLimiterStore,
    stats: MemoryRouterStatsStore,
    tasks: MemoryTaskQueueStore,
) -> tuple[LedgerStore, LimiterStore, RouterStatsStore, TaskQueueStore]:
    """Never called: here mypy checks that each class implements its protocol."""
    return ledger, limiter, stats, tasks
