"""``kill -9`` of a process writing to the SQLite stores loses nothing it was told is committed
and leaves every ledger invariant intact: no reservation lost or double-counted, spend exact,
tasks present, claimed-but-unacknowledged tasks back in the queue once their lease expires.

A child process hammers one file with concurrent ledger and task operations and prints a line
after each operation returns; the test SIGKILLs it mid-stream (three times, on the same file),
then reopens the file and checks the lines against what is stored. Some ledger operations go
one per transaction, others many per transaction (``apply``: a lease's settle with the next
one's reserve, and charges with no lease, as the book's group commit sends them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from aurea.stores import LeaseState, TaskState
from aurea.stores.sqlite import SqliteDatabase, SqliteLedgerStore, SqliteTaskQueueStore

pytestmark = pytest.mark.integration

BUDGET = 5_000_000
T0 = 1_700_000_000.0
LEASE_S = 3600.0
LINES_BEFORE_KILL = (150, 400, 900)
READ_TIMEOUT_S = 60.0  # a bound on a stuck child, not a performance claim

CHILD = r"""
import asyncio, random, sys
from aurea.stores import ChargeOp, NewTask, ReserveOp, SettleOp, Spend
from aurea.stores.sqlite import SqliteDatabase, SqliteLedgerStore, SqliteTaskQueueStore

path, rnd = sys.argv[1], sys.argv[2]
budget, t0, lease_s = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])

def say(*parts):
    print(*parts, flush=True)

async def call(ledger, i, rng):
    lease = f"{rnd}-l{i}"
    amount = rng.randint(1, 20_000)
    r = await ledger.reserve("job", lease, amount, lease_s, now=t0, default_budget_nanos=budget)
    if not r.granted:
        return
    say("reserved", lease, amount)
    await asyncio.sleep(0)
    if i % 4 == 0:
        await ledger.release(lease, now=t0)
        say("released", lease)
    elif i % 4 != 1:  # i % 4 == 1 stays active: in flight when the process dies
        cost = rng.randint(0, amount)
        await ledger.settle(lease, Spend(cost_nanos=cost, output_tokens=1), now=t0)
        say("settled", lease, cost)

async def batched(ledger, i, rng):
    # One transaction: settle lease i-1 (reserved by the previous batch) and reserve lease i.
    lease, prev = f"{rnd}-b{i}", f"{rnd}-b{i - 1}"
    amount, cost = rng.randint(1, 20_000), rng.randint(0, 100)
    ops = [ReserveOp(job_id="job", lease_id=lease, amount_nanos=amount, ttl_s=lease_s, now=t0,
                     default_budget_nanos=budget)]
    if i:
        ops.insert(0, SettleOp(lease_id=prev, spend=Spend(cost_nanos=cost), now=t0))
    results = await ledger.apply(ops)
    if i and results[0] == "closed":
        say("settled", prev, cost)
    if results[-1].granted:
        say("reserved", lease, amount)

async def charges(ledger, i, rng):
    costs = [rng.randint(1, 1000) for _ in range(rng.randint(1, 8))]
    ops = [ChargeOp(job_id="charged", spend=Spend(cost_nanos=c, output_tokens=1), now=t0,
                    default_budget_nanos=None, model="m") for c in costs]
    say("charging", i, sum(costs))
    await ledger.apply(ops)
    say("charged", i, sum(costs))

async def task(tasks, i):
    task_id = f"{rnd}-t{i}"
    await tasks.enqueue(NewTask(task_id=task_id, kind="k", pool="p", max_attempts=3), now=t0)
    say("enqueued", task_id)
    for t in await tasks.claim("p", f"{rnd}-w", lease_s, now=t0, limit=1):
        say("claimed", t.task_id, t.attempts)
        if i % 2:
            await tasks.ack(t.task_id, t.attempts, "ok", now=t0)
            say("acked", t.task_id)

async def main():
    rng = random.Random(rnd)
    async with SqliteDatabase(path) as db:
        ledger, tasks = SqliteLedgerStore(db), SqliteTaskQueueStore(db)
        say("ready")
        for batch in range(10_000):  # bounded: the test kills us long before
            base = batch * 16
            await asyncio.gather(*(call(ledger, base + k, rng) for k in range(12)),
                                 *(task(tasks, base + k) for k in range(4)),
                                 batched(ledger, batch, rng),
                                 charges(ledger, batch, rng))

asyncio.run(main())
"""


async def run_and_kill(path: Path, rnd: str, lines_before_kill: int) -> list[list[str]]:
    """Start the child, read ``lines_before_kill`` lines, SIGKILL it, return every line it
    printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(path),
        rnd,
        str(BUDGET),
        str(T0),
        str(LEASE_S),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[list[str]] = []
    try:
        while len(lines) < lines_before_kill:
            raw = await asyncio.wait_for(proc.stdout.readline(), READ_TIMEOUT_S)
            if not raw:
                err = await proc.stderr.read() if proc.stderr else b""
                pytest.fail(f"child exited early: {err.decode()[-2000:]}")
            lines.append(raw.decode().split())
    finally:
        # os.kill, not proc.kill(): Popen.send_signal polls first and may reap the child
        # before asyncio's watcher does, which then reports returncode 255.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # What the child printed before it died is still in the pipe: every operation it saw
    # return. (A line cut short by the kill has no newline, and is left out.)
    rest = await proc.stdout.read()
    lines += [line.split() for line in rest.decode().splitlines(keepends=True) if line[-1:] == "\n"]
    return lines


