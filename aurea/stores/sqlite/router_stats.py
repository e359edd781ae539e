"""The durable ``RouterStatsStore`` on SQLite: figures and weights survive a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from aurea.stores.router_stats import ModelStats, Outcome, check_outcome, check_weights, fold
from aurea.stores.sqlite._db import SqliteDatabase

__all__ = ["SqliteRouterStatsStore"]

_COLS = (
    "model",
    "count",
    "successes",
    "latency_sum_s",
    "cost_sum_nanos",
    "ttft_count",
    "ttft_sum_s",
    "decayed_weight",
    "decayed_latency_s",
    "decayed_successes",
    "last_updated",
)
_SELECT = f"SELECT {', '.join(_COLS)} FROM router_stats"


def _stats(row: Any) -> ModelStats:
    return ModelStats(**dict(zip(_COLS, row, strict=True)))


def _get(conn: sqlite3.Connection, model: str) -> ModelStats | None:
    row = conn.execute(f"{_SELECT} WHERE model = ?", (model,)).fetchone()
    return None if row is None else _stats(row)


class SqliteRouterStatsStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def record(
        self, model: str, outcome: Outcome, *, now: float, half_life_s: float
    ) -> ModelStats:
        check_outcome(model, outcome, now, half_life_s)

        def op(conn: sqlite3.Connection) -> ModelStats:
            stats = fold(_get(conn, model), model, outcome, now, half_life_s)
            conn.execute(
                f"INSERT OR REPLACE INTO router_stats ({', '.join(_COLS)}) "
                f"VALUES ({', '.join('?' * len(_COLS))})",
                tuple(getattr(stats, c) for c in _COLS),
            )
            return stats

        return await self._db.run(op)

    async def record_many(
        self, outcomes: Sequence[tuple[str, Outcome]], *, now: float, half_life_s: float
    ) -> tuple[ModelStats, ...]:
        """``record`` of each (model, outcome) in order, in one transaction (all or none):
        the rows after each fold. The router writes a batch of calls' outcomes this way, one
        commit for the batch instead of one per outcome."""
        for model, outcome in outcomes:
            check_outcome(model, outcome, now, half_life_s)
        insert = (
            f"INSERT OR REPLACE INTO router_stats ({', '.join(_COLS)}) "
            f"VALUES ({', '.join('?' * len(_COLS))})"
        )

        def op(conn: sqlite3.Connection) -> tuple[ModelStats, ...]:
            latest: dict[str, ModelStats | None] = {}
            rows: list[ModelStats] = []
            for model, outcome in outcomes:
                prev = latest[model] if model in latest else _get(conn, model)
                stats = fold(prev, model, outcome, now, half_life_s)
                latest[model] = stats
                rows.append(stats)
            conn.executemany(
                insert, [tuple(getattr(s, c) for c in _COLS) for s in latest.values() if s]
            )
            return tuple(rows)

        return await self._db.run(op)

    async def get(self, model: str) -> ModelStats | None:
        return await self._db.read(lambda conn: _get(conn, model))

    async def all(self) -> tuple[ModelStats, ...]:
        return await self._db.read(
            lambda conn: tuple(
                _stats(r) for r in conn.execute(f"{_SELECT} ORDER BY model").fetchall()
            )
        )

    async def get_weights(self) -> dict[str, float] | None:
        def op(conn: sqlite3.Connection) -> dict[str, float] | None:
            rows = conn.execute("SELECT name, value, updated_at FROM router_weights").fetchall()
            return {name: value for name, value, _ in rows} if rows else None

        return await self._db.read(op)

    async def set_weights(self, weights: Mapping[str, float], *, now: float) -> None:
        check_weights(weights)
        items = [(name, float(value), now) for name, value in weights.items()]

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM router_weights")
            conn.executemany(
                "INSERT INTO router_weights (name, value, updated_at) VALUES (?, ?, ?)", items
            )

        await self._db.run(op)
