"""The cache's cross-replica flight lock on a real redis-server and a real 3-node Redis Cluster
(``aurea/cache/_replicas.py``): a claim finds the entry, or takes the lock, or names its holder;
only the holder renews or deletes it; a flight waiting on another replica gets that replica's
answer as a remote hit; a dead holder's lock expires and the waiter takes over; a failed call
releases the lock; Redis down means calling alone, never waiting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from aurea.cache import NO_VALUE, CacheKey, CacheKind
from aurea.cache._codec import encode
from aurea.cache._redis import FLIGHT_SUFFIX, RedisBackend
from aurea.cache._replicas import ReplicaFlight
from aurea.stores.redis import open_redis
from aurea.testing.redis import RedisCluster, RedisServer
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(60)
WAIT_S = 20.0  # a bound on every wait, never a performance claim


@pytest.fixture(params=["redis", "redis-cluster"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[RedisBackend]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    if request.param == "redis-cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        client = open_redis(cluster.url, prefix=prefix, cluster=True)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        client = open_redis(server.url, prefix=prefix)
    b = RedisBackend(client, timeout_s=1.0, retry_s=0.2)
    yield b
    await b.aclose()


def a_key() -> CacheKey:
    return CacheKey(CacheKind.LLM, "team", "m", uuid.uuid4().hex)


async def lock_of(backend: RedisBackend, key: CacheKey) -> str | None:
    raw = await backend._client.get(key.redis(backend._prefix) + FLIGHT_SUFFIX)
    return None if raw is None else raw.decode()


async def store(backend: RedisBackend, key: CacheKey, value: str) -> None:
    assert await backend.put(key, value, encode(value), 60.0)


async def test_claim_takes_names_renews_and_releases(backend: RedisBackend) -> None:
    key = a_key()
    first = await backend.claim(key, "a", 5.0)
    assert first is not None and first.taken and first.value is NO_VALUE
    assert await lock_of(backend, key) == "a"
    second = await backend.claim(key, "b", 5.0)
    assert second is not None and not second.taken and second.holder == "a"

    lock = key.redis(backend._prefix) + FLIGHT_SUFFIX
    await backend._client.pexpire(lock, 1000)
    assert not await backend.renew(key, "b", 30.0)  # not b's: untouched
    assert await backend._client.pttl(lock) <= 1000
    assert await backend.renew(key, "a", 30.0)
    assert await backend._client.pttl(lock) > 1000

    assert not await backend.release(key, "b")  # compare-and-delete: not b's
    assert await lock_of(backend, key) == "a"
    assert await backend.release(key, "a")
    assert await lock_of(backend, key) is None
    assert not await backend.release(key, "a")  # already gone


async def test_a_claim_finds_the_entry_before_the_lock(backend: RedisBackend) -> None:
    key = a_key()
    assert (c := await backend.claim(key, "a", 5.0)) is not None and c.taken
    await store(backend, key, "the answer")
    found = await backend.claim(key, "b", 5.0)
    assert found is not None and found.value == "the answer" and not found.taken
    # Entries and locks share the digest's hash tag; the entries' scan never counts a lock.
    assert "{" + key.digest + "}" in key.redis("p") + FLIGHT_SUFFIX
    usage = await backend.usage()
    assert usage[CacheKind.LLM][0] == 1


async def test_a_waiting_flight_gets_the_holders_answer(backend: RedisBackend) -> None:
    key = a_key()
    gate = asyncio.Event()
    calls: list[str] = []

    async def holder_call() -> str:
        calls.append("holder")
        await gate.wait()
        return "made once"

    async def waiter_call() -> str:
        calls.append("waiter")
        return "made twice"

    holder = ReplicaFlight(backend, key, 1.0)  # renewed every 0.33 s while its call runs
    waiter = ReplicaFlight(backend, key, 1.0)
    held = asyncio.ensure_future(holder.run(holder_call, lambda v: v))
    for _ in range(int(WAIT_S / 0.01)):
        if calls:
            break
        await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(waiter.run(waiter_call, lambda v: v))
    await asyncio.sleep(2.5)  # over twice the lease: only renewals keep the lock
    token = await lock_of(backend, key)
    assert token is not None and not waiting.done()
    gate.set()
    assert await held == "made once" and not holder.remote
    assert await lock_of(backend, key) == token  # held until the answer is stored
    await store(backend, key, "made once")
    await holder.release()
    assert await asyncio.wait_for(waiting, WAIT_S) == "made once"
    assert waiter.remote and calls == ["holder"]
    assert await lock_of(backend, key) is None


async def test_a_dead_holders_lock_expires_and_the_waiter_takes_over(
    backend: RedisBackend,
) -> None:
    key = a_key()
    dead = await backend.claim(key, "dead-replica", 0.3)  # never renewed, never released
    assert dead is not None and dead.taken
    waiter = ReplicaFlight(backend, key, 5.0)
    seen: list[str | None] = []

    async def call() -> str:
        seen.append(await lock_of(backend, key))  # the waiter holds it while it calls
        return "taken over"

    assert await asyncio.wait_for(waiter.run(call, lambda v: v), WAIT_S) == "taken over"
    assert not waiter.remote and len(seen) == 1
    assert seen[0] is not None and seen[0] != "dead-replica"
    await waiter.release()
    assert await lock_of(backend, key) is None


async def test_a_failed_or_cancelled_call_releases_the_lock(backend: RedisBackend) -> None:
    key = a_key()

    async def fail() -> str:
        raise RuntimeError("upstream said no")

    flight = ReplicaFlight(backend, key, 5.0)
    with pytest.raises(RuntimeError):
        await flight.run(fail, lambda v: v)
    assert await lock_of(backend, key) is None

    started = asyncio.Event()

    async def hang() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    flight = ReplicaFlight(backend, key, 5.0)
    task = asyncio.ensure_future(flight.run(hang, lambda v: v))
    await asyncio.wait_for(started.wait(), WAIT_S)
    assert await lock_of(backend, key) is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await lock_of(backend, key) is None


async def test_a_waiter_stops_following_holders_after_a_few_rounds(
    backend: RedisBackend,
) -> None:
    key = a_key()
    lock = key.redis(backend._prefix) + FLIGHT_SUFFIX
    await backend._client.set(lock, "holder-0", px=60_000)
    waiter = ReplicaFlight(backend, key, 5.0)
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        return "alone"

    task = asyncio.ensure_future(waiter.run(call, lambda v: v))
    for n in range(1, 10):  # each round another replica holds the lock (and then fails)
        await asyncio.sleep(0.3)
        if task.done():
            break
        await backend._client.set(lock, f"holder-{n}", px=60_000)
    assert await asyncio.wait_for(task, WAIT_S) == "alone"
    assert calls == 1 and not waiter.remote
    assert (await lock_of(backend, key) or "").startswith("holder-")  # never ours, never freed


async def test_redis_down_means_calling_alone() -> None:
    client = open_redis(f"redis://127.0.0.1:{free_port()}/0", prefix="p")
    backend = RedisBackend(client, timeout_s=0.2, retry_s=30.0)
    try:
        flight = ReplicaFlight(backend, a_key(), 5.0)

        async def call() -> str:
            return "alone"

        assert await flight.run(call, lambda v: v) == "alone"
        assert backend.errors == 1 and not backend.available
        await flight.release()  # nothing held: no Redis operation
        assert backend.errors == 1
    finally:
        await backend.aclose()
