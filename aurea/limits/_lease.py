"""Quota leased in batches: per model, units taken from the ``LimiterStore`` ahead of need and
handed out in process, so most attempts make no store call (DESIGN §1: the hot path makes at
most one store round trip per call; for Redis that is a network hop, in memory it is the store's
argument checks).

An attempt that needs more than the lease holds takes what is missing plus a batch ahead
(``Plan.ahead_*``: 1/50 of a minute's limit), all or none; when the store cannot give the batch
it asks for exactly what is missing, so a limit is reached exactly, never overshot. Units an
attempt gives back (an estimate larger than its usage, an attempt refused after admission) go
to the lease. A lease older than ``lease_s``, or one for limits that have since changed, is
returned to the store before anything else: units never outlive a second in a process, and the
store's refund never lets a bucket hold more than its burst.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aurea.limits._table import FORCE_BURST, Plan
from aurea.stores import Admission, LimiterStore, WallClock

__all__ = ["GRANTED", "Leases"]

GRANTED = Admission(granted=True)
LEASE_S = 1.0


class _Lease:
    __slots__ = ("plan", "requests", "since", "tokens")

    def __init__(self, plan: Plan, since: float) -> None:
        self.plan = plan
        self.requests = 0
        self.tokens = 0
        self.since = since


class Leases:
    """The leases of one process, per model. Owned by the limiter guard (one event loop: the
    only awaits are store calls, and every lease change happens between them)."""

    def __init__(
        self,
        store: LimiterStore,
        *,
        wall_clock: WallClock,
        clock: Callable[[], float] = time.monotonic,
        lease_s: float = LEASE_S,
    ) -> None:
        self._store = store
        self._wall = wall_clock
        self._clock = clock
        self._lease_s = lease_s
        self._by_model: dict[str, _Lease] = {}

    def _current(self, plan: Plan) -> _Lease | None:
        """The model's lease if it is for these limits and young enough; a stale one is
        detached (the caller returns it)."""
        lease = self._by_model.get(plan.limits.model)
        if lease is None or (lease.plan is plan and self._clock() - lease.since <= self._lease_s):
            return lease
        return None

    async def _retire(self, plan: Plan) -> None:
        lease = self._by_model.get(plan.limits.model)
        if lease is not None and self._current(plan) is None:
            del self._by_model[plan.limits.model]
            if lease.requests or lease.tokens:
                quotas = lease.plan.quotas_for(lease.requests, lease.tokens)
                await self._store.refund(quotas, now=self._wall())

    def take_now(self, plan: Plan, requests: int, tokens: int) -> bool:
        """Take from the lease if it holds enough (the hot path: no store call, no await)."""
        if not (requests or tokens):
            return True
        lease = self._by_model.get(plan.limits.model)
        if (
            lease is None
            or lease.plan is not plan
            or lease.requests < requests
            or lease.tokens < tokens
            or self._clock() - lease.since > self._lease_s
        ):
            return False
        lease.requests -= requests
        lease.tokens -= tokens
        return True

    def give_back_now(self, plan: Plan, requests: int, tokens: int) -> bool:
        """Give back to the current lease (no store call); False when there is none."""
        lease = self._by_model.get(plan.limits.model)
        if lease is None or lease.plan is not plan or self._clock() - lease.since > self._lease_s:
            return False
        lease.requests += requests
        lease.tokens += tokens
        return True

    async def take(self, plan: Plan, requests: int, tokens: int) -> Admission:
        """``requests`` and ``tokens`` of the model's quotas, from the lease or the store."""
        if self.take_now(plan, requests, tokens):
            return GRANTED
        await self._retire(plan)
        name = plan.limits.model
        lease = self._by_model.get(name)
        # What the lease has goes to this attempt now, before any await (so no other attempt
        # can take it meanwhile); the rest comes from the store.
        have_r = have_t = 0
        if lease is not None:
            have_r, have_t = min(lease.requests, requests), min(lease.tokens, tokens)
            lease.requests -= have_r
            lease.tokens -= have_t
        miss_r, miss_t = requests - have_r, tokens - have_t
        ahead_r = plan.ahead_requests if requests else 0
        ahead_t = plan.ahead_tokens if tokens else 0
        got_r, got_t = miss_r + ahead_r, miss_t + ahead_t
        now = self._wall()
        admission = await self._store.acquire(plan.quotas_for(got_r, got_t), now=now)
        if not admission.granted and (ahead_r or ahead_t):
            got_r, got_t = miss_r, miss_t
            admission = await self._store.acquire(plan.quotas_for(got_r, got_t), now=now)
        if not admission.granted:
            await self.give_back(plan, have_r, have_t)
            return admission
        if got_r > miss_r or got_t > miss_t:
            lease = self._current(plan)  # the store call may have awaited
            if lease is None:
                await self._retire(plan)
                lease = self._by_model[name] = _Lease(plan, self._clock())
            lease.requests += got_r - miss_r
            lease.tokens += got_t - miss_t
        return admission

    async def give_back(self, plan: Plan, requests: int, tokens: int) -> None:
        """Units an attempt took and did not use: to the lease, or to the store when the lease
        has gone stale or the limits changed."""
        if not (requests or tokens) or self.give_back_now(plan, requests, tokens):
            return
        await self._store.refund(plan.quotas_for(requests, tokens), now=self._wall())

    async def charge(self, plan: Plan, tokens: int) -> None:
        """Tokens used beyond what was taken: from the lease, the rest charged to the store
        after the fact (the bucket's level moves; later admissions wait for it)."""
        lease = self._current(plan)
        if lease is not None and lease.plan is plan:
            from_lease = min(lease.tokens, tokens)
            lease.tokens -= from_lease
            tokens -= from_lease
        if tokens:
            quota = plan.tpm_quota(tokens, burst=FORCE_BURST)
            await self._store.acquire((quota,), now=self._wall())
