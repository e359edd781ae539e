"""The response cache in ``aurea.Embedded``: in-process calls use the same cache as the gRPC
door (a hit through one is a hit through the other), the decorators cache a Python function
in it, and hits and misses reach the Prometheus counters."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

import aurea
from aurea.cache import CacheKind, cache_embedding, cache_llm_response
from aurea.inference import Delta, Started
from aurea.telemetry import metrics
from aurea.testing import test_settings as make_settings
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

pytestmark = pytest.mark.timeout(60)


def settings() -> Any:
    return make_settings(
        {
            "http": {"port": 0},
            "telemetry": {"http_port": 0},
            "ledger": {"store": "memory"},
            "routing": {"stats_store": "memory"},
        }
    )


def counter(name: str, cache_type: str) -> float:
    value = metrics.REGISTRY.get_sample_value(f"{name}_total", {"cache_type": cache_type})
    return value or 0.0


async def test_in_process_and_remote_calls_share_one_cache() -> None:
    hits0, misses0 = counter("cache_hits", "response"), counter("cache_misses", "response")
    async with aurea.Embedded(settings(), serve=True) as a:
        first = await a.generate("cached in process", model="sim-small", temperature=0)
        again = await a.generate("cached in process", model="sim-small", temperature=0)
        assert first.attempts == 1 and first.cost_nanos > 0
        assert again.attempts == 0 and again.cost_nanos == 0 and again.text == first.text
        events = [ev async for ev in a.stream("cached in process", model="sim-small", seed=None,
                                               temperature=0)]  # fmt: skip
        assert isinstance(events[0], Started) and events[0].cache_hit
        assert "".join(e.text for e in events if isinstance(e, Delta)) == first.text
        refreshed = await a.generate(
            "cached in process", model="sim-small", temperature=0, cache="refresh"
        )
        assert refreshed.attempts == 1

        async with grpc.aio.insecure_channel(f"127.0.0.1:{a.server.port}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            remote = await stub.Generate(
                pb.GenerateRequest(prompt="cached in process", model="sim-small", temperature=0)
            )
            assert remote.cache_hit and remote.text == refreshed.text
            await stub.Generate(
                pb.GenerateRequest(prompt="asked remotely", model="sim-small", temperature=0)
            )
        local = await a.generate("asked remotely", model="sim-small", temperature=0)
        assert local.attempts == 0
        vectors = await a.embed(["x", "y"])
        assert (await a.embed(["x", "y"])).vectors == vectors.vectors
    assert counter("cache_hits", "response") - hits0 == 4
    assert counter("cache_misses", "response") - misses0 == 2  # the refresh is neither
    assert counter("cache_hits", "embedding") >= 1


async def test_decorators_cache_in_the_embedded_servers_cache() -> None:
    runs: list[str] = []
    async with aurea.Embedded(settings()) as a:

        @cache_llm_response(a)
        async def summarize(text: str, *, words: int = 3) -> str:
            runs.append(text)
            final = await a.generate(f"summarize: {text}", model="sim-small")
            return " ".join(final.text.split()[:words])

        @cache_embedding(lambda: a.cache, namespace="docs")
        async def vectors(texts: list[str]) -> list[list[float]]:
            runs.append("embed")
            result = await a.embed(texts)
            return [list(v) for v in result.vectors]

        one = await summarize("a long text")
        assert await summarize("a long text") == one
        assert await summarize("a long text", words=2) != one or len(one.split()) < 3
        assert await vectors(["a"]) == await vectors(["a"])
        assert runs == ["a long text", "a long text", "embed"]
        stats = await a.cache.stats()
        by_kind = {k.kind: k for k in stats.kinds}
        assert by_kind[CacheKind.LLM].entries == 2 and by_kind[CacheKind.EMBEDDING].entries >= 1
        assert by_kind[CacheKind.LLM].hits == 1
