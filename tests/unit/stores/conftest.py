"""Fixtures for the store contract tests: every store under test, once per implementation.

Each fixture is parametrized over ``memory``, ``sqlite``, ``redis`` (a real redis-server per
session) and ``redis-cluster`` (a real 3-node Redis Cluster per session, the stores on a cluster
client), a fresh key prefix per test, so one suite pins one contract.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from store_helpers import AGING_S, RETENTION_S

from aurea.stores import LedgerStore, LimiterStore, RouterStatsStore, TaskQueueStore
from aurea.stores.memory import (
    MemoryLedgerStore,
    MemoryLimiterStore,
    MemoryRouterStatsStore,
    MemoryTaskQueueStore,
)
from aurea.stores.redis import (
    RedisClient,
    RedisLedgerStore,
    RedisLimiterStore,
    RedisRouterStatsStore,
    RedisTaskQueueStore,
    open_redis,
)
from aurea.stores.sqlite import (
    SqliteDatabase,
    SqliteLedgerStore,
    SqliteLimiterStore,
    SqliteRouterStatsStore,
    SqliteTaskQueueStore,
)
from aurea.testing.redis import RedisCluster, RedisServer

IMPLEMENTATIONS = ["memory", "sqlite", "redis", "redis-cluster"]
REDIS = ("redis", "redis-cluster")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with RedisServer.start() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    if not RedisCluster.available():
        pytest.skip("redis-server or redis-cli is not installed (.ci/run installs them)")
    with RedisCluster.start() as cluster:
        yield cluster


def _redis_client(request: pytest.FixtureRequest) -> RedisClient:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    if request.param == "redis-cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return open_redis(cluster.url, prefix=prefix, cluster=True)
    server: RedisServer = request.getfixturevalue("redis_server")
    return open_redis(server.url, prefix=prefix)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    async with SqliteDatabase(tmp_path / "stores.db") as database:
        yield database


@pytest.fixture(params=IMPLEMENTATIONS)
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LedgerStore]:
    if request.param == "memory":
        yield MemoryLedgerStore(closed_lease_retention_s=RETENTION_S)
        return
    if request.param in REDIS:
        client = _redis_client(request)
        yield RedisLedgerStore(client, closed_lease_retention_s=RETENTION_S)
        await client.aclose()
        return
    async with SqliteDatabase(tmp_path / "ledger.db") as database:
        yield SqliteLedgerStore(database, closed_lease_retention_s=RETENTION_S)


@pytest.fixture(params=IMPLEMENTATIONS)
async def limiter(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LimiterStore]:
    if request.param == "memory":
        yield MemoryLimiterStore()
        return
    if request.param in REDIS:
        client = _redis_client(request)
        yield RedisLimiterStore(client)
        await client.aclose()
        return
    async with SqliteDatabase(tmp_path / "limiter.db") as database:
        yield SqliteLimiterStore(database)


@pytest.fixture(params=IMPLEMENTATIONS)
async def stats(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RouterStatsStore]:
    if request.param == "memory":
        yield MemoryRouterStatsStore()
        return
    if request.param in REDIS:
        client = _redis_client(request)
        yield RedisRouterStatsStore(client)
        await client.aclose()
        return
    async with SqliteDatabase(tmp_path / "stats.db") as database:
        yield SqliteRouterStatsStore(database)


@pytest.fixture(params=IMPLEMENTATIONS)
async def tasks(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskQueueStore]:
    if request.param == "memory":
        yield MemoryTaskQueueStore(aging_s_per_priority=AGING_S)
        return
    if request.param in REDIS:
        client = _redis_client(request)
        yield RedisTaskQueueStore(client, aging_s_per_priority=AGING_S)
        await client.aclose()
        return
    async with SqliteDatabase(tmp_path / "tasks.db") as database:
        yield SqliteTaskQueueStore(database, aging_s_per_priority=AGING_S)
