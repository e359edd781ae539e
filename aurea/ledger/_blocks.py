"""The shared book's blocks: one replica's lease on part of a job's budget, the sizes a rotation
asks for, the store protocol that charges spend out of a block, and the book's writes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aurea.stores import ChargeOp, LedgerStore, Reservation

if TYPE_CHECKING:
    from aurea.ledger._book import Lease
    from aurea.ledger._shared import SharedLedgerBook


@dataclass(slots=True, eq=False)
class _Block:
    """This replica's block of one job: the store lease that holds it."""

    lease_id: str = ""  # "" while none is held
    valid_until: float = 0.0  # monotonic: used only before then (half a TTL after a renewal)
    renewed_at: float = 0.0  # monotonic, when the last rotation was sent
    used_at: float = 0.0  # monotonic, the last reservation from it
    ahead: int = 0  # the margin the next refill asks for
    wanted: int = 0  # what calls waiting for the next rotation need beyond the room
    pending: asyncio.Future[Any] | None = None  # a rotation queued or running
    refused: Reservation | None = None  # the store's figures when it last refused


def _ladder(have: int, wanted: int, ahead: int, one: int) -> dict[int, None]:
    """The block sizes a rotation asks for, largest first; the store grants the first that
    fits. Between all that is wanted and one call's worth, halving steps (whole calls), so a
    job that cannot cover every waiting call still covers as many as it can."""
    sizes = {have + wanted + ahead: None, have + wanted: None}
    if one:
        calls = wanted // one
        while calls > 1:
            calls = (calls * 3) // 4 if calls > 4 else calls - 1
            sizes[have + calls * one] = None
        sizes[have + one] = None
    sizes[have] = None
    return sizes


class BlockStore(LedgerStore, Protocol):
    """A ledger store replicas share, which can charge spend *out of* a lease (``consume``),
    so a block shrinks by what was spent from it (``RedisLedgerStore``)."""

    async def consume(
        self, items: Sequence[tuple[str, ChargeOp]], *, writer: str = "", seq: int = 0
    ) -> None:
        """``writer``/``seq``: a retried batch (same numbers) applies once."""
        ...


class _Consumes:
    """The shared book's writes: a settle's spend is charged out of the job's block (the
    lease the replica holds at the time of the write), many settles per store call."""

    def __init__(self, book: SharedLedgerBook) -> None:
        self._book = book

    def opened(self, job_id: str) -> None:
        return None  # its first block creates it

    def reserved(self, lease: Lease) -> None:
        return None

    def extended(self, lease: Lease, add: int) -> None:
        return None

    def renewed(self, lease: Lease) -> None:
        return None

    def released(self, lease: Lease) -> None:
        return None

    def settled(
        self, lease: Lease, cost: int, input_tokens: int, output_tokens: int
    ) -> asyncio.Future[Any] | None:
        return self._book.consumed(lease, cost, input_tokens, output_tokens)

    def flush(self) -> None:
        return None  # a settle queues the write that carries it
