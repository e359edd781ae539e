"""The durable ``LimiterStore`` on SQLite: the GCRA step inside one transaction.

The embedded server keeps rate limits in memory (they need no durability); this store exists so
several processes on one machine can share limits through one file, and so the contract suite
proves the GCRA step is backend-neutral. The arithmetic is ``aurea.stores.limiter.decide``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from aurea.stores._common import check_finite, check_id
from aurea.stores.limiter import Admission, Quota, check_quotas, decide, refunded_tat
from aurea.stores.sqlite._db import SqliteDatabase

__all__ = ["SqliteLimiterStore"]


def _state(conn: sqlite3.Connection, key: str) -> tuple[float | None, float | None]:
    row = conn.execute("SELECT tat, held_until FROM limiter WHERE key = ?", (key,)).fetchone()
    return (None, None) if row is None else (row[0], row[1])


class SqliteLimiterStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def acquire(self, quotas: Sequence[Quota], *, now: float) -> Admission:
        check_quotas(quotas, now)
        quotas = tuple(quotas)

        def op(conn: sqlite3.Connection) -> Admission:
            new_tats: list[float] = []
            refusal = Admission(granted=True)
            for q in quotas:
                tat, held_until = _state(conn, q.key)
                granted, new_tat, retry_after_s = decide(
                    q, now if tat is None else tat, now if held_until is None else held_until, now
                )
                if not granted and (refusal.granted or retry_after_s > refusal.retry_after_s):
                    refusal = Admission(
                        granted=False, retry_after_s=retry_after_s, limiting_key=q.key
                    )
                new_tats.append(new_tat)
            if refusal.granted:
                conn.executemany(
                    "INSERT INTO limiter (key, tat) VALUES (?, ?) "
                    "ON CONFLICT DO UPDATE SET tat = excluded.tat",
                    [(q.key, t) for q, t in zip(quotas, new_tats, strict=True)],
                )
            return refusal

        return await self._db.run(op)

    async def refund(self, quotas: Sequence[Quota], *, now: float) -> None:
        check_quotas(quotas, now)
        quotas = tuple(quotas)

        def op(conn: sqlite3.Connection) -> None:
            for q in quotas:
                tat, _ = _state(conn, q.key)
                if tat is not None:
                    conn.execute(
                        "UPDATE limiter SET tat = ? WHERE key = ?",
                        (refunded_tat(q, tat, now), q.key),
                    )

        await self._db.run(op)

    async def hold(self, key: str, until: float) -> None:
        check_id("key", key)
        check_finite("until", until)
        await self._db.run(
            lambda conn: conn.execute(
                "INSERT INTO limiter (key, held_until) VALUES (?, ?) ON CONFLICT DO UPDATE SET "
                "held_until = max(coalesce(held_until, excluded.held_until), excluded.held_until)",
                (key, until),
            )
        )
