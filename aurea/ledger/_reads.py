"""The ledger book's reads (``aurea.ledger._book``): settled totals since start, and the store's
job views, read once everything decided so far is applied, with this process's in-flight
figures laid over them (a base class the book inherits)."""

from __future__ import annotations

import collections

from aurea.ledger._account import Account
from aurea.ledger._journal import Journal
from aurea.ledger._writes import Writes
from aurea.stores import JobView, LedgerStore, Page, Summary, UsageTotals, WallClock

__all__ = ["BookReads"]


class BookReads:
    """What ``LedgerBook`` answers about jobs and spend; the book sets the attributes in its
    ``__init__``."""

    store: LedgerStore
    journal: Journal
    _writes: Writes
    _accounts: collections.OrderedDict[str, Account]
    _totals: dict[tuple[str, str], list[int]]
    _wall: WallClock

    @property
    def totals(self) -> dict[tuple[str, str], UsageTotals]:
        """Settled spend since this process started, by (model, provider)."""
        return {
            (m, p): UsageTotals(
                model=m, provider=p, calls=c, input_tokens=i, output_tokens=o, cost_nanos=n
            )
            for (m, p), (c, i, o, n) in self._totals.items()
        }

    def _overlay(self, view: JobView) -> JobView:
        """The store's view with this process's in-flight figures (the truth while it lives)."""
        acct = self._accounts.get(view.job_id)
        if acct is None or (
            acct.reserved == view.reserved_nanos and acct.active == view.active_leases
        ):
            return view
        return JobView(
            job_id=view.job_id,
            budget_nanos=view.budget_nanos,
            spent_nanos=view.spent_nanos,
            reserved_nanos=acct.reserved,
            active_leases=acct.active,
            created_at=view.created_at,
            updated_at=view.updated_at,
            by_model=view.by_model,
        )

    async def get_job(self, job_id: str) -> JobView | None:
        """The job as the store has it once everything decided so far is applied."""
        self._writes.flush()
        view: JobView | None = await self.journal.call(
            "get_job", lambda: self.store.get_job(job_id)
        )
        acct = self._accounts.get(job_id)
        if view is None and acct is not None and acct.active:
            # Only calls in flight so far, and a store that holds no leases: the book's view.
            now = self._wall()
            return JobView(
                job_id=job_id,
                budget_nanos=acct.budget,
                spent_nanos=acct.spent,
                reserved_nanos=acct.reserved,
                active_leases=acct.active,
                created_at=now,
                updated_at=now,
            )
        return None if view is None else self._overlay(view)

    async def list_jobs(self, *, prefix: str, after: str | None, limit: int) -> Page[JobView]:
        self._writes.flush()
        page: Page[JobView] = await self.journal.call(
            "list_jobs", lambda: self.store.list_jobs(prefix=prefix, after=after, limit=limit)
        )
        return Page(tuple(self._overlay(v) for v in page.items), page.next_cursor)

    async def summary(self, *, since: float | None, until: float | None) -> Summary:
        self._writes.flush()
        result: Summary = await self.journal.call(
            "summary", lambda: self.store.summary(since=since, until=until)
        )
        return result
