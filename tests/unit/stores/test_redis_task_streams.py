"""The Redis task queue's stream: each replica's running attempts are its consumer's pending
entries, acknowledged when they end, and a dead holder's entry is taken over once its lease
passes (the task then runs once more, elsewhere)."""

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
