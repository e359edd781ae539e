"""The cost ledger: per-job budgets that are never overshot, reservations (leases) that always
return, and what every call cost, by job, model and provider.

``LedgerBook`` keeps each job's figures and writes them, in order, to a ``LedgerStore``;
``LedgerGuard`` reserves each attempt's worst case before it reaches a provider and settles its
actual cost after; ``CallMetricsBook`` sums calls since start for the admin summary.
"""

from aurea.ledger._book import Account, Lease, LedgerBook
from aurea.ledger._guard import DEFAULT_JOB, LedgerGuard, LedgerPermit, default_job
from aurea.ledger._metrics import CallMetrics, CallMetricsBook
from aurea.ledger._setup import default_db_path, open_ledger
from aurea.ledger._shared import SharedLedgerBook, open_shared_ledger

__all__ = [
    "DEFAULT_JOB",
    "Account",
    "CallMetrics",
    "CallMetricsBook",
    "Lease",
    "LedgerBook",
    "LedgerGuard",
    "LedgerPermit",
    "SharedLedgerBook",
    "default_db_path",
    "default_job",
    "open_ledger",
    "open_shared_ledger",
]
