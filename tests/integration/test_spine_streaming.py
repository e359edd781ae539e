"""GenerateStream end to end: deltas arrive as the provider makes them, and a client that
cancels stops the provider's work for its stream."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from aurea.actors.provider import GetStats
from aurea.testing import running_server
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

pytestmark = pytest.mark.integration

TOKENS = 20
TOKEN_DELAY_MS = 30
SLOW_TOKENS = 200  # planned output of the stream the client cancels


def count_tokens(text: str) -> int:
    """Tokens in the simulated provider's text: it sends one word per token. (Counting ``delta``
    events instead would be wrong: text the client has not read yet may merge into one.)"""
    return len(text.split())


async def poll(predicate: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    """Wait (bounded) until ``predicate()`` holds; return whether it did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def provider_in_flight(rs: Any) -> int:
    stats = await rs.server.provider_refs["simulated"].ask(GetStats(), timeout_s=2.0)
    return int(stats.in_flight)


async def test_stream_deltas_arrive_incrementally(slow_server_settings: Callable[..., Any]) -> None:
    """The client holds the first delta before the provider has produced the last token.
    Tokens are counted from the text and the final usage, never from the number of ``delta``
    events: text the client has not read yet may be merged into one event."""
    async with running_server(slow_server_settings(TOKEN_DELAY_MS, TOKENS)) as rs:
        sim = rs.provider("simulated")
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        call = stub.GenerateStream(
            pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="count slowly")), timeout=30
        )
        produced_at_first_delta: int | None = None
        finished_at_first_delta: int | None = None
        kinds: list[str] = []
        text: list[str] = []
        final = None
        async for event in call:
            kind = event.WhichOneof("event")
            kinds.append(kind)
            if kind == "delta":
                if produced_at_first_delta is None:
                    produced_at_first_delta = sim.tokens_generated
                    finished_at_first_delta = sim.streams_finished
                text.append(event.delta.text)
            elif kind == "final":
                final = event.final
        assert await call.code() == grpc.StatusCode.OK
        assert kinds[0] == "started" and kinds[-1] == "final"
        assert final is not None
        assert final.usage.output_tokens == TOKENS
        assert count_tokens("".join(text)) == TOKENS  # no text lost or repeated by merging
        assert sim.tokens_generated == TOKENS  # the counter counts exactly this stream's tokens
        assert produced_at_first_delta is not None
        assert produced_at_first_delta < TOKENS, (
            f"the provider had produced {produced_at_first_delta} of {TOKENS} tokens "
            "when the first delta reached the client: the stream was buffered"
        )
        assert finished_at_first_delta == 0


async def test_stream_deltas_match_the_unary_text(server: Any) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(server.channel)
    # A seed makes the call cacheable: both calls bypass the cache, so both reach the model.
    bypass = pb.CACHE_MODE_BYPASS
    unary = await stub.Generate(
        pb.GenerateRequest(prompt="same words", seed=7, cache_mode=bypass), timeout=10
    )
    text = []
    final = None
    async for event in stub.GenerateStream(
        pb.GenerateStreamRequest(
            request=pb.GenerateRequest(prompt="same words", seed=7, cache_mode=bypass)
        ),
        timeout=10,
    ):
        if event.HasField("delta"):
            text.append(event.delta.text)
        elif event.HasField("final"):
            final = event.final
    assert "".join(text) == unary.text
    assert final is not None
    # Deltas may merge tokens, so the count comes from the text, not from len(text).
    assert final.usage.output_tokens == unary.usage.output_tokens == count_tokens(unary.text)
    assert final.cost_nanos == unary.cost_nanos > 0


async def test_stream_usage_events_are_cumulative(slow_server_settings: Callable[..., Any]) -> None:
    """Each usage event counts every token sent before it (the text so far, however it was
    split into deltas), the counts grow, at most one event per interval, none after the end."""
    interval = 5
    async with running_server(slow_server_settings(1, TOKENS)) as rs:
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        req = pb.GenerateStreamRequest(
            request=pb.GenerateRequest(prompt="usage please"), usage_interval_deltas=interval
        )
        text: list[str] = []
        seen: list[int] = []
        final = None
        async for event in stub.GenerateStream(req, timeout=10):
            if event.HasField("delta"):
                text.append(event.delta.text)
            elif event.HasField("usage"):
                seen.append(event.usage.usage.output_tokens)
                assert event.usage.usage.output_tokens == count_tokens("".join(text))
                assert event.usage.cost_nanos > 0
            elif event.HasField("final"):
                final = event.final
        assert final is not None and final.usage.output_tokens == TOKENS
        assert seen, "no usage event in a stream of several intervals"
        assert seen == sorted(set(seen)), f"usage counts must grow: {seen}"
        # The n-th event comes once at least n intervals of tokens were sent.
        assert all(count >= interval * n for n, count in enumerate(seen, 1)), seen
        assert seen[-1] <= TOKENS
        assert len(seen) <= TOKENS // interval


