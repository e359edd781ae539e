"""The response cache on a real ``redis-server`` (started by the test on a free port): an answer
cached through one Aurea server is a hit through a second one sharing that Redis; 50 identical
concurrent calls make one upstream call; ``redis-server`` stopped mid-test and restarted: every
cacheable call is still served (the cache falls through, with a warning and a counter), then
the cache works again by itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from aurea.testing import RunningServer, running_server
from aurea.testing.fakes import FakeOpenAI
from aurea.testing.redis import RedisServer
from aurea.v1 import admin_pb2 as apb
from aurea.v1 import admin_pb2_grpc, inference_pb2_grpc
from aurea.v1 import inference_pb2 as pb
from tests.integration.test_cache_grpc import (
    ALICE,
    auth,
    cache_settings,
    chats,
    generate,
    stats,
    stream,
    text_of,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with RedisServer.start() as server:
        yield server


@pytest_asyncio.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenAI]:
    monkeypatch.setenv("CACHE_UP_KEY", "sk-cache-test")
    async with FakeOpenAI(api_key="sk-cache-test", token_delay_s=0.002) as f:
        f.reply = lambda prompt: f"answer to {prompt}: one two three four five six"
        yield f


def redis_settings(fake: FakeOpenAI, server: RedisServer, prefix: str) -> Any:
    # A short rest after a failure, so the test sees the recovery quickly.
    redis = {"url": server.url, "key_prefix": prefix, "timeout_s": 0.5, "retry_s": 0.2}
    return cache_settings(fake, redis=redis)


async def test_an_answer_cached_through_one_server_is_a_hit_through_another(
    redis_server: RedisServer, fake: FakeOpenAI
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    async with (
        running_server(redis_settings(fake, redis_server, prefix)) as one,
        running_server(redis_settings(fake, redis_server, prefix)) as two,
    ):
        first = await generate(one)
        second = await generate(two)
        assert not first.cache_hit and second.cache_hit and second.text == first.text
        streamed = await stream(two, prompt="streamed")
        replayed = await stream(one, prompt="streamed")
        assert replayed[0].started.cache_hit and text_of(replayed) == text_of(streamed)
        inference = inference_pb2_grpc.InferenceServiceStub(one.channel)
        e1 = await inference.Embed(pb.EmbedRequest(inputs=["v"]), metadata=auth(ALICE))
        e2 = await inference_pb2_grpc.InferenceServiceStub(two.channel).Embed(
            pb.EmbedRequest(inputs=["v"]), metadata=auth(ALICE)
        )
        assert not e1.cache_hit and e2.cache_hit
        assert chats(fake) == 2 and len(fake.attempts("/embeddings")) == 1

        s = await stats(two)
        assert s.backend == "redis" and s.backend_available
        assert s.entries == 3 and s.size_bytes > 0  # what both servers stored
        kinds = {k.kind: k.entries for k in s.kinds}
        assert kinds == {apb.CACHE_KIND_LLM: 2, apb.CACHE_KIND_EMBEDDING: 1}
        admin = admin_pb2_grpc.AdminServiceStub(one.channel)
        from tests.integration.test_cache_grpc import ADMIN

        cleared = await admin.ClearCache(
            apb.ClearCacheRequest(kind=apb.CACHE_KIND_LLM), metadata=auth(ADMIN)
        )
        assert cleared.entries_removed == 2 and cleared.bytes_freed > 0
        assert not (await generate(two)).cache_hit and chats(fake) == 3


async def test_fifty_concurrent_calls_make_one_upstream_call_on_redis(
    redis_server: RedisServer, fake: FakeOpenAI
) -> None:
    fake.token_delay_s = 0.02
    prefix = f"t{uuid.uuid4().hex[:8]}"
    async with running_server(redis_settings(fake, redis_server, prefix)) as rs:
        unary = await asyncio.gather(*(generate(rs, prompt="together") for _ in range(50)))
        streams = await asyncio.gather(*(stream(rs, prompt="streams") for _ in range(50)))
    assert chats(fake) == 2
    assert len({r.text for r in unary}) == 1
    assert {text_of(s) for s in streams} == {"answer to streams: one two three four five six"}


async def wait_for(rs: RunningServer, available: bool) -> apb.GetCacheStatsResponse:
    for _ in range(200):
        s = await stats(rs)
        if s.backend_available is available:
            return s
        await generate(rs, prompt="probe")  # a cache operation makes the backend try again
        await asyncio.sleep(0.05)
    raise AssertionError(f"the cache's backend never became available={available}")


async def test_redis_stopped_mid_test_then_restarted(
    redis_server: RedisServer, fake: FakeOpenAI
) -> None:
    # The cache on a Redis of its own ([cache] redis_url): the limiter and ledger stay in
    # process. (On the shared [redis] url they fail closed while Redis is down, by design.)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    settings = cache_settings(
        fake,
        cache={"redis_url": redis_server.url},
        redis={"key_prefix": prefix, "timeout_s": 0.5, "retry_s": 0.2},
    )
    with capture_logs() as logs:
        async with running_server(settings) as rs:
            assert (await stats(rs)).backend == "redis"
            await generate(rs)
            assert (await generate(rs)).cache_hit and chats(fake) == 1

            redis_server.stop()
            down = [await generate(rs) for _ in range(3)]
            assert all(r.text.startswith("answer to hello") for r in down)  # served throughout
            assert not any(r.cache_hit for r in down)
            assert chats(fake) == 4  # each one went upstream: the cache fell through
            s = await stats(rs)
            assert not s.backend_available and s.backend_errors >= 1
            assert s.entries == 0  # unknown while Redis is down: not a made-up figure

            redis_server.resume()  # an empty Redis (no persistence) on the same port
            await wait_for(rs, True)
            await generate(rs, prompt="after")
            after = await generate(rs, prompt="after")
            assert after.cache_hit
    warnings = [e for e in logs if e.get("event") == "cache_backend_unavailable"]
    assert len(warnings) == 1  # one line per outage, not one per call
    assert warnings[0]["log_level"] == "warning"
    assert any(e.get("event") == "cache_backend_recovered" for e in logs)
