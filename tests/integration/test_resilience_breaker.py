"""The circuit breaker end to end, through gRPC against fake OpenAI upstreams that count every
request: a primary that is down for a while and then recovers. The server's breaker clock is a
fake one the test steps through open timeouts, so nothing here depends on how fast it runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio

from aurea.server import AureaServer
from aurea.testing import test_settings as make_settings
from aurea.testing.fakes import FakeOpenAI, Scripted
from aurea.v1 import admin_pb2 as apb
from aurea.v1 import admin_pb2_grpc, inference_pb2_grpc
from aurea.v1 import inference_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY_ENV = "AUREA_TEST_RESILIENCE_BREAKER_KEY"
KEY = "sk-resilience-breaker-0001"
THRESHOLD = 3
OPEN_S = 30.0
DOWN = {"error": {"message": "The server had an error", "type": "server_error", "code": None}}


class FakeClock:
    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    primary: FakeOpenAI
    backup: FakeOpenAI
    clock: FakeClock
    inference: inference_pb2_grpc.InferenceServiceStub
    admin: admin_pb2_grpc.AdminServiceStub

    def outage(self, requests: int = 500) -> None:
        """The primary answers HTTP 500 to its next ``requests`` requests."""
        self.primary.script(*(Scripted.json(DOWN, status=500) for _ in range(requests)))

    def recover(self) -> None:
        self.primary.scripted.clear()

    async def call(self, *, fallback: bool = True) -> pb.GenerateResponse:
        req = pb.GenerateRequest(
            prompt="hello there",
            model="primary",
            fallback_models=["backup"] if fallback else [],
        )
        resp: pb.GenerateResponse = await self.inference.Generate(req, timeout=30)
        return resp

    async def breaker(self) -> tuple[Any, Any]:
        stats = await self.admin.GetProviderStats(
            apb.GetProviderStatsRequest(provider="pa"), timeout=10
        )
        (provider,) = stats.providers
        (entry,) = [b for b in provider.breakers if b.model == "primary"]
        return provider, entry


@pytest_asyncio.fixture
async def rig(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setenv(KEY_ENV, KEY)
    async with FakeOpenAI(api_key=KEY) as primary, FakeOpenAI(api_key=KEY) as backup:
        block = {"kind": "openai", "api_key_env": KEY_ENV, "max_concurrency": 256}
        settings = make_settings(
            {
                "providers": {
                    "pa": {**block, "base_url": primary.base_url},
                    "pb": {**block, "base_url": backup.base_url},
                },
                "models": {
                    "primary": {"provider": "pa", "upstream": "gpt-4o-mini"},
                    "backup": {"provider": "pb", "upstream": "gpt-4o-mini"},
                },
                "routing": {"default_model": "primary"},
                "breaker": {"failure_threshold": THRESHOLD, "open_timeout_s": OPEN_S},
                # One attempt per candidate: the test counts attempts, not the retry table.
                "retry": {"max_retries": 0},
            }
        )
        clock = FakeClock()
        server = AureaServer(settings, clock=clock)
        port = await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            yield Rig(
                primary,
                backup,
                clock,
                inference_pb2_grpc.InferenceServiceStub(channel),
                admin_pb2_grpc.AdminServiceStub(channel),
            )
        finally:
            await channel.close()
            await server.stop(grace_s=0)


async def test_primary_down_then_recovering(rig: Rig) -> None:
    rig.outage()
    # The outage: every call is answered by the backup; the primary sees THRESHOLD attempts,
    # then its breaker opens and calls skip it at once.
    for _ in range(8):
        resp = await rig.call()
        assert resp.model == "backup" and resp.text
    assert rig.primary.request_count == THRESHOLD
    provider, entry = await rig.breaker()
    assert entry.state == apb.CIRCUIT_STATE_OPEN and provider.circuit_state == entry.state
    assert (entry.consecutive_failures, entry.times_opened) == (THRESHOLD, 1)
    assert entry.HasField("last_transition_time") and entry.HasField("half_open_time")
    assert provider.failures == THRESHOLD and provider.requests == THRESHOLD
    listed = await rig.admin.ListProviders(apb.ListProvidersRequest(), timeout=10)
    (pa,) = [p for p in listed.providers if p.name == "pa"]
    assert pa.circuit_state == apb.CIRCUIT_STATE_OPEN
    assert [b.model for b in pa.breakers] == ["primary"]

    # Each half-open window lets exactly one probe through, however many calls arrive.
    for window in range(2):
        rig.clock.now += OPEN_S
        _, entry = await rig.breaker()
        assert entry.state == apb.CIRCUIT_STATE_HALF_OPEN
        answers = await asyncio.gather(*(rig.call() for _ in range(20)))
        assert {a.model for a in answers} == {"backup"}
        assert rig.primary.request_count == THRESHOLD + window + 1
        _, entry = await rig.breaker()
        assert entry.state == apb.CIRCUIT_STATE_OPEN and entry.times_opened == window + 2

    # The primary recovers; until the open timeout passes, calls still go to the backup.
    rig.recover()
    before = rig.primary.request_count
    assert (await rig.call()).model == "backup"
    assert rig.primary.request_count == before
    # Within one open timeout of the recovery the probe goes, succeeds, and the primary is back.
    rig.clock.now += OPEN_S
    answers = [await rig.call() for _ in range(5)]
    assert [a.model for a in answers] == ["primary"] * 5
    assert rig.primary.request_count == before + 5
    provider, entry = await rig.breaker()
    assert entry.state == apb.CIRCUIT_STATE_CLOSED == provider.circuit_state
    assert entry.consecutive_failures == 0


async def test_open_circuit_without_fallback_is_unavailable_with_retry_info(
    rig: Rig, details: Callable[[grpc.RpcError], Any]
) -> None:
    rig.outage()
    for _ in range(THRESHOLD):
        with pytest.raises(grpc.aio.AioRpcError):
            await rig.call(fallback=False)
    rig.clock.now += 10
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.call(fallback=False)
    d = details(info.value)
    assert d.code == grpc.StatusCode.UNAVAILABLE and d.reason == "CIRCUIT_OPEN"
    assert d.retry_info is not None and d.retry_info.retry_delay.seconds == int(OPEN_S - 10)
    assert rig.primary.request_count == THRESHOLD
    # The server still answers a normal call (the backup, named explicitly).
    resp = await rig.inference.Generate(pb.GenerateRequest(prompt="hi", model="backup"), timeout=30)
    assert resp.model == "backup"


async def test_bad_requests_do_not_open_the_breaker(
    rig: Rig, details: Callable[[grpc.RpcError], Any]
) -> None:
    bad = {"error": {"message": "Invalid 'temperature'", "type": "invalid_request_error"}}
    rig.primary.script(*(Scripted.json(bad, status=400) for _ in range(THRESHOLD * 2)))
    for _ in range(THRESHOLD * 2):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await rig.call()
        assert details(info.value).code == grpc.StatusCode.INVALID_ARGUMENT
    provider, entry = await rig.breaker()
    assert entry.state == apb.CIRCUIT_STATE_CLOSED and entry.consecutive_failures == 0
    assert provider.rejected == THRESHOLD * 2 and provider.failures == 0
    assert (await rig.call()).model == "primary"


async def test_transitions_are_system_events(rig: Rig) -> None:
    watch = rig.admin.WatchEvents(apb.WatchEventsRequest(types=["breaker.", "limits."]), timeout=60)
    events = watch.__aiter__()

    async def mark() -> None:
        # Events before the watch began are not replayed: change a limit until the watch has
        # seen one, so the breaker's events below cannot come too early.
        while True:
            await rig.admin.SetModelLimits(apb.SetModelLimitsRequest(model="backup", rpm=0))
            await asyncio.sleep(0.05)

    marker = asyncio.create_task(mark())
    try:
        first = await anext(events)
    finally:
        marker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await marker
    assert first.event.type == "limits.changed" and first.event.attributes["model"] == "backup"

    async def next_breaker_event() -> Any:
        while True:
            item = await anext(events)
            if item.event.type.startswith("breaker."):
                return item.event

    rig.outage()
    for _ in range(THRESHOLD):
        await rig.call()
    rig.clock.now += OPEN_S
    await rig.call()  # the probe fails: open again
    rig.recover()
    rig.clock.now += OPEN_S
    await rig.call()  # the probe succeeds
    seen = [await next_breaker_event() for _ in range(5)]
    assert [e.type for e in seen] == [
        "breaker.opened",
        "breaker.half_open",
        "breaker.opened",
        "breaker.half_open",
        "breaker.closed",
    ]
    assert {(e.attributes["provider"], e.attributes["model"]) for e in seen} == {("pa", "primary")}
    watch.cancel()
