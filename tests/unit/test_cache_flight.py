"""CachedInference around a real core (actors, guards, a scripted provider): hits, misses,
modes, TTL, tenants, and single-flight with its failure semantics; and the decorators."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import pytest

from aurea import errors as e
from aurea.actors.provider import ProviderActor, ProviderBook
from aurea.cache import (
    CachedInference,
    CacheKind,
    CacheMode,
    ResponseCache,
    cache_embedding,
    cache_llm_response,
    cache_outcome,
)
from aurea.config import RetrySettings, build_settings
from aurea.inference import (
    AttemptInfo,
    CallRecord,
    Delta,
    EmbedCall,
    FallbackEvent,
    Final,
    GenerateCall,
    Inference,
    Started,
    UsageUpdate,
)
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
from aurea.routing import Candidate, RouterView, RoutingTable
from aurea.runtime import ActorSystem, RestartPolicy

pytestmark = pytest.mark.timeout(20)


class Gated:
    """A provider whose answers wait for ``gate`` (when set) before their first token, then
    send ``tokens`` tokens; ``fail`` makes the next calls raise it; counts every call."""

    def __init__(self, name: str = "a", tokens: int = 5) -> None:
        self.name = name
        self.tokens = tokens
        self.word = "t"
        self.gate: asyncio.Event | None = None
        self.fail: list[BaseException] = []
        self.calls = 0
        self.closed = 0

    async def _wait(self) -> None:
        self.calls += 1
        if self.fail:
            raise self.fail.pop(0)
        if self.gate is not None:
            await self.gate.wait()

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        try:
            await self._wait()
            for i in range(self.tokens):
                yield TextDelta(f"{self.word}{i} ")
                await asyncio.sleep(0)
            yield UsageReport(Usage(input_tokens=10, output_tokens=self.tokens))
            yield Finish(FinishReason.STOP)
        finally:
            self.closed += 1

    async def complete(self, request: ProviderRequest) -> Completion:
        await self._wait()
        return Completion(
            text=f"{self.word} whole",
            finish=Finish(FinishReason.STOP),
            usage=Usage(input_tokens=4, output_tokens=2),
        )

    async def embed(self, request: EmbedRequest) -> Embeddings:
        await self._wait()
        return Embeddings(vectors=tuple((float(len(t)),) * 8 for t in request.inputs), usage=None)

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        pass


class _Permit:
    def __init__(self, cut_after: int = 0) -> None:
        self.cut_after = cut_after  # 0: never
        self.seen = 0

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        self.seen += 1
        if self.cut_after and self.seen >= self.cut_after:
            raise e.BudgetExceeded(
                "cut", job_id="cut", spent_nanos=0, budget_nanos=1, limit_nanos=cost_nanos
            )

    async def __aenter__(self) -> _Permit:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


class BrokeJobs:
    """A guard that refuses jobs named ``broke*`` as an exhausted budget would, and stops the
    job ``cut`` at its third delta."""

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> _Permit:
        if call.job_id.startswith("broke"):
            raise e.BudgetExceeded(
                f"job {call.job_id} is out of money",
                job_id=call.job_id,
                spent_nanos=0,
                budget_nanos=0,
            )
        return _Permit(cut_after=3 if call.job_id == "cut" else 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self, provider: Gated | None = None, **cache: Any) -> None:
        self.settings = build_settings(
            {
                "providers": {"a": {"kind": "simulated"}},
                "models": {
                    "m-a": {"provider": "a", "input_usd_per_mtok": "1", "output_usd_per_mtok": "2"},
                    "m-b": {"provider": "a", "input_usd_per_mtok": "1", "output_usd_per_mtok": "2"},
                    "e-a": {"provider": "a", "kind": "embedding", "input_usd_per_mtok": "1"},
                },
                "routing": {"default_model": "m-a", "default_embedding_model": "e-a"},
            }
        )
        self.provider = provider or Gated()
        self.system = ActorSystem(policy=RestartPolicy())
        ref = self.system.spawn(
            "provider:a",
            lambda: ProviderActor(
                provider=self.provider, kind="fake", max_concurrency=200, book=ProviderBook()
            ),
        )
        self.records: list[CallRecord] = []
        self.core = Inference(
            view=RouterView(
                RoutingTable(models=self.settings.models, settings=self.settings.routing)
            ),
            providers={"a": ref},
            retry=RetrySettings(max_retries=0, backoff_base_s=0.001, backoff_max_s=0.001),
            ask_timeout_s=5.0,
            guards=[BrokeJobs()],
            sinks=[self.records.append],
        )
        self.clock = Clock()
        self.cache = ResponseCache.memory(clock=self.clock, **cache)
        self.inference = CachedInference(self.core, self.cache, sinks=[self.records.append])

    async def __aenter__(self) -> Rig:
        await self.system.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cache.aclose()
        await self.system.stop(grace_s=1.0)

    async def stream(
        self, c: GenerateCall, mode: CacheMode = CacheMode.AUTO
    ) -> tuple[list[Any], Final]:
        events: list[Any] = []

        async def emit(ev: Any) -> None:
            events.append(ev)

        final = await self.inference.stream(c, emit, mode=mode)
        return events, final


def call(**kw: Any) -> GenerateCall:
    kw.setdefault("temperature", 0.0)
    kw.setdefault("usage_interval", 2)
    kw.setdefault("request_id", "r")
    return GenerateCall(messages=(ChatMessage(Role.USER, "hi"),), **kw)


def text(events: list[Any]) -> str:
    return "".join(ev.text for ev in events if isinstance(ev, Delta))


async def until(predicate: Any) -> None:
    for _ in range(5000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


# -- hits and misses ---------------------------------------------------------------------------


async def test_a_repeated_stream_is_replayed_from_the_cache() -> None:
    async with Rig() as rig:
        first, f1 = await rig.stream(call())
        assert cache_outcome().hit is False
        second, f2 = await rig.stream(call(request_id="r2", job_id="other"))
        outcome = cache_outcome()
        stats = await rig.cache.stats()
    assert rig.provider.calls == 1
    assert text(first) == text(second) == "t0 t1 t2 t3 t4 "
    started = second[0]
    assert isinstance(started, Started) and started.cache_hit and started.model == "m-a"
    assert not any(isinstance(ev, UsageUpdate) for ev in second)
    assert f1.cost_nanos > 0 and f1.attempts == 1
    assert f2.cost_nanos == 0 and f2.usage == Usage() and f2.attempts == 0
    assert outcome.hit and not outcome.shared and outcome.saved_cost_nanos == f1.cost_nanos
    assert rig.records[-1].cache_hit and rig.records[-1].request_id == "r2"
    llm = stats.kinds[0]
    assert (llm.kind, llm.hits, llm.misses, llm.entries) == (CacheKind.LLM, 1, 1, 1)
    assert llm.saved_cost_nanos == f1.cost_nanos and stats.hit_rate == 0.5


async def test_a_streamed_answer_serves_a_unary_call_and_a_unary_answer_a_stream() -> None:
    async with Rig() as rig:
        _, _ = await rig.stream(call())
        unary = await rig.inference.generate(call())
        assert unary.text == "t0 t1 t2 t3 t4 " and unary.attempts == 0
        whole = await rig.inference.generate(call(seed=1))
        events, final = await rig.stream(call(seed=1))
    assert rig.provider.calls == 2
    assert whole.text == "t whole" and text(events) == "t whole" and final.text == ""


async def test_sampled_generations_are_not_cached_unless_asked() -> None:
    async with Rig() as rig:
        for _ in range(2):
            await rig.inference.generate(call(temperature=None))
        assert rig.provider.calls == 2
        for _ in range(2):
            await rig.inference.generate(call(temperature=0.7), mode=CacheMode.READ_WRITE)
        assert rig.provider.calls == 3
        assert rig.cache.bypassed == 2


async def test_bypass_neither_reads_nor_stores_and_refresh_replaces_the_entry() -> None:
    async with Rig() as rig:
        await rig.inference.generate(call(cache_bypass=True))
        await rig.inference.generate(call(), mode=CacheMode.BYPASS)
        assert rig.provider.calls == 2 and (await rig.cache.stats()).entries == 0
        await rig.inference.generate(call())  # stores "t whole"
        rig.provider.word = "fresh"
        refreshed = await rig.inference.generate(call(), mode=CacheMode.REFRESH)
        assert refreshed.text == "fresh whole" and rig.provider.calls == 4
        again = await rig.inference.generate(call())
    assert again.text == "fresh whole" and again.attempts == 0 and rig.provider.calls == 4


async def test_entries_expire_after_their_ttl() -> None:
    async with Rig(ttl_s=60.0, embedding_ttl_s=600.0) as rig:
        await rig.inference.generate(call())
        embed = EmbedCall(request_id="e", inputs=("abc",))
        await rig.inference.embed(embed)
        rig.clock.now += 59.0
        await rig.inference.generate(call())
        assert rig.provider.calls == 2
        rig.clock.now += 2.0  # past the generation's TTL, within the embedding's
        await rig.inference.generate(call())
        await rig.inference.embed(embed)
    assert rig.provider.calls == 3


async def test_tenants_never_share_answers() -> None:
    async with Rig() as rig:
        a = await rig.inference.generate(call(principal="alice"))
        rig.provider.word = "bob's"
        b = await rig.inference.generate(call(principal="bob"))
        a2 = await rig.inference.generate(call(principal="alice"))
    assert (a.text, b.text, a2.text) == ("t whole", "bob's whole", "t whole")
    assert rig.provider.calls == 2


async def test_keys_of_one_tenant_share_a_namespace() -> None:
    tenants = {"alice": "acme", "albert": "acme", "bob": "bob"}
    async with Rig(tenants=tenants) as rig:
        await rig.inference.generate(call(principal="alice"))
        same = await rig.inference.generate(call(principal="albert"))
        other = await rig.inference.generate(call(principal="bob"))
        assert rig.provider.calls == 2 and same.attempts == 0 and other.attempts == 1
    shared = ResponseCache.memory(namespace="everyone", tenants=tenants)
    assert shared.namespace_of("alice") == shared.namespace_of("bob") == "everyone"


async def test_embeddings_are_cached_and_report_what_they_saved() -> None:
    async with Rig() as rig:
        c = EmbedCall(request_id="e", inputs=("one", "three"))
        first = await rig.inference.embed(c)
        second = await rig.inference.embed(dataclasses.replace(c, request_id="e2"))
        outcome = cache_outcome()
        other = await rig.inference.embed(EmbedCall(request_id="e", inputs=("three", "one")))
    assert rig.provider.calls == 2
    assert second.vectors == first.vectors and other.vectors != first.vectors
    assert second.cost_nanos == 0 and outcome.hit and outcome.saved_cost_nanos == first.cost_nanos
    assert rig.records[1].cache_hit and rig.records[1].kind.value == "embed"


async def test_an_unknown_model_fails_as_it_would_without_the_cache() -> None:
    async with Rig() as rig:
        with pytest.raises(e.UnknownModel):
            await rig.inference.generate(call(model="nope"))


async def test_a_budget_cut_answer_is_not_kept() -> None:
    async with Rig() as rig:
        _, final = await rig.stream(call(job_id="cut"))
        assert final.finish_reason is FinishReason.BUDGET_EXCEEDED
        assert (await rig.cache.stats()).entries == 0
        _, again = await rig.stream(call(job_id="ok"))
    assert again.finish_reason is FinishReason.STOP and rig.provider.calls == 2


# -- single flight -------------------------------------------------------------------------------


async def test_fifty_identical_streams_make_one_upstream_call() -> None:
    async with Rig() as rig:
        rig.provider.gate = asyncio.Event()
        tasks = [
            asyncio.ensure_future(rig.stream(call(request_id=f"r{i}", job_id=f"j{i}")))
            for i in range(50)
        ]
        await until(lambda: rig.provider.calls == 1)
        for _ in range(20):
            await asyncio.sleep(0)
        rig.provider.gate.set()
        results = await asyncio.gather(*tasks)
    assert rig.provider.calls == 1
    texts = {text(events) for events, _ in results}
    assert texts == {"t0 t1 t2 t3 t4 "}
    paid = [final for _, final in results if final.cost_nanos > 0]
    assert len(paid) == 1
    shared = [events for events, final in results if final.cost_nanos == 0]
    assert all(isinstance(ev[0], Started) and ev[0].cache_hit for ev in shared)
    stats = await rig.cache.stats()
    assert stats.kinds[0].misses == 1 and stats.kinds[0].hits == 49
    assert stats.kinds[0].shared == 49


async def test_fifty_identical_unary_calls_and_embeddings_make_one_upstream_call_each() -> None:
    async with Rig() as rig:
        rig.provider.gate = asyncio.Event()
        gens = [
            asyncio.ensure_future(rig.inference.generate(call(request_id=f"r{i}")))
            for i in range(50)
        ]
        embs = [
            asyncio.ensure_future(rig.inference.embed(EmbedCall(request_id=f"e{i}", inputs=("x",))))
            for i in range(50)
        ]
        await until(lambda: rig.provider.calls == 2)
        rig.provider.gate.set()
        finals = await asyncio.gather(*gens)
        results = await asyncio.gather(*embs)
    assert rig.provider.calls == 2
    assert {f.text for f in finals} == {"t whole"}
    assert len({r.vectors for r in results}) == 1


async def test_followers_keep_receiving_when_the_leader_leaves() -> None:
    async with Rig() as rig:
        rig.provider.gate = asyncio.Event()
        leader = asyncio.ensure_future(rig.stream(call(request_id="lead")))
        await until(lambda: rig.provider.calls == 1)
        followers = [asyncio.ensure_future(rig.stream(call(request_id=f"f{i}"))) for i in range(3)]
        for _ in range(20):
            await asyncio.sleep(0)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        rig.provider.gate.set()
        results = await asyncio.gather(*followers)
        await until(lambda: len(rig.cache.flights) == 0)
        stats = await rig.cache.stats()
    assert rig.provider.calls == 1
    assert all(text(events) == "t0 t1 t2 t3 t4 " for events, _ in results)
    assert stats.entries == 1  # the answer was kept although its leader left


async def test_the_upstream_call_ends_when_every_caller_left() -> None:
    async with Rig() as rig:
        rig.provider.gate = asyncio.Event()
        tasks = [asyncio.ensure_future(rig.stream(call(request_id=f"r{i}"))) for i in range(3)]
        await until(lambda: rig.provider.calls == 1)
        for _ in range(20):
            await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await until(lambda: rig.provider.closed == 1)
        await until(lambda: len(rig.cache.flights) == 0)
        assert (await rig.cache.stats()).entries == 0


async def test_an_upstream_failure_reaches_every_follower_once() -> None:
    async with Rig() as rig:
        gate = asyncio.Event()

        async def slow_fail(request: ProviderRequest) -> Completion:
            rig.provider.calls += 1
            await gate.wait()
            raise e.ProviderServerError("upstream 500", provider="a")

        rig.provider.complete = slow_fail  # type: ignore[method-assign]
        tasks = [
            asyncio.ensure_future(rig.inference.generate(call(request_id=f"r{i}")))
            for i in range(5)
        ]
        await until(lambda: rig.provider.calls == 1)
        for _ in range(20):
            await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert rig.provider.calls == 1  # followers do not repeat a call the upstream failed
    assert all(isinstance(r, e.ProvidersUnavailable | e.ProviderError) for r in results), results


async def test_a_leader_refused_for_its_own_budget_does_not_poison_followers() -> None:
    async with Rig() as rig:
        rig.provider.gate = asyncio.Event()
        gate = asyncio.Event()
        original = BrokeJobs.admit

        async def slow_admit(self: BrokeJobs, c: AttemptInfo, cand: Candidate) -> _Permit:
            await gate.wait()
            return await original(self, c, cand)

        BrokeJobs.admit = slow_admit  # type: ignore[method-assign]
        try:
            leader = asyncio.ensure_future(rig.stream(call(request_id="lead", job_id="broke")))
            for _ in range(20):
                await asyncio.sleep(0)
            followers = [
                asyncio.ensure_future(rig.stream(call(request_id=f"f{i}", job_id="ok")))
                for i in range(4)
            ]
            for _ in range(20):
                await asyncio.sleep(0)
            gate.set()
            rig.provider.gate.set()
            with pytest.raises(e.BudgetExceeded):
                await leader
            results = await asyncio.gather(*followers)
        finally:
            BrokeJobs.admit = original  # type: ignore[method-assign]
    assert rig.provider.calls == 1  # one follower led the second flight; the rest shared it
    for events, _ in results:
        assert text(events) == "t0 t1 t2 t3 t4 "
        assert sum(isinstance(ev, Started) for ev in events) == 1


def test_a_stream_continued_on_another_model_is_not_kept() -> None:
    from aurea.cache._entry import answer_events

    events = [
        Started(request_id="r", model="m-a", provider="a", attempt=1, reason=""),
        Delta("half "),
        FallbackEvent(
            from_model="m-a", to_model="m-b", to_provider="a", cause="x", message="x", attempt=2
        ),
        Delta("rest"),
    ]
    assert answer_events(events) is None
    # a fallback before any output is routing, not part of the answer
    before = [events[0], events[2], events[1], UsageUpdate(usage=Usage(), cost_nanos=0)]
    assert answer_events(before) == (Delta("half "),)


async def test_a_flight_cancelled_before_it_ran_ends_and_frees_its_key() -> None:
    from aurea.cache._flight import FlightTable

    table = FlightTable()
    ran: list[int] = []

    async def run(f: Any) -> int:
        ran.append(1)
        return 1

    flight = table.start("k", run)
    flight.subscribe()
    flight.unsubscribe()  # the only caller left before the task's first step
    await until(lambda: flight.done)
    assert not ran and isinstance(flight.error, asyncio.CancelledError)
    assert table.get("k") is None and len(table) == 0
    again = table.start("k", run)
    again.subscribe()
    while not again.done:
        await again.changed()
    assert again.result == 1 and ran == [1]


async def test_nobody_joins_a_flight_whose_last_subscriber_left() -> None:
    """Its cancellation is only requested when the last subscriber leaves: a caller arriving
    before the task gets round to it must start a flight of its own, not join one that is about
    to end (a stream follower would then have half an answer)."""
    from aurea.cache._flight import FlightTable

    table = FlightTable()
    started = asyncio.Event()

    async def slow(f: Any) -> int:
        started.set()
        await asyncio.sleep(30)
        return 1

    flight = table.start("k", slow)
    flight.subscribe()
    await started.wait()
    flight.unsubscribe()  # cancel() is only requested: the task has not run it yet
    assert not flight.done
    assert table.get("k") is None  # not offered to the next caller
    fresh = table.start("k", lambda f: asyncio.sleep(0, result=2))
    fresh.subscribe()
    while not fresh.done:
        await fresh.changed()
    assert fresh.result == 2 and table.get("k") is None
    await until(lambda: flight.done)
    assert isinstance(flight.error, asyncio.CancelledError)


# -- decorators ------------------------------------------------------------------------------------


async def test_decorated_functions_run_once_per_argument_set() -> None:
    cache = ResponseCache.memory()
    runs: list[str] = []
    gate = asyncio.Event()

    @cache_llm_response(cache)
    async def answer(prompt: str, *, model: str = "m") -> dict[str, Any]:
        runs.append(prompt)
        await gate.wait()
        return {"text": prompt.upper(), "tokens": [1, 2]}

    @cache_embedding(lambda: cache, namespace="vectors")
    async def vectors(texts: list[str]) -> list[list[float]]:
        runs.append("embed")
        return [[float(len(t))] for t in texts]

    tasks = [asyncio.ensure_future(answer("hi")) for _ in range(10)]
    await until(lambda: len(runs) == 1)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert runs == ["hi"] and all(r == {"text": "HI", "tokens": [1, 2]} for r in results)
    again = await answer("hi")
    again["tokens"].append(3)  # a caller's change never reaches the cache
    assert await answer("hi") == {"text": "HI", "tokens": [1, 2]}
    assert await answer("ho") == {"text": "HO", "tokens": [1, 2]}
    assert await vectors(["a", "bb"]) == await vectors(["a", "bb"]) == [[1.0], [2.0]]
    assert runs == ["hi", "ho", "embed"]
    stats = await cache.stats()
    assert {k.kind: k.entries for k in stats.kinds} == {CacheKind.LLM: 2, CacheKind.EMBEDDING: 1}


async def test_a_decorated_function_that_raises_is_not_cached() -> None:
    cache = ResponseCache.memory()
    calls = 0

    @cache_llm_response(cache)
    async def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first time")
        return x

    with pytest.raises(ValueError):
        await flaky(1)
    assert await flaky(1) == 1 and await flaky(1) == 1 and calls == 2
    with pytest.raises(TypeError):

        @cache_llm_response(cache)
        def not_async(x: int) -> int:  # type: ignore[type-var]
            return x

    with pytest.raises(TypeError):
        await flaky(object())  # type: ignore[arg-type]