async def test_cancelled_stream_stops_provider_work(
    slow_server_settings: Callable[..., Any],
) -> None:
    """A client that cancels a stream stops the provider's work for it."""
    async with running_server(slow_server_settings(TOKEN_DELAY_MS, SLOW_TOKENS)) as rs:
        sim = rs.provider("simulated")
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        call = stub.GenerateStream(
            pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="a long answer")), timeout=60
        )
        deltas = 0
        async for event in call:
            if event.HasField("delta"):
                deltas += 1
                if deltas == 2:
                    break
        assert sim.streams_started == 1
        assert sim.streams_cancelled == 0
        assert call.cancel()

        assert await poll(lambda: sim.streams_cancelled == 1), (
            f"the provider stream was not cancelled: started={sim.streams_started} "
            f"finished={sim.streams_finished} cancelled={sim.streams_cancelled} "
            f"tokens={sim.tokens_generated}"
        )
        stopped_at = sim.tokens_generated
        await asyncio.sleep(TOKEN_DELAY_MS * 5 / 1000)  # several token periods
        assert sim.tokens_generated == stopped_at, "the provider kept generating after cancel"
        assert stopped_at < SLOW_TOKENS // 4
        assert sim.streams_finished == 0
        assert await provider_in_flight(rs) == 0
        assert await poll(lambda: rs.server.tracker.in_flight == 0)
        assert await call.code() == grpc.StatusCode.CANCELLED


async def test_deadline_stops_provider_work(slow_server_settings: Callable[..., Any]) -> None:
    """The caller's deadline cancels the upstream stream just like an explicit cancel."""
    async with running_server(slow_server_settings(TOKEN_DELAY_MS, SLOW_TOKENS)) as rs:
        sim = rs.provider("simulated")
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        call = stub.GenerateStream(
            pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="too slow")), timeout=0.5
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert await poll(lambda: sim.streams_cancelled == 1)
        stopped_at = sim.tokens_generated
        await asyncio.sleep(TOKEN_DELAY_MS * 5 / 1000)
        assert sim.tokens_generated == stopped_at
        assert stopped_at < SLOW_TOKENS // 2


async def test_cancelled_unary_generate_stops_provider_work(
    slow_server_settings: Callable[..., Any],
) -> None:
    async with running_server(slow_server_settings(TOKEN_DELAY_MS, SLOW_TOKENS)) as rs:
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        call = stub.Generate(pb.GenerateRequest(prompt="long unary"), timeout=60)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while await provider_in_flight(rs) != 1:
            assert loop.time() < deadline, "the call never reached the provider"
            await asyncio.sleep(0.01)
        call.cancel()
        deadline = loop.time() + 2.0
        while await provider_in_flight(rs) != 0:
            assert loop.time() < deadline, "the provider call kept running after cancel"
            await asyncio.sleep(0.01)
        assert rs.provider("simulated").tokens_generated == 0
        assert await poll(lambda: rs.server.tracker.in_flight == 0)


async def test_slow_reader_backpressures_the_provider_then_cancel_stops_it(
    slow_server_settings: Callable[..., Any],
) -> None:
    """A client that stops reading holds the provider back (bounded buffering, no runaway
    generation), and cancelling then stops the provider's work even from that stalled state."""
    planned = 1_000_000
    async with running_server(slow_server_settings(0, planned)) as rs:
        sim = rs.provider("simulated")
        # A small fixed HTTP/2 window (no BDP probing), so the transport buffers little.
        options = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]
        channel = grpc.aio.insecure_channel(rs.target, options=options)
        try:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            call = stub.GenerateStream(
                pb.GenerateStreamRequest(
                    request=pb.GenerateRequest(prompt="flood", max_tokens=planned)
                ),
                timeout=60,
            )
            for _ in range(3):
                assert await call.read() is not grpc.aio.EOF

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10.0
            readings = [-3, -2, -1]
            while len(set(readings[-3:])) > 1:  # the same count three readings in a row
                assert loop.time() < deadline, (
                    f"the provider never stalled behind a slow reader: {readings[-5:]}"
                )
                await asyncio.sleep(0.2)
                readings.append(sim.tokens_generated)
            stalled_at = readings[-1]
            assert 0 < stalled_at < planned // 10
            assert sim.streams_finished == 0

            call.cancel()
            assert await poll(lambda: sim.streams_cancelled == 1)
            assert await poll(lambda: rs.server.tracker.in_flight == 0)
            assert await provider_in_flight(rs) == 0
            assert sim.tokens_generated <= stalled_at + 1
        finally:
            await channel.close()


async def test_cancel_before_the_first_token_stops_provider_work(
    slow_server_settings: Callable[..., Any],
) -> None:
    settings = slow_server_settings(TOKEN_DELAY_MS, SLOW_TOKENS)
    spec = settings.providers["simulated"]
    options = {**spec.options, "first_token_delay_ms": 10_000}
    settings = dataclasses.replace(
        settings, providers={"simulated": dataclasses.replace(spec, options=options)}
    )
    async with running_server(settings) as rs:
        sim = rs.provider("simulated")
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        call = stub.GenerateStream(
            pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="think first")), timeout=60
        )
        first = await call.read()
        assert first.WhichOneof("event") == "started"
        assert await poll(lambda: sim.streams_started == 1)
        call.cancel()
        assert await poll(lambda: sim.streams_cancelled == 1)
        assert sim.tokens_generated == 0
        assert await poll(lambda: rs.server.tracker.in_flight == 0)
        assert await provider_in_flight(rs) == 0
