"""The response cache through real gRPC (and the HTTP door), in front of a fake OpenAI upstream
that counts every request: hit, miss, TTL expiry on an injected clock, bypass, refresh, stats,
clear, streamed replays, tenants, embeddings, and 50 identical concurrent calls making exactly
one upstream call (streams included)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio

from aurea.config import Settings, hash_key
from aurea.server import AureaServer
from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as make_settings
from aurea.testing.fakes import FakeOpenAI, Fault, FaultKind
from aurea.v1 import admin_pb2 as apb
from aurea.v1 import admin_pb2_grpc, inference_pb2_grpc
from aurea.v1 import inference_pb2 as pb

pytestmark = pytest.mark.timeout(90)

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789ab"
ADMIN = "admin-key-0123456789"
KEYS = [
    {"name": "alice", "sha256": hash_key(ALICE), "scopes": ["user"]},
    {"name": "bob", "sha256": hash_key(BOB), "scopes": ["user"]},
    {"name": "ops", "sha256": hash_key(ADMIN), "scopes": ["user", "admin"]},
]
UPSTREAM_KEY = "sk-cache-test"


def auth(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


def cache_settings(fake: FakeOpenAI, **raw: Any) -> Settings:
    base: dict[str, Any] = {
        "providers": {
            "up": {"kind": "openai", "base_url": fake.base_url, "api_key_env": "CACHE_UP_KEY"}
        },
        "models": {
            "up-chat": {
                "provider": "up",
                "upstream": "gpt-4o-mini",
                "input_usd_per_mtok": "1",
                "output_usd_per_mtok": "2",
            },
            "up-embed": {
                "provider": "up",
                "upstream": "text-embedding-3-small",
                "kind": "embedding",
                "input_usd_per_mtok": "1",
            },
        },
        "routing": {
            "default_model": "up-chat",
            "default_embedding_model": "up-embed",
            "stats_store": "memory",
        },
        "ledger": {"store": "memory"},
        "retry": {"max_retries": 0},
        "auth": {"keys": KEYS},
    }
    for k, v in raw.items():
        base[k] = {**base.get(k, {}), **v}
    return make_settings(base)


@pytest_asyncio.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenAI]:
    monkeypatch.setenv("CACHE_UP_KEY", UPSTREAM_KEY)
    async with FakeOpenAI(api_key=UPSTREAM_KEY, token_delay_s=0.002) as f:
        f.reply = lambda prompt: f"answer to {prompt}: one two three four five six"
        yield f


@pytest_asyncio.fixture
async def rs(fake: FakeOpenAI) -> AsyncIterator[RunningServer]:
    async with running_server(cache_settings(fake)) as server:
        yield server


def chats(fake: FakeOpenAI) -> int:
    return len(fake.attempts("/chat/completions"))


def req(prompt: str = "hello", **kw: Any) -> pb.GenerateRequest:
    kw.setdefault("temperature", 0.0)
    return pb.GenerateRequest(prompt=prompt, **kw)


async def generate(rs: RunningServer, key: str = ALICE, **kw: Any) -> pb.GenerateResponse:
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    reply: pb.GenerateResponse = await stub.Generate(req(**kw), metadata=auth(key), timeout=30)
    return reply


async def stream(rs: RunningServer, key: str = ALICE, **kw: Any) -> list[pb.GenerateStreamResponse]:
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    call = stub.GenerateStream(
        pb.GenerateStreamRequest(request=req(**kw)), metadata=auth(key), timeout=30
    )
    return [ev async for ev in call]


def text_of(events: list[pb.GenerateStreamResponse]) -> str:
    return "".join(ev.delta.text for ev in events if ev.HasField("delta"))


async def stats(rs: RunningServer) -> apb.GetCacheStatsResponse:
    admin = admin_pb2_grpc.AdminServiceStub(rs.channel)
    reply: apb.GetCacheStatsResponse = await admin.GetCacheStats(
        apb.GetCacheStatsRequest(), metadata=auth(ALICE), timeout=10
    )
    return reply


async def clear(rs: RunningServer, **kw: Any) -> apb.ClearCacheResponse:
    admin = admin_pb2_grpc.AdminServiceStub(rs.channel)
    reply: apb.ClearCacheResponse = await admin.ClearCache(
        apb.ClearCacheRequest(**kw), metadata=auth(ADMIN), timeout=10
    )
    return reply


async def test_miss_then_hit_with_stats_and_clear(rs: RunningServer, fake: FakeOpenAI) -> None:
    first = await generate(rs)
    second = await generate(rs)
    assert chats(fake) == 1
    assert not first.cache_hit and first.cost_nanos > 0 and first.attempts == 1
    assert second.cache_hit and second.text == first.text
    assert second.cost_nanos == 0 and second.usage.output_tokens == 0 and second.attempts == 0
    assert second.cache_saved_cost_nanos == first.cost_nanos

    s = await stats(rs)
    assert (s.enabled, s.hits, s.misses, s.total_requests, s.entries) == (True, 1, 1, 2, 1)
    assert s.hit_rate == 0.5 and s.size_bytes > 0 and s.backend == "memory"
    assert s.saved_cost_nanos == first.cost_nanos
    llm = next(k for k in s.kinds if k.kind == apb.CACHE_KIND_LLM)
    assert (llm.hits, llm.misses, llm.entries) == (1, 1, 1)

    with pytest.raises(grpc.aio.AioRpcError) as denied:  # clearing needs the admin scope
        admin = admin_pb2_grpc.AdminServiceStub(rs.channel)
        await admin.ClearCache(apb.ClearCacheRequest(), metadata=auth(ALICE), timeout=10)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    cleared = await clear(rs)
    assert cleared.entries_removed == 1 and cleared.bytes_freed > 0
    third = await generate(rs)
    assert not third.cache_hit and chats(fake) == 2
    s = await stats(rs)
    assert (s.hits, s.misses, s.entries) == (1, 2, 1)  # counters survive a clear


async def test_a_streamed_hit_replays_the_same_text(rs: RunningServer, fake: FakeOpenAI) -> None:
    first = await stream(rs)
    second = await stream(rs)
    assert chats(fake) == 1
    assert text_of(first) == text_of(second) == "answer to hello: one two three four five six"
    assert not first[0].started.cache_hit
    assert second[0].started.cache_hit and second[0].started.model == "up-chat"
    assert not any(ev.HasField("usage") for ev in second)
    final = second[-1].final
    paid = first[-1].final
    assert final.cache_hit and final.cost_nanos == 0 and final.attempts == 0
    assert final.cache_saved_cost_nanos == paid.cost_nanos > 0
    # and a unary call of the same request is served from the streamed answer
    unary = await generate(rs)
    assert unary.cache_hit and unary.text == text_of(first) and chats(fake) == 1


async def test_bypass_skips_and_refresh_replaces(rs: RunningServer, fake: FakeOpenAI) -> None:
    await generate(rs, cache_bypass=True)
    await generate(rs, cache_mode=pb.CACHE_MODE_BYPASS)
    assert chats(fake) == 2 and (await stats(rs)).entries == 0
    old = await generate(rs)
    fake.reply = lambda prompt: "a fresher answer"
    assert (await generate(rs)).text == old.text  # still the cached one
    refreshed = await generate(rs, cache_mode=pb.CACHE_MODE_REFRESH)
    assert not refreshed.cache_hit and refreshed.text == "a fresher answer"
    again = await generate(rs)
    assert again.cache_hit and again.text == "a fresher answer"
    assert chats(fake) == 4
    assert next(k for k in (await stats(rs)).kinds if k.kind == apb.CACHE_KIND_LLM).refreshes == 1


async def test_sampled_generations_are_cached_only_on_request(
    rs: RunningServer, fake: FakeOpenAI
) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    for _ in range(2):
        await stub.Generate(pb.GenerateRequest(prompt="x"), metadata=auth(ALICE), timeout=30)
    assert chats(fake) == 2
    for _ in range(2):
        r = await stub.Generate(
            pb.GenerateRequest(prompt="x", temperature=0.9, cache_mode=pb.CACHE_MODE_READ_WRITE),
            metadata=auth(ALICE),
            timeout=30,
        )
    assert r.cache_hit and chats(fake) == 3
    seeded = [await generate(rs, prompt="s", temperature=0.9, seed=4) for _ in range(2)]
    assert seeded[1].cache_hit and chats(fake) == 4
    assert (await stats(rs)).bypassed == 2


async def test_one_tenant_never_gets_another_tenants_answer(
    rs: RunningServer, fake: FakeOpenAI
) -> None:
    fake.reply = lambda prompt: "alice's answer"
    a = await generate(rs, key=ALICE)
    fake.reply = lambda prompt: "bob's answer"
    b = await generate(rs, key=BOB)
    b_stream = await stream(rs, key=BOB)
    a2 = await generate(rs, key=ALICE)
    assert (a.text, b.text, a2.text) == ("alice's answer", "bob's answer", "alice's answer")
    assert text_of(b_stream) == "bob's answer" and b_stream[0].started.cache_hit
    assert not b.cache_hit and a2.cache_hit and chats(fake) == 2
    # an admin clears one tenant's entries only
    assert (await clear(rs, namespace="bob")).entries_removed == 1
    assert (await generate(rs, key=ALICE)).cache_hit
    assert not (await generate(rs, key=BOB)).cache_hit


async def test_keys_created_at_run_time_share_their_tenants_entries(
    rs: RunningServer, fake: FakeOpenAI
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(rs.channel)

    async def create(name: str, tenant: str) -> str:
        policy = apb.ApiKeyPolicy(name=name, scopes=["user"], tenant=tenant)
        made = await admin.CreateApiKey(
            apb.CreateApiKeyRequest(policy=policy), metadata=auth(ADMIN), timeout=10
        )
        return str(made.api_key)

    acme1, acme2, other = [
        await create(n, t) for n, t in (("acme-1", "acme"), ("acme-2", "acme"), ("o", "other"))
    ]
    fake.reply = lambda prompt: "acme's answer"
    first = await generate(rs, key=acme1)
    fake.reply = lambda prompt: "other's answer"
    same_tenant = await generate(rs, key=acme2)  # a key of the same tenant: its entry
    other_tenant = await generate(rs, key=other)
    assert not first.cache_hit and same_tenant.cache_hit and not other_tenant.cache_hit
    assert (same_tenant.text, other_tenant.text) == ("acme's answer", "other's answer")
    assert chats(fake) == 2
    # The namespace is the tenant: clearing "acme" removes the entry both keys shared.
    assert (await clear(rs, namespace="acme")).entries_removed == 1
    assert (await generate(rs, key=other)).cache_hit


async def test_embeddings_are_cached(rs: RunningServer, fake: FakeOpenAI) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    request = pb.EmbedRequest(inputs=["one", "two"])
    first = await stub.Embed(request, metadata=auth(ALICE), timeout=30)
    second = await stub.Embed(request, metadata=auth(ALICE), timeout=30)
    assert len(fake.attempts("/embeddings")) == 1
    assert not first.cache_hit and second.cache_hit and second.cost_nanos == 0
    assert [list(e.values) for e in second.embeddings] == [list(e.values) for e in first.embeddings]
    assert second.cache_saved_cost_nanos == first.cost_nanos > 0
    await generate(rs)
    removed = await clear(rs, kind=apb.CACHE_KIND_EMBEDDING)
    assert removed.entries_removed == 1
    s = await stats(rs)
    kinds = {k.kind: k for k in s.kinds}
    assert kinds[apb.CACHE_KIND_EMBEDDING].entries == 0 and kinds[apb.CACHE_KIND_LLM].entries == 1
    assert kinds[apb.CACHE_KIND_EMBEDDING].hits == 1


async def test_entries_expire_after_their_ttl(fake: FakeOpenAI) -> None:
    class Clock:
        now = 5000.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    server = AureaServer(cache_settings(fake, cache={"ttl_s": 30}), clock=clock)
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            rs = RunningServer(server, f"127.0.0.1:{port}", channel)
            await generate(rs)
            clock.now += 29
            assert (await generate(rs)).cache_hit
            clock.now += 2
            expired = await generate(rs)
            assert not expired.cache_hit and chats(fake) == 2
            assert (await stats(rs)).evictions == 1
    finally:
        await server.stop(grace_s=0)


async def test_a_shared_call_outlives_its_leaders_deadline(
    rs: RunningServer, fake: FakeOpenAI
) -> None:
    """The caller that started a shared call stops at its own deadline; the call goes on for
    those who joined it (before, it ended at the leader's deadline, and a stream follower that
    already had text got UNAVAILABLE)."""
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    for kind in ("unary", "stream"):
        prompt = f"leader leaves ({kind})"
        fake.inject(Fault(FaultKind.SLOW_FIRST_BYTE, delay_s=0.5))  # the one upstream call
        if kind == "unary":
            leader = asyncio.ensure_future(
                stub.Generate(req(prompt=prompt), metadata=auth(ALICE), timeout=0.15)
            )
            await asyncio.sleep(0.05)  # the leader's flight is up; join it
            follower = await generate(rs, prompt=prompt)
            text = follower.text
        else:
            call = stub.GenerateStream(
                pb.GenerateStreamRequest(request=req(prompt=prompt)),
                metadata=auth(ALICE),
                timeout=0.15,
            )

            async def drain(c: Any = call) -> list[Any]:
                return [ev async for ev in c]

            leader = asyncio.ensure_future(drain())
            await asyncio.sleep(0.05)
            events = await stream(rs, prompt=prompt)
            assert not any(ev.HasField("fallback") for ev in events)
            text = text_of(events)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await leader
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert text == f"answer to {prompt}: one two three four five six"
    assert chats(fake) == 2  # one upstream call each, shared


async def test_fifty_identical_concurrent_calls_make_one_upstream_call(
    rs: RunningServer, fake: FakeOpenAI
) -> None:
    fake.token_delay_s = 0.02  # long enough that every call arrives while the first runs
    unary = await asyncio.gather(*(generate(rs, prompt="together") for _ in range(50)))
    assert chats(fake) == 1
    assert len({r.text for r in unary}) == 1
    assert sum(not r.cache_hit for r in unary) == 1  # the one that called upstream paid

    streams = await asyncio.gather(*(stream(rs, prompt="as a stream") for _ in range(50)))
    assert chats(fake) == 2
    texts = {text_of(events) for events in streams}
    assert texts == {"answer to as a stream: one two three four five six"}
    assert sum(events[-1].final.cost_nanos > 0 for events in streams) == 1
    s = await stats(rs)
    llm = next(k for k in s.kinds if k.kind == apb.CACHE_KIND_LLM)
    assert llm.misses == 2 and llm.hits == 98


async def test_a_hit_through_one_door_is_a_hit_through_the_other(
    rs: RunningServer, fake: FakeOpenAI
) -> None:
    port = rs.server.http_port
    body = {
        "model": "up-chat",
        "messages": [{"role": "user", "content": "both doors"}],
        "temperature": 0,
    }
    headers = {"authorization": f"Bearer {ALICE}", "content-type": "application/json"}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=json.dumps(body), headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["x-aurea-cache"] == "miss"
            answer = (await resp.json())["choices"][0]["message"]["content"]
        grpc_hit = await generate(rs, prompt="both doors", model="up-chat")
        assert grpc_hit.cache_hit and grpc_hit.text == answer
        await generate(rs, prompt="grpc first", model="up-chat")
        body["messages"] = [{"role": "user", "content": "grpc first"}]
        async with http.post(url, data=json.dumps(body), headers=headers) as resp:
            assert resp.headers["x-aurea-cache"] == "hit"
            assert resp.headers["x-aurea-cost-nanos"] == "0"
    assert chats(fake) == 2
