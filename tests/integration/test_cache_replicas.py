"""Acceptance (issue 11, the cache's single flight across replicas): two ``aurea serve``
processes on one real redis-server, both pointed at one fake OpenAI upstream started here that
counts requests. 40 identical concurrent ``Generate`` calls split over both servers make exactly
one upstream request, and every caller gets the same text; when the replica that called upstream
fails (a fault injected at the fake for its request), the other replica's callers still get an
answer, for one more upstream request, and no call hangs.

The fake holds each chat request until the test releases it, so every call is in flight at both
servers before the one upstream answer exists; every wait is a bounded poll."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from aiohttp import web

from aurea.testing.fakes import FakeOpenAI
from aurea.testing.fakes._faults import Fault, FaultKind
from aurea.testing.redis import RedisServer
from aurea.v1 import admin_pb2 as apb
from aurea.v1 import admin_pb2_grpc, inference_pb2_grpc
from aurea.v1 import inference_pb2 as pb
from tests.conftest import ServeProcess, SpawnServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

UPSTREAM_KEY = "sk-xflight-test"
WAIT_S = 30.0  # a bound on each wait, never a performance claim
HOLD_S = 2.0  # how long the fake holds the first request (a margin for a busy machine)


class HeldOpenAI(FakeOpenAI):
    """A fake OpenAI that holds every request until ``release`` is set (or its client left),
    then answers as usual (a queued fault included)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release = asyncio.Event()

    async def slow_start(self, request: web.Request, fault: Fault | None) -> Fault | None:
        for _ in range(int(WAIT_S / 0.01)):
            transport = request.transport
            if self.release.is_set() or transport is None or transport.is_closing():
                break
            await asyncio.sleep(0.01)
        return await super().slow_start(request, fault)


def _config(upstream: str, redis_url: str, prefix: str) -> str:
    return f"""
[providers.up]
kind = "openai"
base_url = "{upstream}"
api_key_env = "XFLIGHT_UP_KEY"

[models.up-embed]
provider = "up"
upstream = "text-embedding-3-small"
kind = "embedding"
input_usd_per_mtok = "1"

[models.up-chat]
provider = "up"
upstream = "gpt-4o-mini"
input_usd_per_mtok = "1"
output_usd_per_mtok = "2"

[routing]
default_model = "up-chat"
default_embedding_model = "up-embed"
stats_store = "memory"

[ledger]
store = "memory"

[retry]
max_retries = 0

[redis]
url = "{redis_url}"
key_prefix = "{prefix}"

[cache]
shared_flight = true
"""


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with RedisServer.start() as server:
        yield server


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[HeldOpenAI]:
    async with HeldOpenAI(api_key=UPSTREAM_KEY) as f:
        f.reply = lambda prompt: f"answer to {prompt}: one two three four five six"
        yield f


@pytest_asyncio.fixture
async def two(
    spawn_server: SpawnServer, redis: RedisServer, fake: HeldOpenAI
) -> AsyncIterator[list[ServeProcess]]:
    config = _config(fake.base_url, redis.url, f"x{uuid.uuid4().hex[:8]}")
    env = {"XFLIGHT_UP_KEY": UPSTREAM_KEY}
    # Started in threads: ``spawn_server`` blocks until SERVING, and the fake runs on this loop.
    servers = list(
        await asyncio.gather(
            *(asyncio.to_thread(spawn_server, config=config, env=env) for _ in range(2))
        )
    )
    yield servers
    for s in servers:
        await asyncio.to_thread(s.stop)


def chats(fake: FakeOpenAI) -> int:
    return len(fake.attempts("/chat/completions"))


def embeds(fake: FakeOpenAI) -> int:
    return len(fake.attempts("/embeddings"))


