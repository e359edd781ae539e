"""Where the router keeps its stats and weights: the store ``[routing] stats_store`` names, opened
at server start and closed after the router stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aurea.config import ConfigError, RoutingSettings
from aurea.paths import default_db_path
from aurea.stores import RouterStatsStore
from aurea.stores.memory.router_stats import MemoryRouterStatsStore
from aurea.stores.sqlite import SqliteDatabase, SqliteRouterStatsStore

__all__ = ["StatsStore", "default_sqlite_path", "open_stats_store"]


def default_sqlite_path() -> Path:
    """The shared default database (``aurea.paths.default_db_path``)."""
    return default_db_path()


class StatsStore:
    """An open stats store and what to close when the server stops."""

    __slots__ = ("_db", "store")

    def __init__(self, store: RouterStatsStore, db: SqliteDatabase | None = None) -> None:
        self.store = store
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()


async def open_stats_store(settings: RoutingSettings) -> StatsStore:
    """Open the configured store; a SQLite file's directory is created if missing."""
    if settings.stats_store == "memory":
        return StatsStore(MemoryRouterStatsStore())
    path = Path(settings.sqlite_path) if settings.sqlite_path else default_sqlite_path()
    try:
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("routing.sqlite_path", f"cannot create {path.parent}: {exc}") from exc
    db = await SqliteDatabase.open(path)
    return StatsStore(SqliteRouterStatsStore(db), db)
