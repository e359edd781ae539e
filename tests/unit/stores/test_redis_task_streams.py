"""The Redis task queue's stream: each replica's running attempts are its consumer's pending
entries, acknowledged when they end, and a dead holder's entry is taken over once its lease
passes (the task then runs once more, elsewhere), whichever pool the next claim is for."""

from __future__ import annotations

import uuid

from store_helpers import T0

from aurea.stores import NewTask, TaskState
from aurea.stores.redis import RedisTaskQueueStore, open_redis
from aurea.testing.redis import RedisServer


async def test_pending_entries_follow_the_holder(redis_server: RedisServer) -> None:
    client = open_redis(redis_server.url, prefix=f"t{uuid.uuid4().hex[:12]}")
    store = RedisTaskQueueStore(client)
    stream = client.key("tq", "{tasks}", "run", "p")
    try:
        for i in range(2):
            await store.enqueue(
                NewTask(task_id=f"t{i}", kind="k", pool="p", max_attempts=2), now=T0
            )
        (a,) = await store.claim("p", "replica-a", 10.0, now=T0)
        (b,) = await store.claim("p", "replica-b", 10.0, now=T0)
        pending = await client.redis.xpending(stream, "workers")
        holders = {c["name"].decode(): c["pending"] for c in pending["consumers"]}
        assert holders == {"replica-a": 1, "replica-b": 1}
        # replica-a finishes; replica-b dies: after its lease, replica-a takes its task over.
        assert await store.ack(a.task_id, a.attempts, "ok", now=T0 + 1) is not None
        (again,) = await store.claim("p", "replica-a", 10.0, now=T0 + 11)
        assert again.task_id == b.task_id and again.attempts == 2
        pending = await client.redis.xpending(stream, "workers")
        holders = {c["name"].decode(): c["pending"] for c in pending["consumers"]}
        assert holders == {"replica-a": 1}
        # The dead holder can no longer touch it; the new one finishes it, once.
        assert await store.ack(b.task_id, b.attempts, "late", now=T0 + 12) is None
        done = await store.ack(again.task_id, again.attempts, "ok", now=T0 + 12)
        assert done is not None and done.state is TaskState.SUCCEEDED
        assert (await client.redis.xpending(stream, "workers"))["pending"] == 0
    finally:
        await client.aclose()


async def test_a_claim_in_one_pool_takes_over_another_pools_expired_lease(
    redis_server: RedisServer,
) -> None:
    client = open_redis(redis_server.url, prefix=f"t{uuid.uuid4().hex[:12]}")
    store = RedisTaskQueueStore(client)
    stream = client.key("tq", "{tasks}", "run", "q")
    try:
        await store.enqueue(NewTask(task_id="t", kind="k", pool="q", max_attempts=2), now=T0)
        (dead,) = await store.claim("q", "replica-b", 10.0, now=T0)
        assert (await client.redis.xpending(stream, "workers"))["pending"] == 1
        # replica-a only claims pool p; its claim still returns q's expired lease to q's queue
        # (with q's keys), as the protocol's expiry is not per pool.
        assert await store.claim("p", "replica-a", 10.0, now=T0 + 10) == ()
        t = await store.get("t")
        assert t is not None and t.state is TaskState.QUEUED and t.lease_until is None
        assert (await client.redis.xpending(stream, "workers"))["pending"] == 0
        assert await store.heartbeat("t", dead.attempts, 10.0, now=T0 + 11) is False
        (again,) = await store.claim("q", "replica-a", 10.0, now=T0 + 11)
        assert (again.task_id, again.attempts) == ("t", 2)
    finally:
        await client.aclose()