async def check_ledger(
    ledger: SqliteLedgerStore, db: SqliteDatabase, told: dict[str, tuple[str, int]]
) -> None:
    """Every confirmed operation is stored, and the job's sums equal its leases' sums."""
    for lease_id, (what, value) in told.items():
        lease = await ledger.get_lease(lease_id)
        assert lease is not None, lease_id
        if what == "settled":
            assert (lease.state, lease.spent_nanos) == (LeaseState.SETTLED, value)
        elif what in ("released", "expired"):
            assert lease.state is LeaseState(what)
        else:  # reserved: perhaps closed after the line was printed, but held exactly once
            assert lease.amount_nanos == value
    job = await ledger.get_job("job")
    assert job is not None

    def sums(conn: sqlite3.Connection) -> tuple[int, int, int, int, int]:
        active, n = conn.execute(
            "SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM ledger_leases WHERE state = 'active'"
        ).fetchone()
        (settled,) = conn.execute(
            "SELECT COALESCE(SUM(spent), 0) FROM ledger_leases WHERE state = 'settled'"
        ).fetchone()
        (by_model,) = conn.execute(
            "SELECT COALESCE(SUM(cost), 0) FROM ledger_job_models WHERE job_id = 'job'"
        ).fetchone()
        (buckets,) = conn.execute("SELECT COALESCE(SUM(cost), 0) FROM ledger_buckets").fetchone()
        return active, n, settled, by_model, buckets

    active, n, settled, by_model, buckets = await db.run(sums)
    charged = await ledger.get_job("charged")
    assert (job.reserved_nanos, job.active_leases) == (active, n)
    assert job.spent_nanos == settled == by_model
    assert buckets == job.spent_nanos + (charged.spent_nanos if charged else 0)
    assert job.spent_nanos + job.reserved_nanos <= BUDGET


def _subset_sums(values: list[int]) -> set[int]:
    sums = {0}
    for v in values:
        sums |= {s + v for s in sums}
    return sums


async def test_kill_9_mid_stream_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    told: dict[str, tuple[str, int]] = {}
    charged = 0  # charges confirmed: committed for sure
    charging: dict[str, int] = {}  # charges sent, not confirmed: committed or not, whole
    enqueued: set[str] = set()
    acked: set[str] = set()
    claimed: set[str] = set()
    for rnd, n_lines in enumerate(LINES_BEFORE_KILL):
        lines = await run_and_kill(path, f"r{rnd}", n_lines)
        in_flight = 0
        for line in lines:
            match line:
                case ["reserved", lease, amount]:
                    told[lease] = ("reserved", int(amount))
                    in_flight += 1
                case ["settled" | "released" as what, lease, *rest]:
                    told[lease] = (what, int(rest[0]) if rest else 0)
                case ["enqueued", task_id]:
                    enqueued.add(task_id)
                case ["claimed", task_id, _]:
                    claimed.add(task_id)
                case ["acked", task_id]:
                    acked.add(task_id)
                case ["charging", i, cost]:
                    charging[f"{rnd}-{i}"] = int(cost)
                case ["charged", i, cost]:
                    charged += int(cost)
                    del charging[f"{rnd}-{i}"]
        assert in_flight > 0 and enqueued
        async with SqliteDatabase(path) as db:
            ledger = SqliteLedgerStore(db)
            await check_ledger(ledger, db, told)
            before = await ledger.get_job("job")
            assert before is not None and before.active_leases > 0  # calls were in flight
            spent_before = before.spent_nanos
            pragma = await db.run(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0])
            assert pragma == "ok"
            # Restart: the dead process's reservations return; nothing it spent is undone.
            await ledger.expire_all(now=T0 + 1)
            job = await ledger.get_job("job")
            assert job is not None
            assert (job.reserved_nanos, job.active_leases, job.spent_nanos) == (0, 0, spent_before)
            for lease_id, (what, _) in told.items():
                if what == "reserved":
                    lease = await ledger.get_lease(lease_id)
                    assert lease is not None and lease.state is not LeaseState.ACTIVE
                    told[lease_id] = (lease.state.value, lease.spent_nanos)
            # Charges: every confirmed one, and of the others each whole or not at all.
            charged_job = await ledger.get_job("charged")
            assert charged_job is not None
            extra = charged_job.spent_nanos - charged
            assert extra == 0 or extra in _subset_sums(list(charging.values()))
            assert sum(t.cost_nanos for t in charged_job.by_model) == charged_job.spent_nanos
            charged, charging = charged_job.spent_nanos, {}
            tasks = SqliteTaskQueueStore(db)
            for task_id in enqueued:
                t = await tasks.get(task_id)
                assert t is not None, task_id
                if task_id in acked:
                    assert t.state is TaskState.SUCCEEDED
    assert charged > 0 and any("-b" in lease for lease in told)  # apply was exercised
    # Claimed-but-unacknowledged tasks come back once their leases expire; none is lost.
    async with SqliteDatabase(path) as db:
        tasks = SqliteTaskQueueStore(db)
        later = T0 + LEASE_S + 1
        reclaimed = {
            t.task_id for t in await tasks.claim("p", "survivor", 60, now=later, limit=1000)
        }
        while batch := await tasks.claim("p", "survivor", 60, now=later, limit=1000):
            reclaimed |= {t.task_id for t in batch}
        done = {
            t.task_id
            for t in (await tasks.list_tasks(limit=1000)).items
            if t.state is TaskState.SUCCEEDED
        }
        assert acked <= done
        # An ack may have committed just before the kill, unreported: then the task is done.
        assert claimed - acked <= reclaimed | done
        assert claimed & reclaimed  # some were claimed, never acknowledged, and came back
        assert enqueued <= reclaimed | done
