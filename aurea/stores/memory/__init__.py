"""In-memory stores: the zero-config default and the unit tests' stores (nothing persists)."""

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
