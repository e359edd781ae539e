"""The ledger guard: before each attempt, reserve its worst-case cost against its job's budget
as a lease; while it runs, check every usage update against the lease, locally; at its end,
charge what it consumed (never more than the lease) and return the rest.

Per attempt this costs a few dictionary and integer operations in the caller's task (the book
decides in memory) plus, for a durable store, one awaited store round trip at the end (the
settle). ``observe`` never awaits and never asks anyone: a stream whose cost would cross its
lease grows the lease in memory, and when the job cannot cover that, the permit raises
``BudgetExceeded``, which the stream body turns into finish reason ``BUDGET_EXCEEDED``.

**Looking one delta ahead.** A stream's cost is estimated per delta, and the delta that would
cross the budget is not sent. The stream body charges what it generated, that withheld delta
included; so the permit stops the stream one delta *before* the lease would be crossed (the
next delta's cost is taken as twice the last one's growth, and at least four output tokens).
The final cost of a stopped stream is then within its lease, so within the job's budget, and
it is the cost the client is told.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

import structlog

from aurea.actors.router import Candidate
from aurea.edge import current_scope
from aurea.inference.calls import CallKind
from aurea.inference.guards import AttemptInfo, Guard, Permit
from aurea.ledger._book import Lease, LedgerBook
from aurea.ledger._shared import SharedLedgerBook
from aurea.pricing import output_token_nanos, worst_case_nanos
from aurea.providers._base import Usage

__all__ = ["DEFAULT_JOB", "LedgerGuard", "LedgerPermit", "default_job"]

log = structlog.get_logger("aurea.ledger")

DEFAULT_JOB = "default"
_LOOKAHEAD_MIN_TOKENS = 4


def default_job(principal: str) -> str:
    """The job a call without ``job_id`` is charged to: one per API key (``default:NAME``), and
    ``default`` when the server runs without keys."""
    return f"{DEFAULT_JOB}:{principal}" if principal else DEFAULT_JOB


def _principal(call: AttemptInfo) -> str:
    if call.principal:
        return call.principal
    # The edge's scope of the call this task serves (a servicer that does not pass the
    # principal on): the same key, read where the edge left it.
    scope = current_scope.get()
    return scope.principal if scope is not None else ""


class LedgerGuard:
    """Reserves each attempt's worst case: estimated input tokens at the input price plus the
    attempt's output limit at the output price (the dearer of output and reasoning)."""

    name = "ledger"

    def __init__(self, book: LedgerBook) -> None:
        self.book = book
        self._token: dict[str, int] = {}  # model -> the most one output token adds
        self._shared = book if isinstance(book, SharedLedgerBook) else None

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> Permit:
        book = self.book
        job = call.job_id or default_job(_principal(call))
        acct = book.cached(job) or await book.account(job)
        model = candidate.model
        embed = call.kind is CallKind.EMBED
        max_out = 0 if embed else call.max_tokens or model.default_max_tokens
        # An unknown prompt estimate (0) leaves the input's cost to the lease's growth at the
        # first usage update, still before any output reaches the caller.
        worst = worst_case_nanos(model, call.input_tokens, max_out)
        if self._shared is not None:  # replicas share the budget: room from this one's block
            await self._shared.ensure_room(acct, worst)
        lease = book.reserve(acct, worst, model.name, model.provider)
        token = self._token.get(model.name)
        if token is None:
            token = self._token[model.name] = output_token_nanos(model)
        return LedgerPermit(book, lease, token, stream=call.kind is CallKind.STREAM)


class LedgerPermit:
    """One attempt's lease. ``observe`` is the per-delta check; ``__aexit__`` settles."""

    __slots__ = ("_book", "_cost", "_lease", "_safe", "_stopped", "_stream", "_token", "_usage")

    def __init__(self, book: LedgerBook, lease: Lease, token_nanos: int, *, stream: bool) -> None:
        self._book = book
        self._lease = lease
        self._stream = stream
        self._token = token_nanos  # the most one more output token adds to the cost
        self._cost = 0
        self._usage: Usage | None = None
        self._stopped = False
        # Costs up to ``_safe`` need no thought: the next delta surely fits the lease too.
        self._safe = lease.amount - self._margin(0)

    @property
    def lease(self) -> Lease:
        return self._lease

    @property
    def cost_nanos(self) -> int:
        """The last cost observed (what the attempt consumed, before any cap)."""
        return self._cost

    def _margin(self, step: int) -> int:
        """Room kept for the next delta: twice the last one's growth, at least four tokens."""
        return max(2 * step, _LOOKAHEAD_MIN_TOKENS * self._token) if self._stream else 0

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        prev = self._cost
        self._usage = usage
        self._cost = cost_nanos
        if cost_nanos <= self._safe or self._stopped:
            return  # the per-delta fast path: two stores and a comparison
        # Only estimates are looked past: a provider's own count is final.
        margin = self._margin(cost_nanos - prev) if usage.estimated else 0
        want = cost_nanos + margin
        if want > self._lease.amount:
            self._grow(cost_nanos, want)
        self._safe = self._lease.amount - margin

    def _grow(self, cost: int, want: int) -> None:
        book, lease = self._book, self._lease
        need = want - lease.amount
        # One ask (of the book, in memory): a quarter of the lease more, so a long answer
        # grows its lease a few times, not per delta.
        if book.extend(lease, need, max(need, lease.amount // 4)):
            return
        if cost > lease.amount:
            # Already past the lease (the provider counted more than estimated): cover as much
            # of it as the budget still can; the rest is never charged.
            book.extend(lease, 1, cost - lease.amount)
        self._stopped = True
        exc = book.exhausted(lease.account)
        exc.limit_nanos = lease.amount  # the most this attempt will be charged
        raise exc

    async def __aenter__(self) -> LedgerPermit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lease = self._lease
        cost, usage = self._cost, self._usage
        charge = min(cost, lease.amount)
        if cost > charge:
            # Money the provider billed that the job's budget could not cover: never charged
            # past the budget, so the operator's loss, and said so.
            log.warning(
                "ledger_overrun",
                job_id=lease.account.job_id,
                model=lease.model,
                cost_nanos=cost,
                charged_nanos=charge,
            )
        if usage is None or (charge == 0 and exc_type is not None):
            self._book.release(lease)  # nothing consumed: the reservation simply returns
            return
        committed = self._book.settle(lease, charge, usage.input_tokens, usage.output_tokens)
        if committed is not None:
            # The answer goes out only once its spend is durable. A caller that gives up
            # waiting does not stop the write: it is queued, and the book already counts it.
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                async with asyncio.timeout(self._book.settle_wait_s):
                    await asyncio.shield(committed)


def _conforms(guard: LedgerGuard, permit: LedgerPermit) -> tuple[Guard, Permit]:
    """Never called: here mypy checks the guard and its permit against the core's protocols."""
    return guard, permit
