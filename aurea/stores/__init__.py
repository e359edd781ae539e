"""Stores: the small protocols behind which the ledger, limiter, router stats and task queue keep
their state, with in-memory, SQLite and Redis implementations (``aurea.stores.redis``: one
server, Sentinel or Cluster).

Every protocol method is one atomic step in its store (one SQLite transaction; a Redis Lua script,
one per job or model), so callers never read, decide and write back across calls. Every
time-dependent method takes ``now`` (wall seconds from an injected ``WallClock``; see
``aurea.stores._common``).
"""

from aurea.stores._common import MAX_PAGE_SIZE, Page, StoreUnavailable, WallClock, wall_clock
from aurea.stores.ledger import (
    ChargeOp,
    ExpireOp,
    ExtendOp,
    JobView,
    LeaseEnd,
    LeaseState,
    LeaseView,
    LedgerOp,
    LedgerResult,
    LedgerStore,
    ReleaseOp,
    Reservation,
    ReserveOp,
    ReserveStatus,
    SettleOp,
    Spend,
    Summary,
    UsageTotals,
)
from aurea.stores.limiter import Admission, LimiterStore, Quota
from aurea.stores.router_stats import ModelStats, Outcome, RouterStatsStore
from aurea.stores.tasks import (
    Enqueued,
    NewTask,
    PoolCount,
    TaskFilter,
    TaskQueueStore,
    TaskRecord,
    TaskState,
)

__all__ = [
    "MAX_PAGE_SIZE",
    "Admission",
    "ChargeOp",
    "Enqueued",
    "ExpireOp",
    "ExtendOp",
    "JobView",
    "LeaseEnd",
    "LeaseState",
    "LeaseView",
    "LedgerOp",
    "LedgerResult",
    "LedgerStore",
    "LimiterStore",
    "ModelStats",
    "NewTask",
    "Outcome",
    "Page",
    "PoolCount",
    "Quota",
    "ReleaseOp",
    "Reservation",
    "ReserveOp",
    "ReserveStatus",
    "RouterStatsStore",
    "SettleOp",
    "Spend",
    "StoreUnavailable",
    "Summary",
    "TaskFilter",
    "TaskQueueStore",
    "TaskRecord",
    "TaskState",
    "UsageTotals",
    "WallClock",
    "wall_clock",
]
