"""The inference pipeline driven through real actors with a scripted fake provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aurea.actors.provider import GetStats, ProviderActor
from aurea.actors.router import Router
from aurea.config import RetrySettings, build_settings
from aurea.errors import (
    ContextLengthExceeded,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderServerError,
    ProvidersUnavailable,
    StreamBroken,
)
from aurea.pipeline import Delta, FallbackEvent, Final, GenerateCall, Inference, Started
from aurea.providers._base import (
    ChatMessage,
    Completion,
    Embeddings,
    EmbedRequest,
    Finish,
    FinishReason,
    ProviderEvent,
    ProviderRequest,
    Role,
    TextDelta,
    Usage,
    UsageReport,
)
from aurea.runtime import ActorSystem


class Scripted:
    """A Provider whose calls follow a script: an exception to raise, or 'ok'."""

    def __init__(self, name: str, script: list[Any], tokens: int = 3) -> None:
        self.name = name
        self.script = list(script)
        self.tokens = tokens
        self.calls = 0
        self.closed_streams = 0

    def _next(self) -> Any:
        self.calls += 1
        return self.script.pop(0) if self.script else "ok"

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        step = self._next()
        try:
            if isinstance(step, BaseException):
                raise step
            for i in range(self.tokens):
                yield TextDelta(f"t{i} ")
                if step == "break-after-first" and i == 0:
                    raise StreamBroken("cut", provider=self.name)
            yield UsageReport(Usage(input_tokens=10, output_tokens=self.tokens))
            yield Finish(FinishReason.STOP)
        finally:
            self.closed_streams += 1

    async def complete(self, request: ProviderRequest) -> Completion:
        step = self._next()
        if isinstance(step, BaseException):
            raise step
        return Completion(
            text="whole",
            finish=Finish(FinishReason.LENGTH),
            usage=Usage(input_tokens=4, output_tokens=1),
        )

    async def embed(self, request: EmbedRequest) -> Embeddings:
        return Embeddings(vectors=((1.0,),), usage=None)

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        pass


def _settings() -> Any:
    return build_settings(
        {
            "providers": {"a": {"kind": "simulated"}, "b": {"kind": "simulated"}},
            "models": {
                "m-a": {"provider": "a", "input_usd_per_mtok": "1", "output_usd_per_mtok": "2"},
                "m-b": {"provider": "b", "input_usd_per_mtok": "3", "output_usd_per_mtok": "4"},
            },
            "routing": {"default_model": "m-a"},
        }
    )


class Harness:
    def __init__(self, a: Scripted, b: Scripted, max_retries: int = 2) -> None:
        self.settings = _settings()
        self.system = ActorSystem()
        self.sleeps: list[float] = []
        router = self.system.spawn(
            "router", lambda: Router(models=self.settings.models, settings=self.settings.routing)
        )
        self.refs = {
            p.name: self.system.spawn(
                f"provider:{p.name}",
                lambda p=p: ProviderActor(provider=p, kind="fake", max_concurrency=4),
            )
            for p in (a, b)
        }

        async def fake_sleep(s: float) -> None:
            self.sleeps.append(s)

        self.inference = Inference(
            router=router,
            providers=self.refs,
            retry=RetrySettings(max_retries=max_retries, backoff_base_s=0.1, backoff_max_s=1.0),
            ask_timeout_s=2.0,
            sleep=fake_sleep,
            jitter=lambda: 1.0,
        )


def call(**kw: Any) -> GenerateCall:
    return GenerateCall(
        request_id="r1", messages=(ChatMessage(Role.USER, "hi"),), usage_interval=0, **kw
    )


async def collect(h: Harness, c: GenerateCall) -> list[Any]:
    return [ev async for ev in h.inference.stream(c)]


async def test_stream_happy_path_reports_usage_and_cost() -> None:
    a, b = Scripted("a", []), Scripted("b", [])
    h = Harness(a, b)
    async with h.system:
        events = await collect(h, call())
    assert isinstance(events[0], Started) and events[0].model == "m-a"
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "t0 t1 t2 "
    final = events[-1]
    assert isinstance(final, Final)
    # 10 input at $1/Mtok + 3 output at $2/Mtok = 10_000 + 6_000 nanos
    assert final.cost_nanos == 16_000 and not final.usage.estimated
    assert final.attempts == 1


async def test_retryable_errors_retry_with_backoff_then_succeed() -> None:
    a = Scripted(
        "a",
        [
            ProviderServerError("500", provider="a"),
            ProviderRateLimited("429", provider="a", retry_after_s=0.3),
        ],
    )
    h = Harness(a, Scripted("b", []))
    async with h.system:
        events = await collect(h, call())
    assert isinstance(events[-1], Final) and events[-1].attempts == 3
    assert a.calls == 3
    # backoff 0.1 then 0.2 (jitter=1.0 -> full), but Retry-After 0.3 wins on the second
    assert h.sleeps == [pytest.approx(0.1), pytest.approx(0.3)]
    assert not any(isinstance(e, FallbackEvent) for e in events)


async def test_exhausted_retries_fall_back_to_next_candidate() -> None:
    a = Scripted("a", [ProviderServerError("500", provider="a")] * 3)
    b = Scripted("b", [])
    h = Harness(a, b)
    async with h.system:
        events = await collect(h, call(fallbacks=("m-b",)))
    fb = [e for e in events if isinstance(e, FallbackEvent)]
    assert len(fb) == 1 and fb[0].from_model == "m-a" and fb[0].to_model == "m-b"
    assert fb[0].cause == "UPSTREAM_SERVER_ERROR"
    final = events[-1]
    assert isinstance(final, Final) and final.model == "m-b" and final.attempts == 4
    # fallback comes before any delta
    first_delta = next(i for i, e in enumerate(events) if isinstance(e, Delta))
    assert events.index(fb[0]) < first_delta


async def test_auth_error_is_not_retried_but_falls_back() -> None:
    a = Scripted("a", [ProviderAuthError("401", provider="a")])
    h = Harness(a, Scripted("b", []))
    async with h.system:
        events = await collect(h, call(fallbacks=("m-b",)))
    assert a.calls == 1 and h.sleeps == []
    assert isinstance(events[-1], Final) and events[-1].model == "m-b"


async def test_rejected_request_fails_at_once_without_fallback() -> None:
    a = Scripted("a", [ContextLengthExceeded("too long", provider="a")])
    b = Scripted("b", [])
    h = Harness(a, b)
    async with h.system:
        with pytest.raises(ContextLengthExceeded):
            await collect(h, call(fallbacks=("m-b",)))
    assert b.calls == 0


async def test_every_candidate_failing_gives_providers_unavailable() -> None:
    a = Scripted("a", [ProviderServerError("x", provider="a")] * 9)
    b = Scripted("b", [ProviderServerError("y", provider="b")] * 9)
    h = Harness(a, b, max_retries=0)
    async with h.system:
        with pytest.raises(ProvidersUnavailable) as info:
            await collect(h, call(fallbacks=("m-b",)))
    assert "m-a" in info.value.message and "m-b" in info.value.message


async def test_failure_after_first_delta_reports_usage_then_raises() -> None:
    a = Scripted("a", ["break-after-first"])
    h = Harness(a, Scripted("b", []))
    seen: list[Any] = []
    async with h.system:
        with pytest.raises(StreamBroken):
            async for ev in h.inference.stream(call(fallbacks=("m-b",))):
                seen.append(ev)
        stats = await h.refs["a"].ask(GetStats())
    assert any(isinstance(e, Delta) for e in seen)
    assert not any(isinstance(e, Final) for e in seen)  # never ends as a success
    assert stats.failures == 1 and stats.successes == 0


async def test_consumer_closing_the_stream_closes_the_upstream() -> None:
    a = Scripted("a", [], tokens=50)
    h = Harness(a, Scripted("b", []))
    async with h.system:
        gen = h.inference.stream(call())
        async for ev in gen:
            if isinstance(ev, Delta):
                break
        await gen.aclose()
        for _ in range(100):
            if a.closed_streams:
                break
            await asyncio.sleep(0.01)
        stats = await h.refs["a"].ask(GetStats())
    assert a.closed_streams == 1
    # The client leaving is not the provider's failure.
    assert (stats.cancelled, stats.failures, stats.successes) == (1, 0, 0)
    assert stats.last_ok is None and stats.output_tokens >= 1


async def test_unary_uses_complete_and_counts_cost() -> None:
    a = Scripted("a", [ProviderServerError("500", provider="a")])
    h = Harness(a, Scripted("b", []))
    async with h.system:
        final = await h.inference.generate(call())
    assert final.text == "whole" and final.finish_reason is FinishReason.LENGTH
    assert (
        final.attempts == 2 and final.cost_nanos == 4_000 + 2_000
    )  # $1 and $2 per Mtok = 1000 and 2000 nanos a token


async def test_long_retry_after_is_not_waited_out_inside_the_call() -> None:
    a = Scripted("a", [ProviderRateLimited("429", provider="a", retry_after_s=30.0)])
    h = Harness(a, Scripted("b", []))
    async with h.system:
        with pytest.raises(ProviderRateLimited) as info:
            await collect(h, call())
        stats = await h.refs["a"].ask(GetStats())
    assert h.sleeps == [] and a.calls == 1
    assert info.value.retry_after_s == 30.0  # the caller gets it as RetryInfo
    assert stats.failures == 1 and stats.last_ok is False


async def test_failed_attempts_count_as_provider_failures() -> None:
    a = Scripted("a", [ProviderServerError("500", provider="a")])
    h = Harness(a, Scripted("b", []))
    async with h.system:
        await collect(h, call())
        stats = await h.refs["a"].ask(GetStats())
    assert (stats.requests, stats.successes, stats.failures) == (2, 1, 1)
    assert stats.last_ok is True
