"""The shared ledger book's writes to the store (``aurea.ledger._shared``): settles' spend
charged out of each job's block, many per store call, and the rotations that reserve a job's
block afresh (growing, renewing or giving it back), each queued in the journal in the order
the book decided it (a base class the book inherits)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from aurea.ledger._blocks import BlockStore, _Block, _ladder
from aurea.ledger._book import Account, Lease
from aurea.ledger._journal import Journal, Op
from aurea.stores import (
    ChargeOp,
    LedgerOp,
    LedgerStore,
    ReleaseOp,
    Reservation,
    ReserveOp,
    Spend,
    WallClock,
)

__all__ = ["BlockWrites"]

log = structlog.get_logger("aurea.ledger")


class BlockWrites:
    """Charges and rotations for ``SharedLedgerBook``, which sets the attributes in its
    ``__init__`` (see there)."""

    store: LedgerStore
    store_blocks: BlockStore
    journal: Journal
    lease_ttl_s: float
    default_budget_nanos: int | None
    _blocks: dict[str, _Block]
    _pending: list[tuple[ChargeOp, asyncio.Future[Any]]]
    _consuming: dict[str, int]
    _flush_queued: bool
    _block_ids: str
    _block_seq: int
    _consume_seq: int
    _wall: WallClock
    _clock: Callable[[], float]

    def consumed(
        self, lease: Lease, cost: int, input_tokens: int, output_tokens: int
    ) -> asyncio.Future[Any]:
        """Queue a settle's spend; the future resolves once the store holds it."""
        job_id = lease.account.job_id
        op = ChargeOp(
            job_id=job_id,
            spend=Spend(cost_nanos=cost, input_tokens=input_tokens, output_tokens=output_tokens),
            now=self._wall(),
            default_budget_nanos=self.default_budget_nanos,
            model=lease.model,
            provider=lease.provider,
        )
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((op, fut))
        self._consuming[job_id] = self._consuming.get(job_id, 0) + cost
        if not self._flush_queued:
            self._flush_queued = True
            self.journal.append(Op("consume", self._flush_run()))
        return fut

    def _flush_run(self) -> Callable[[], Awaitable[None]]:
        taken: list[tuple[ChargeOp, asyncio.Future[Any]]] | None = None
        seq = 0

        async def run() -> None:
            nonlocal taken, seq
            if taken is None:  # the first try takes what is pending; a retry sends the same,
                taken, self._pending = self._pending, []  # under the same number (applied once)
                self._flush_queued = False
                self._consume_seq += 1
                seq = self._consume_seq
            # Each charge comes out of the block its job holds now (a rotation queued before
            # this write has already counted it in the block it reserved).
            items = [(self._block_id(op.job_id), op) for op, _ in taken]
            await self.store_blocks.consume(items, writer=self._block_ids, seq=seq)
            for op, fut in taken:
                left = self._consuming.get(op.job_id, 0) - op.spend.cost_nanos
                if left > 0:
                    self._consuming[op.job_id] = left
                else:
                    self._consuming.pop(op.job_id, None)
                if not fut.done():
                    fut.set_result(None)

        return run

    def _block_id(self, job_id: str) -> str:
        block = self._blocks.get(job_id)
        return block.lease_id if block is not None else ""

    # -- rotations -----------------------------------------------------------------------------

    def _next_block_id(self) -> str:
        self._block_seq += 1
        return f"{self._block_ids}{self._block_seq}"

    def _rotate(self, acct: Account, block: _Block, *, need: int, grow: bool = False) -> None:
        """Queue a rotation of the job's block: release the old lease and reserve a new one
        holding what this replica still has plus what waiting calls want (``wanted``, at least
        one call's ``need``), plus ``ahead`` if that fits too."""
        ahead = block.ahead if (need or grow) else 0
        sent_at = self._clock()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        block.pending = fut
        job_id = acct.job_id
        # Chosen once: a retried rotation whose first try did reach the store finds its new
        # lease there (a reserve of an existing lease changes nothing).
        new_id = self._next_block_id()

        async def run() -> None:
            # Runs in the writer, after every charge queued before it: sizes are taken now.
            spent0 = acct.spent
            # Charges queued after this rotation are spent here but not yet in the store: the
            # new block keeps holding them until they land (counted twice meanwhile, never
            # zero times), and they are not this replica's to use.
            pending = self._consuming.get(job_id, 0)
            have = max((acct.budget or 0) - spent0, 0) + pending
            wanted, block.wanted = block.wanted, 0
            one = min(need, wanted) if wanted else 0
            ops: list[LedgerOp] = []
            now = self._wall()
            if block.lease_id:
                ops.append(ReleaseOp(lease_id=block.lease_id, now=now, job_id=job_id))
            for size in _ladder(have, wanted, ahead, one):
                ops.append(
                    ReserveOp(
                        job_id=job_id,
                        lease_id=new_id,
                        amount_nanos=size,
                        ttl_s=self.lease_ttl_s,
                        now=now,
                        default_budget_nanos=self.default_budget_nanos,
                    )
                )
            results = await self.store.apply(ops)
            r = results[-1]
            assert isinstance(r, Reservation)
            if r.granted:
                block.lease_id = new_id
                block.refused = None if r.lease_nanos >= have + wanted else r
                # What this replica may use: the granted block less the charges it holds for
                # (already spent here); charges made while the store answered come out of it.
                acct.budget = spent0 + r.lease_nanos - pending
                block.valid_until = sent_at + self.lease_ttl_s / 2
                block.renewed_at = sent_at
            else:
                # Even what it held does not fit (the budget was cut below it): nothing more.
                block.lease_id = ""
                block.refused = r
                acct.budget = acct.spent
                log.warning("ledger_block_lost", job_id=job_id, status=str(r.status))

        def done(_: Any) -> None:
            if block.pending is fut:
                block.pending = None

        fut.add_done_callback(done)
        self.journal.append(Op("rotate", run, future=fut))

    def _release(self, acct: Account, block: _Block) -> None:
        lease_id, block.lease_id = block.lease_id, ""
        acct.budget = acct.spent  # nothing more is reserved from it, from now on
        block.valid_until = 0.0
        self.journal.append(
            Op(
                "release_block",
                item=ReleaseOp(lease_id=lease_id, now=self._wall(), job_id=acct.job_id),
            )
        )
