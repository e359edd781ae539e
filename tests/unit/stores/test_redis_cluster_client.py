"""The shared stores' client on a real 3-node Redis Cluster (``[redis] cluster = true``): the
URLs it refuses, many concurrent calls on a cold client, a shard that stops (its calls fail
closed with ``StoreUnavailable``, then recover by themselves), and the cache's entries spread
over every shard, counted and cleared across all of them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from aurea.cache import CacheKey, CacheKind, KeyFilter
from aurea.cache._codec import encode
from aurea.cache._redis import RedisBackend
from aurea.stores import StoreUnavailable
from aurea.stores.limiter import Quota
from aurea.stores.redis import RedisLimiterStore, open_redis
from aurea.testing.redis import RedisCluster

T0 = 1_000_000.0
WAIT_S = 30.0  # a bound on each wait, never a performance claim


@pytest.fixture
def own_cluster() -> Iterator[RedisCluster]:
    """A cluster of this test's own, for tests that stop a node."""
    if not RedisCluster.available():
        pytest.skip("redis-server or redis-cli is not installed (.ci/run installs them)")
    with RedisCluster.start() as cluster:
        yield cluster


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize(
    "url", ["unix:///run/redis.sock", "redis://127.0.0.1:7000/1", "redis://127.0.0.1:7000/3"]
)
def test_a_cluster_client_refuses_a_url_a_cluster_cannot_serve(url: str) -> None:
    with pytest.raises(ValueError, match="cluster"):
        open_redis(url, prefix="p", cluster=True)


async def test_a_cluster_nobody_answers_is_unavailable() -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = open_redis(f"redis://127.0.0.1:{port}/0", prefix="p", cluster=True)
    try:
        with pytest.raises(StoreUnavailable, match="unavailable"):
            await client.ping()
    finally:
        await client.aclose()


async def test_hundreds_of_concurrent_calls_on_a_cold_client_all_get_an_answer(
    redis_cluster: RedisCluster,
) -> None:
    # More callers than a node's connections: they queue at the client's gate instead of
    # failing with "Too many connections", and none races the discovery of the nodes.
    client = open_redis(redis_cluster.url, prefix=_prefix(), cluster=True)
    try:
        limiter = RedisLimiterStore(client)
        quota = Quota(key="{m}:rpm", cost=1, rate_per_s=1.0, burst=100)
        results = await asyncio.gather(
            *(limiter.acquire([quota], now=T0) for _ in range(400)), return_exceptions=True
        )
    finally:
        await client.aclose()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert sum(1 for r in results if not isinstance(r, BaseException) and r.granted) == 100


async def test_a_stopped_shard_fails_closed_then_its_calls_recover(
    own_cluster: RedisCluster,
) -> None:
    client = open_redis(own_cluster.url, prefix=_prefix(), cluster=True)
    limiter = RedisLimiterStore(client)
    try:
        quota = Quota(key="{m}:rpm", cost=1, rate_per_s=1.0, burst=1000)
        assert (await limiter.acquire([quota], now=T0)).granted
        owner = client.redis.get_node_from_key(f"{client.prefix}:lim:{{m}}:rpm")
        node = next(n for n in own_cluster.nodes if n.port == int(owner.port))
        node.stop()
        with pytest.raises(StoreUnavailable, match="unavailable"):
            await limiter.acquire([quota], now=T0)
        node.resume()
        own_cluster.wait_ready()
        for _ in range(int(WAIT_S / 0.1)):  # bounded: the client maps the cluster again
            try:
                admitted = await limiter.acquire([quota], now=T0)
                break
            except StoreUnavailable:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the limiter did not recover after the shard came back")
        assert admitted.granted
    finally:
        await client.aclose()


async def test_the_cache_counts_and_clears_its_entries_on_every_shard(
    redis_cluster: RedisCluster,
) -> None:
    client = open_redis(redis_cluster.url, prefix=_prefix(), cluster=True)
    backend = RedisBackend(client, timeout_s=2.0, retry_s=0.1)
    try:
        keys = [
            CacheKey(CacheKind.LLM if i % 3 else CacheKind.EMBEDDING, "t", "m", f"{i:064x}")
            for i in range(60)
        ]
        for i, key in enumerate(keys):
            assert await backend.put(key, f"v{i}", encode(f"v{i}"), 60.0)
        holders = {client.redis.get_node_from_key(k.redis(client.prefix)).port for k in keys}
        assert len(holders) == 3  # the entries really are spread over the shards
        assert await backend.get(keys[7]) == "v7"
        usage = await backend.usage()
        assert usage[CacheKind.EMBEDDING][0] == 20 and usage[CacheKind.LLM][0] == 40
        removed, freed = await backend.clear(KeyFilter(kind=CacheKind.LLM))
        assert removed == 40 and freed > 0
        after = await backend.usage()
        assert CacheKind.LLM not in after and after[CacheKind.EMBEDDING][0] == 20
        assert backend.errors == 0
    finally:
        await backend.aclose()
