"""The ledger guard and its permit: worst-case reservation, the local per-delta check that stops a
stream one delta before its lease (so its final cost stays within the budget), and the settle on
every exit path."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator

import pytest

from aurea.actors.router import Candidate
from aurea.config import ModelSpec
from aurea.edge import current_scope
from aurea.errors import BudgetExceeded
from aurea.inference import AttemptInfo
from aurea.inference.calls import CallKind
from aurea.ledger import LedgerBook, LedgerGuard, LedgerPermit, default_job
from aurea.pricing import cost_nanos, worst_case_nanos
from aurea.providers._base import Usage
from aurea.stores.memory import MemoryLedgerStore
from aurea.types import CallScope

MODEL = ModelSpec(
    name="m",
    provider="p",
    upstream="m-up",
    input_nanos_per_mtok=1_000_000,  # $1 / Mtok: 1 nano-dollar per token
    cached_input_nanos_per_mtok=500_000,
    output_nanos_per_mtok=4_000_000,  # 4 nano-dollars per token
    reasoning_nanos_per_mtok=8_000_000,
    default_max_tokens=100,
)
CAND = Candidate(model=MODEL, reason="test")


@pytest.fixture
async def book() -> AsyncIterator[LedgerBook]:
    b = LedgerBook(MemoryLedgerStore(), default_budget_nanos=10_000, lease_ttl_s=60, durable=False)
    await b.start()
    yield b
    await b.stop()


def _info(kind: CallKind = CallKind.STREAM, job: str = "j", max_tokens: int = 0) -> AttemptInfo:
    return AttemptInfo(request_id="r", kind=kind, job_id=job, max_tokens=max_tokens)


async def _permit(book: LedgerBook, info: AttemptInfo) -> LedgerPermit:
    permit = await LedgerGuard(book).admit(info, CAND)
    assert isinstance(permit, LedgerPermit)
    return permit


async def test_admission_reserves_the_worst_case(book: LedgerBook) -> None:
    permit = await _permit(book, _info(max_tokens=50))
    # 50 output tokens at the dearer of the output and reasoning prices
    assert permit.lease.amount == worst_case_nanos(MODEL, 0, 50) == 400
    default = await _permit(book, _info(CallKind.UNARY))
    assert default.lease.amount == 800  # the model's default_max_tokens
    embed = await _permit(book, _info(CallKind.EMBED))
    assert embed.lease.amount == 0  # no output; its input is charged from usage
    for p in (permit, default, embed):
        await p.__aexit__(None, None, None)
    assert (await book.account("j")).reserved == 0


async def test_refused_before_anything_runs(book: LedgerBook) -> None:
    await book.set_budget("poor", 399)
    with pytest.raises(BudgetExceeded) as info:
        await _permit(book, _info(job="poor", max_tokens=50))
    assert (info.value.budget_nanos, info.value.spent_nanos) == (399, 0)
    assert (await book.account("poor")).active == 0


async def test_default_job_per_key_and_from_the_edge_scope(book: LedgerBook) -> None:
    assert default_job("") == "default"
    assert default_job("team-a") == "default:team-a"
    p = await _permit(book, AttemptInfo(request_id="r", kind=CallKind.UNARY, principal="k1"))
    assert p.lease.account.job_id == "default:k1"
    token = current_scope.set(CallScope(request_id="r", operation="x", principal="k2"))
    try:
        q = await _permit(book, AttemptInfo(request_id="r", kind=CallKind.UNARY))
    finally:
        current_scope.reset(token)
    assert q.lease.account.job_id == "default:k2"
    r = await _permit(book, AttemptInfo(request_id="r", kind=CallKind.UNARY))
    assert r.lease.account.job_id == "default"
    for x in (p, q, r):
        await x.__aexit__(None, None, None)


def _stream_usage(tokens: int) -> Usage:
    return Usage(input_tokens=10, output_tokens=tokens, estimated=True)


async def test_a_stream_within_its_lease_never_asks(book: LedgerBook) -> None:
    permit = await _permit(book, _info(max_tokens=50))
    lease = permit.lease.amount
    for n in range(1, 30):
        u = _stream_usage(n)
        permit.observe(u, cost_nanos(MODEL, u))
    assert permit.lease.amount == lease
    await permit.__aexit__(None, None, None)
    acct = await book.account("j")
    assert acct.spent == cost_nanos(MODEL, _stream_usage(29)) and acct.reserved == 0


async def test_a_stream_grows_its_lease_then_stops_within_it(book: LedgerBook) -> None:
    await book.set_budget("tight", 600)
    permit = await _permit(book, _info(job="tight", max_tokens=50))  # holds 400
    stopped_at = None
    last_ok = 0
    for n in range(1, 200):
        u = _stream_usage(n)
        c = cost_nanos(MODEL, u)
        try:
            permit.observe(u, c)
        except BudgetExceeded as exc:
            stopped_at = (n, c)
            assert exc.job_id == "tight"
            break
        last_ok = c
    assert stopped_at is not None
    n, c = stopped_at
    # The delta that raised is withheld but charged (the stream body does so): it still fits.
    assert last_ok < c <= permit.lease.amount <= 600
    permit.observe(_stream_usage(n), c)  # the body's final word: recorded, no second raise
    await permit.__aexit__(None, None, None)
    acct = await book.account("tight")
    assert acct.spent == c <= 600 and acct.reserved == 0


async def test_a_provider_count_past_the_budget_is_charged_up_to_the_budget_only(
    book: LedgerBook,
) -> None:
    await book.set_budget("j2", 500)
    permit = await _permit(book, _info(CallKind.UNARY, job="j2", max_tokens=50))
    reported = Usage(input_tokens=300, output_tokens=50)  # 300 + 200: more than estimated
    with pytest.raises(BudgetExceeded) as info:
        permit.observe(reported, cost_nanos(MODEL, reported) + 1)
    assert info.value.limit_nanos == 500  # the lease, grown to all the budget had left
    await permit.__aexit__(None, None, None)
    acct = await book.account("j2")
    assert acct.spent == 500 and acct.reserved == 0


async def test_every_exit_path_settles(book: LedgerBook) -> None:
    # Nothing observed (refused upstream, cancelled before output): released, nothing spent.
    p = await _permit(book, _info(max_tokens=50))
    await p.__aexit__(RuntimeError, RuntimeError("upstream down"), None)
    # Abandoned mid-stream (cancel, failover): charged what it consumed.
    q = await _permit(book, _info(max_tokens=50))
    u = _stream_usage(7)
    q.observe(u, cost_nanos(MODEL, u))
    await q.__aexit__(KeyError, KeyError("x"), None)
    acct = await book.account("j")
    assert (acct.spent, acct.reserved, acct.active) == (cost_nanos(MODEL, u), 0, 0)
    view = await book.get_job("j")
    assert view is not None and view.by_model[0].calls == 1


async def test_many_random_streams_never_overspend(book: LedgerBook) -> None:
    rng = random.Random(11)
    await book.set_budget("shared", 20_000)
    live: list[tuple[LedgerPermit, int]] = []
    finals: list[int] = []
    for _ in range(400):
        if rng.random() < 0.5 or not live:
            with contextlib.suppress(BudgetExceeded):
                live.append((await _permit(book, _info(job="shared", max_tokens=60)), 0))
            continue
        i = rng.randrange(len(live))
        permit, n = live[i]
        n += rng.randrange(1, 4)
        u = _stream_usage(n)
        c = cost_nanos(MODEL, u)
        done = n >= 60 or rng.random() < 0.05
        try:
            permit.observe(u, c)
        except BudgetExceeded:
            assert c <= permit.lease.amount  # stopped one delta ahead: its cost still fits
            done = True
        if done:
            live.pop(i)
            await permit.__aexit__(None, None, None)
            finals.append(permit.cost_nanos)
        else:
            live[i] = (permit, n)
    for permit, _ in live:
        await permit.__aexit__(None, None, None)
        finals.append(permit.cost_nanos)
    acct = await book.account("shared")
    assert acct.reserved == 0
    assert acct.spent == sum(finals) <= 20_000