async def generate(target: str, prompt: str) -> tuple[grpc.StatusCode, pb.GenerateResponse | None]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        try:
            reply = await stub.Generate(
                pb.GenerateRequest(prompt=prompt, temperature=0.0), timeout=WAIT_S
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code(), None
        return grpc.StatusCode.OK, reply


async def llm_stats(target: str) -> apb.CacheKindStats:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await admin_pb2_grpc.AdminServiceStub(channel).GetCacheStats(
            apb.GetCacheStatsRequest(), timeout=10
        )
    return next(k for k in reply.kinds if k.kind == apb.CACHE_KIND_LLM)


async def hold_then_release(fake: HeldOpenAI, requests: int) -> int:
    """Release the fake's answers ``HOLD_S`` after its ``requests``-th request arrived; how
    many requests it held."""
    for _ in range(int(WAIT_S / 0.01)):
        if fake.request_count >= requests:
            break
        await asyncio.sleep(0.01)
    assert fake.request_count >= requests, "the upstream request never arrived"
    await asyncio.sleep(HOLD_S)
    held = fake.request_count
    fake.release.set()
    return held


async def test_forty_calls_over_two_servers_make_one_upstream_request(
    two: list[ServeProcess], fake: HeldOpenAI
) -> None:
    calls = [generate(two[i % 2].target, "together") for i in range(40)]
    results, held = await asyncio.wait_for(
        asyncio.gather(asyncio.gather(*calls), hold_then_release(fake, 1)), WAIT_S * 2
    )
    assert {code for code, _ in results} == {grpc.StatusCode.OK}
    texts = {r.text for _, r in results if r is not None}
    assert texts == {"answer to together: one two three four five six"}
    assert held == 1 and chats(fake) == 1
    assert sum(1 for _, r in results if r is not None and not r.cache_hit) == 1

    stats = [await llm_stats(s.target) for s in two]
    assert sum(s.misses for s in stats) == 1 and sum(s.hits for s in stats) == 39
    follower = next(s for s in stats if s.misses == 0)  # the replica that made no call
    assert follower.hits == 20 and follower.shared == 20  # its answer came from the other
    # Afterwards the answer is an ordinary hit on either server, and no lock is left behind.
    for s in two:
        code, r = await generate(s.target, "together")
        assert code is grpc.StatusCode.OK and r is not None and r.cache_hit
    assert chats(fake) == 1


async def embed(target: str) -> pb.EmbedResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        reply: pb.EmbedResponse = await stub.Embed(
            pb.EmbedRequest(inputs=["same words"]), timeout=WAIT_S
        )
        return reply


async def test_twenty_embeddings_over_two_servers_make_one_upstream_request(
    two: list[ServeProcess], fake: HeldOpenAI
) -> None:
    calls = [embed(two[i % 2].target) for i in range(20)]
    results, held = await asyncio.wait_for(
        asyncio.gather(asyncio.gather(*calls), hold_then_release(fake, 1)), WAIT_S * 2
    )
    assert held == 1 and embeds(fake) == 1 and chats(fake) == 0
    assert len({tuple(r.embeddings[0].values) for r in results}) == 1
    assert sum(1 for r in results if not r.cache_hit) == 1


async def test_a_failing_leader_leaves_the_others_an_answer(
    two: list[ServeProcess], fake: HeldOpenAI
) -> None:
    fake.inject(Fault(FaultKind.SERVER_ERROR))  # for the first request: the leader's
    leader = asyncio.ensure_future(generate(two[0].target, "fragile"))
    release = asyncio.ensure_future(hold_then_release(fake, 1))
    for _ in range(int(WAIT_S / 0.01)):  # the leader's request is at the fake: it holds the lock
        if chats(fake) >= 1:
            break
        await asyncio.sleep(0.01)
    others = await asyncio.wait_for(
        asyncio.gather(*(generate(two[1].target, "fragile") for _ in range(20))), WAIT_S * 2
    )
    code, _ = await asyncio.wait_for(leader, WAIT_S)
    # While the leader's request was held, the other replica waited for it (no request).
    assert await release == 1
    assert code is not grpc.StatusCode.OK and code is not grpc.StatusCode.DEADLINE_EXCEEDED
    assert {c for c, _ in others} == {grpc.StatusCode.OK}
    assert {r.text for _, r in others if r is not None} == {
        "answer to fragile: one two three four five six"
    }
    assert chats(fake) == 2  # the failed one, then one more by the other replica
    assert sum(1 for _, r in others if r is not None and not r.cache_hit) == 1
