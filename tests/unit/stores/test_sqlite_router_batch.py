"""The SQLite router stats store's batch write (``record_many``): the same figures as one
``record`` per outcome, one transaction for the batch, all or nothing; and the router actor
writes its batches that way."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aurea.actors.router import Router
from aurea.config import build_settings
from aurea.inference.calls import AttemptRecord, CallKind, CallRecord
from aurea.routing import RecordInbox, RouterView, RoutingTable, first_token_key
from aurea.runtime import ActorSystem
from aurea.stores import Outcome
from aurea.stores.sqlite import SqliteDatabase, SqliteRouterStatsStore

pytestmark = pytest.mark.timeout(20)

NOW = 1_800_000_000.0
HALF_LIFE_S = 3600.0

BATCH = [
    ("a", Outcome(success=True, latency_s=0.2, cost_nanos=100, ttft_s=0.05)),
    ("b", Outcome(success=False, latency_s=0.01)),
    ("a", Outcome(success=True, latency_s=0.4, cost_nanos=300)),
    ("a", Outcome(success=False, latency_s=0.1)),
    ("b", Outcome(success=True, latency_s=0.3, cost_nanos=7)),
]


async def test_a_batch_folds_like_one_record_per_outcome(tmp_path: Path) -> None:
    async with (
        SqliteDatabase(tmp_path / "one.db") as one_db,
        SqliteDatabase(tmp_path / "many.db") as many_db,
    ):
        one, many = SqliteRouterStatsStore(one_db), SqliteRouterStatsStore(many_db)
        await one.record("a", BATCH[0][1], now=NOW - 60, half_life_s=HALF_LIFE_S)
        await many.record("a", BATCH[0][1], now=NOW - 60, half_life_s=HALF_LIFE_S)
        expected = [await one.record(m, o, now=NOW, half_life_s=HALF_LIFE_S) for m, o in BATCH]
        commits = many_db.commits
        rows = await many.record_many(BATCH, now=NOW, half_life_s=HALF_LIFE_S)
        assert list(rows) == expected
        assert many_db.commits == commits + 1
        assert await many.all() == await one.all()
        a = await many.get("a")
        assert a is not None and a.count == 4 and a.successes == 3 and a.ttft_count == 2


async def test_a_bad_outcome_refuses_the_whole_batch(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "s.db") as db:
        store = SqliteRouterStatsStore(db)
        bad = [*BATCH, ("c", Outcome(success=True, latency_s=-1.0))]
        with pytest.raises(ValueError):
            await store.record_many(bad, now=NOW, half_life_s=HALF_LIFE_S)
        assert await store.all() == ()


async def test_the_router_writes_a_batch_of_calls_in_one_transaction(tmp_path: Path) -> None:
    s = build_settings(
        {
            "providers": {"p": {"kind": "simulated"}},
            "models": {"a": {"provider": "p", "input_usd_per_mtok": "1"}},
            "routing": {"default_model": "a", "publish_interval_s": 0.001},
        }
    )
    async with SqliteDatabase(tmp_path / "r.db") as db:
        store = SqliteRouterStatsStore(db)
        inbox = RecordInbox()
        system = ActorSystem()
        system.spawn(
            "router",
            lambda: Router(
                models=s.models,
                settings=s.routing,
                view=RouterView(RoutingTable(models=s.models, settings=s.routing)),
                store=store,
                inbox=inbox,
                wall_clock=lambda: NOW,
            ),
        )
        async with system:
            commits = db.commits
            for _ in range(20):  # buffered before the pump runs again: one batch
                r = CallRecord(request_id="r", kind=CallKind.STREAM, ttft_s=0.01, latency_s=0.1)
                r.attempts.append(AttemptRecord(model="a", provider="p", latency_s=0.1))
                inbox(r)
            for _ in range(2000):
                stats = await store.get("a")
                if stats is not None and stats.count == 20:
                    break
                await asyncio.sleep(0.002)
            assert stats is not None and stats.count == 20 and stats.ttft_count == 20
            first = await store.get(first_token_key("a"))
            assert first is not None and first.count == 20
            # 40 folds (each call's outcome and its first token); one commit per batch.
            assert db.commits - commits <= 2
