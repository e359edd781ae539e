"""The inference core driven through real actors with a scripted fake provider: the attempt
loop (each row of the classification table), permits released on every exit path, and the
defects of the pre-core pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import pytest

from aurea import errors as e
from aurea.actors.provider import Admit, GetStats, ProviderActor, ProviderBook
from aurea.config import RetrySettings, build_settings
from aurea.inference import (
    AllowDenyGuard,
    AttemptInfo,
    CallOutcome,
    CallRecord,
    Delta,
    EmbedCall,
    FallbackEvent,
    Final,
    GenerateCall,
    Inference,
    Started,
)
from aurea.inference.classify import TABLE, Action, classify
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

pytestmark = pytest.mark.timeout(10)


class Panic(BaseException):
    """Like pyo3's PanicException: not an Exception."""


class Scripted:
    """A Provider whose calls follow a script: an exception to raise, 'ok', 'hang', or
    'break-after-first'."""

    def __init__(self, name: str, script: list[Any] | None = None, tokens: int = 3) -> None:
        self.name = name
        self.script = list(script or [])
        self.tokens = tokens
        self.calls = 0
        self.closed_streams = 0
        self.stream_tasks: list[asyncio.Task[Any] | None] = []

    def _next(self) -> Any:
        self.calls += 1
        return self.script.pop(0) if self.script else "ok"

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        self.stream_tasks.append(asyncio.current_task())
        step = self._next()
        try:
            if isinstance(step, BaseException):
                raise step
            if step == "hang":
                await asyncio.Event().wait()
            for i in range(self.tokens):
                yield TextDelta(f"t{i} ")
                if step == "break-after-first" and i == 0:
                    raise e.StreamBroken("cut", provider=self.name)
                if step == "slow":
                    await asyncio.sleep(0.01)
            yield UsageReport(Usage(input_tokens=10, output_tokens=self.tokens))
            yield Finish(FinishReason.STOP)
        finally:
            self.closed_streams += 1

    async def complete(self, request: ProviderRequest) -> Completion:
        step = self._next()
        if isinstance(step, BaseException):
            raise step
        if step == "hang":
            await asyncio.Event().wait()
        return Completion(
            text="whole",
            finish=Finish(FinishReason.LENGTH),
            usage=Usage(input_tokens=4, output_tokens=1),
        )

    async def embed(self, request: EmbedRequest) -> Embeddings:
        step = self._next()
        if isinstance(step, BaseException):
            raise step
        return Embeddings(vectors=((1.0,),), usage=None)

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        pass


class CountingPermit:
    def __init__(self, log: list[tuple[str, Any]], name: str) -> None:
        self.log = log
        self.name = name
        self.observed: list[int] = []

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        self.observed.append(cost_nanos)

    async def __aenter__(self) -> CountingPermit:
        self.log.append((f"enter:{self.name}", None))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.log.append((f"exit:{self.name}", exc_type))


class CountingGuard:
    """Admits everything and counts entries and exits of its permits."""

    def __init__(self, name: str, log: list[tuple[str, Any]]) -> None:
        self.name = name
        self.log = log
        self.permits: list[CountingPermit] = []

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> CountingPermit:
        p = CountingPermit(self.log, self.name)
        self.permits.append(p)
        return p

    def entered(self) -> int:
        return sum(1 for k, _ in self.log if k == f"enter:{self.name}")

    def exited(self) -> int:
        return sum(1 for k, _ in self.log if k == f"exit:{self.name}")


class RefusingGuard:
    name = "refuse"

    def __init__(self, exc: BaseException, models: set[str]) -> None:
        self.exc = exc
        self.models = models

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> Any:
        if candidate.model.name in self.models:
            raise self.exc
        return CountingPermit([], "ok")


def _settings(**routing: Any) -> Any:
    return build_settings(
        {
            "providers": {"a": {"kind": "simulated"}, "b": {"kind": "simulated"}},
            "models": {
                "m-a": {
                    "provider": "a",
                    "input_usd_per_mtok": "1",
                    "output_usd_per_mtok": "2",
                    "context_window": 8000,
                },
                "m-b": {
                    "provider": "b",
                    "input_usd_per_mtok": "3",
                    "output_usd_per_mtok": "4",
                    "context_window": 16000,
                },
                "e-a": {"provider": "a", "kind": "embedding", "input_usd_per_mtok": "1"},
            },
            "routing": {"default_model": "m-a", "default_embedding_model": "e-a", **routing},
        }
    )


class Harness:
    def __init__(
        self,
        a: Scripted,
        b: Scripted | None = None,
        *,
        max_retries: int = 2,
        guards: list[Any] | None = None,
        max_concurrency: int = 4,
        default_timeout_s: float = 300.0,
        **routing: Any,
    ) -> None:
        self.settings = _settings(**routing)
        self.system = ActorSystem(
            policy=RestartPolicy(max_restarts=5, backoff_base_s=0.001, backoff_max_s=0.001)
        )
        self.sleeps: list[float] = []
        self.records: list[CallRecord] = []
        self.log: list[tuple[str, Any]] = []
        self.counting = CountingGuard("g", self.log)
        self.books = {p.name: ProviderBook() for p in (a, b or Scripted("b"))}
        self.view = RouterView(
            RoutingTable(models=self.settings.models, settings=self.settings.routing)
        )
        self.providers = {p.name: p for p in (a, b or Scripted("b"))}
        self.refs = {
            name: self.system.spawn(
                f"provider:{name}",
                lambda p=p: ProviderActor(  # type: ignore[misc]
                    provider=p,
                    kind="fake",
                    max_concurrency=max_concurrency,
                    book=self.books[p.name],
                ),
            )
            for name, p in self.providers.items()
        }

        async def fake_sleep(s: float) -> None:
            self.sleeps.append(s)

        r = self.settings.routing
        self.inference = Inference(
            view=self.view,
            providers=self.refs,
            retry=RetrySettings(max_retries=max_retries, backoff_base_s=0.1, backoff_max_s=1.0),
            ask_timeout_s=2.0,
            guards=[
                AllowDenyGuard(allowed=r.allowed_models, denied=r.denied_models),
                *(guards or []),
                self.counting,
            ],
            default_call_timeout_s=default_timeout_s,
            sinks=[self.records.append],
            sleep=fake_sleep,
            jitter=lambda: 1.0,
        )

    async def stats(self, name: str = "a") -> Any:
        return await self.refs[name].ask(GetStats())

    def balanced(self) -> bool:
        return self.counting.entered() == self.counting.exited()


async def until(predicate: Any) -> None:
    for _ in range(1000):  # bounded: 1000 loop turns
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def call(**kw: Any) -> GenerateCall:
    kw.setdefault("usage_interval", 0)
    return GenerateCall(request_id="r1", messages=(ChatMessage(Role.USER, "hi"),), **kw)


async def collect(h: Harness, c: GenerateCall) -> list[Any]:
    events: list[Any] = []

    async def emit(ev: Any) -> None:
        events.append(ev)

    final = await h.inference.stream(c, emit)
    events.append(final)
    return events


# -- the happy paths ---------------------------------------------------------------------


async def test_stream_happy_path_reports_usage_and_cost() -> None:
    h = Harness(Scripted("a"))
    async with h.system:
        events = await collect(h, call())
    assert isinstance(events[0], Started) and events[0].model == "m-a"
    assert "".join(ev.text for ev in events if isinstance(ev, Delta)) == "t0 t1 t2 "
    final = events[-1]
    assert isinstance(final, Final)
    # 10 input at $1/Mtok + 3 output at $2/Mtok = 10_000 + 6_000 nanos
    assert final.cost_nanos == 16_000 and not final.usage.estimated
    assert final.attempts == 1
    (rec,) = h.records
    assert rec.outcome is CallOutcome.OK and rec.cost_nanos == 16_000 and rec.model == "m-a"
    assert rec.finish_reason is FinishReason.STOP and len(rec.attempts) == 1
    assert h.counting.permits[0].observed[-1] == 16_000  # the permit saw the final cost
    assert h.balanced()


async def test_unary_uses_complete_and_counts_cost() -> None:
    h = Harness(Scripted("a", [e.ProviderServerError("500", provider="a")]))
    async with h.system:
        final = await h.inference.generate(call())
    assert final.text == "whole" and final.finish_reason is FinishReason.LENGTH
    # $1 and $2 per Mtok = 1000 and 2000 nanos a token
    assert final.attempts == 2 and final.cost_nanos == 4_000 + 2_000
    assert h.records[0].attempts[0].error == "UPSTREAM_SERVER_ERROR"
    assert h.balanced() and h.counting.entered() == 2


async def test_embed_goes_through_the_same_loop() -> None:
    h = Harness(Scripted("a", [e.ProviderServerError("500", provider="a")]))
    async with h.system:
        result = await h.inference.embed(EmbedCall(request_id="r", inputs=("hello",)))
    assert result.vectors == ((1.0,),) and result.usage.estimated
    assert result.attempts == 2 and h.records[0].kind.value == "embed"
    assert h.balanced()


# -- the classification table, row by row ------------------------------------------------

ROWS: list[tuple[BaseException, Action]] = [
    # Issue 8: a larger context window may take it (m-b's is larger); a silent or slow
    # upstream is not retried.
    (e.ContextLengthExceeded("x", provider="a"), Action.NEXT),
    (e.ContentFiltered("x", provider="a"), Action.FAIL),
    (e.UpstreamRejected("x", provider="a"), Action.FAIL),
    (e.ProviderAuthError("x", provider="a"), Action.NEXT),
    (e.ProviderRateLimited("x", provider="a"), Action.RETRY),
    (e.ProviderServerError("x", provider="a"), Action.RETRY),
    (e.ProviderOverloaded("x", provider="a"), Action.RETRY),
    (e.ProviderTimeout("x", provider="a"), Action.NEXT),
    (e.ProviderSilent("x", provider="a"), Action.NEXT),
    (e.ProviderStalled("x", provider="a"), Action.NEXT),
    (e.ProviderConnectionError("x", provider="a"), Action.RETRY),
    (e.StreamBroken("x", provider="a"), Action.RETRY),
    (e.ProviderError("x", provider="a"), Action.RETRY),
    (e.Overloaded("x"), Action.NEXT),
    (e.CircuitOpen("x"), Action.NEXT),
    (e.RateLimited("x"), Action.NEXT),
    (e.ModelDenied("x"), Action.NEXT),
    (e.ActorCrashed("x"), Action.NEXT),
    (e.Unavailable("x"), Action.NEXT),
    (e.ShuttingDown("x"), Action.FAIL),
    (e.BudgetExceeded("x", job_id="j", spent_nanos=1, budget_nanos=1), Action.FAIL),
    (e.InvalidRequest("x"), Action.FAIL),
    (e.NotFound("x"), Action.FAIL),
]


def test_every_table_row_is_tested() -> None:
    tested = {type(exc) for exc, _ in ROWS}
    assert {cls for cls, _ in TABLE} <= tested


@pytest.mark.parametrize(("exc", "action"), ROWS, ids=lambda v: type(v).__name__)
async def test_classification_row_through_the_loop(exc: BaseException, action: Action) -> None:
    """Raise the error from the first candidate's adapter (or its guard, for Aurea's own
    refusals) and check what the loop did: retried, moved on, or failed the call."""
    assert classify(exc) is action
    from_provider = isinstance(exc, e.ProviderError)
    a = Scripted("a", [exc] if from_provider else [])
    guards = [] if from_provider else [RefusingGuard(exc, {"m-a"})]
    h = Harness(a, Scripted("b"), guards=guards)
    async with h.system:
        if action is Action.FAIL:
            with pytest.raises(type(exc)):
                await collect(h, call(fallbacks=("m-b",)))
            assert h.providers["b"].calls == 0
        else:
            events = await collect(h, call(fallbacks=("m-b",)))
            final = events[-1]
            if action is Action.RETRY:
                assert final.model == "m-a" and a.calls == 2 and len(h.sleeps) == 1
            else:
                assert final.model == "m-b" and h.sleeps == []
                assert any(isinstance(ev, FallbackEvent) for ev in events)
    assert h.balanced()


async def test_retryable_errors_retry_with_backoff_then_succeed() -> None:
    a = Scripted(
        "a",
        [
            e.ProviderServerError("500", provider="a"),
            e.ProviderRateLimited("429", provider="a", retry_after_s=0.3),
        ],
    )
    h = Harness(a)
    async with h.system:
        events = await collect(h, call())
    assert isinstance(events[-1], Final) and events[-1].attempts == 3
    # backoff 0.1 then 0.2 (jitter=1.0 -> full), but Retry-After 0.3 wins on the second
    assert h.sleeps == [pytest.approx(0.1), pytest.approx(0.3)]


async def test_exhausted_retries_fall_back_before_any_delta() -> None:
    a = Scripted("a", [e.ProviderServerError("500", provider="a")] * 3)
    h = Harness(a)
    async with h.system:
        events = await collect(h, call(fallbacks=("m-b",)))
    fb = [ev for ev in events if isinstance(ev, FallbackEvent)]
    assert len(fb) == 1 and (fb[0].from_model, fb[0].to_model) == ("m-a", "m-b")
    assert isinstance(events[0], Started)
    assert events[-1].model == "m-b" and events[-1].attempts == 4
    first_delta = next(i for i, ev in enumerate(events) if isinstance(ev, Delta))
    assert events.index(fb[0]) < first_delta
    assert h.records[0].fallbacks == 1 and len(h.records[0].attempts) == 4


async def test_long_retry_after_is_not_waited_out_inside_the_call() -> None:
    a = Scripted("a", [e.ProviderRateLimited("429", provider="a", retry_after_s=30.0)])
    h = Harness(a)
    async with h.system:
        with pytest.raises(e.ProviderRateLimited) as info:
            await collect(h, call())
        stats = await h.stats()
    assert h.sleeps == [] and a.calls == 1
    assert info.value.retry_after_s == 30.0
    assert stats.failures == 1 and stats.last_ok is False


async def test_upstream_429_has_the_same_error_with_one_or_several_candidates() -> None:
    def limited(p: str) -> Scripted:
        return Scripted(p, [e.ProviderRateLimited("429", provider=p, retry_after_s=30)] * 3)

    one = Harness(limited("a"))
    async with one.system:
        with pytest.raises(e.ProviderRateLimited):
            await collect(one, call())
    two = Harness(limited("a"), limited("b"))
    async with two.system:
        with pytest.raises(e.ProviderRateLimited) as info:
            await collect(two, call(fallbacks=("m-b",)))
    assert "m-a" in info.value.message and "m-b" in info.value.message


async def test_mixed_failures_give_providers_unavailable_naming_each() -> None:
    a = Scripted("a", [e.ProviderServerError("x", provider="a")])
    b = Scripted("b", [e.ProviderTimeout("y", provider="b")])
    h = Harness(a, b, max_retries=0)
    async with h.system:
        with pytest.raises(e.ProvidersUnavailable) as info:
            await collect(h, call(fallbacks=("m-b",)))
    assert "m-a" in info.value.message and "m-b" in info.value.message
    assert h.records[0].outcome is CallOutcome.FAILED
    assert h.records[0].error == "PROVIDERS_UNAVAILABLE"


async def test_failure_after_first_delta_reports_usage_then_raises() -> None:
    h = Harness(Scripted("a", ["break-after-first"]))
    seen: list[Any] = []

    async def emit(ev: Any) -> None:
        seen.append(ev)

    async with h.system:
        with pytest.raises(e.StreamBroken):
            await h.inference.stream(call(fallbacks=("m-b",)), emit)
        stats = await h.stats()
    assert any(isinstance(ev, Delta) for ev in seen)
    assert not any(isinstance(ev, Final) for ev in seen)  # never ends as a success
    assert h.providers["b"].calls == 0  # output began: no silent switch of answer
    assert stats.failures == 1 and stats.successes == 0
    assert h.balanced()


# -- permits: released on every exit path ------------------------------------------------


async def test_permits_release_in_reverse_order_and_see_the_error() -> None:
    log: list[tuple[str, Any]] = []
    first, second = CountingGuard("first", log), CountingGuard("second", log)
    a = Scripted("a", [e.ProviderServerError("500", provider="a")])
    h = Harness(a, guards=[first, second], max_retries=0)
    async with h.system:
        with pytest.raises(e.ProviderServerError):
            await h.inference.generate(call())
    assert [k for k, _ in log] == ["enter:first", "enter:second", "exit:second", "exit:first"]
    assert all(t is e.ProviderServerError for k, t in log if k.startswith("exit"))


async def test_permits_released_on_client_cancel() -> None:
    h = Harness(Scripted("a", ["hang"]))
    async with h.system:
        task = asyncio.create_task(collect(h, call()))
        await until(lambda: h.providers["a"].calls > 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = await h.stats()
    assert h.balanced() and h.counting.exited() == 1
    assert h.log[-1][1] is asyncio.CancelledError
    assert (stats.in_flight, stats.cancelled, stats.failures) == (0, 1, 0)
    assert h.providers["a"].closed_streams == 1  # the upstream was closed
    assert h.records[0].outcome is CallOutcome.CANCELLED


async def test_permits_released_and_call_bounded_without_a_caller_deadline() -> None:
    """No caller deadline: the server's default bounds the whole call (every retry)."""
    h = Harness(Scripted("a", ["hang"]), default_timeout_s=0.05)
    async with h.system:
        with pytest.raises(e.DeadlineExceeded):
            await h.inference.generate(call())
        stats = await h.stats()
    assert h.balanced() and stats.in_flight == 0
    assert h.records[0].outcome is CallOutcome.DEADLINE


async def test_caller_deadline_bounds_retries() -> None:
    loop = asyncio.get_running_loop()
    a = Scripted("a", ["hang"])
    h = Harness(a)
    async with h.system:
        with pytest.raises(e.DeadlineExceeded):
            await collect(h, call(deadline=loop.time() + 0.05))
    assert h.balanced()


async def test_permits_released_on_fallback_and_on_guard_refusal() -> None:
    refuse = RefusingGuard(e.RateLimited("own limit"), {"m-a"})
    h = Harness(Scripted("a"), guards=[refuse])
    async with h.system:
        events = await collect(h, call(fallbacks=("m-b",)))
    assert events[-1].model == "m-b"
    # The refused attempt never reached the counting guard (it is after the refusing one).
    assert h.counting.entered() == h.counting.exited() == 1


async def test_provider_actor_crash_moves_to_next_candidate_and_keeps_stats() -> None:
    class Crashy(ProviderActor):
        crash_next = False

        async def receive(self, msg: Any) -> Any:
            if isinstance(msg, Admit) and Crashy.crash_next:
                Crashy.crash_next = False
                raise RuntimeError("boom")
            return await super().receive(msg)

    h = Harness(Scripted("a"))
    book = h.books["a"]
    h.system = ActorSystem(
        policy=RestartPolicy(max_restarts=5, backoff_base_s=0.001, backoff_max_s=0.001)
    )
    h.refs["a"] = h.system.spawn(
        "provider:a",
        lambda: Crashy(provider=h.providers["a"], kind="f", max_concurrency=4, book=book),
    )
    h.refs["b"] = h.system.spawn(
        "provider:b",
        lambda: ProviderActor(provider=h.providers["b"], kind="f", max_concurrency=4),
    )
    h.inference._loop._providers = h.refs
    async with h.system:
        await collect(h, call())
        Crashy.crash_next = True
        events = await collect(h, call(fallbacks=("m-b",)))
        stats = await h.stats("a")
    assert events[-1].model == "m-b"
    assert h.records[-1].attempts[0].error == "ACTOR_RESTARTED"
    # Stats survive the restart of the provider's actor.
    assert (stats.requests, stats.successes, stats.in_flight) == (1, 1, 0)
    assert h.balanced()


# -- defects of the old pipeline ---------------------------------------------------------


async def test_cancelled_admit_asks_do_not_strand_concurrency_slots() -> None:
    """Callers cancelled while their admission ask is queued used to strand a slot each;
    after max_concurrency of them every call was refused."""
    h = Harness(Scripted("a"), max_concurrency=2)
    async with h.system:
        ref = h.refs["a"]
        for _ in range(5):
            tasks = [asyncio.create_task(ref.ask(Admit())) for _ in range(2)]
            await asyncio.sleep(0)  # queued, not yet handled
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(3):
            await collect(h, call())
        stats = await h.stats()
    assert stats.in_flight == 0 and stats.successes == 3


async def test_timed_out_admit_ask_releases_its_permit() -> None:
    h = Harness(Scripted("a"), max_concurrency=1)
    async with h.system:
        ref = h.refs["a"]
        for _ in range(600):  # keep the actor busy so the ask expires before it answers
            ref.tell(GetStats())
        with pytest.raises(e.Unavailable):
            await ref.ask(Admit(), timeout_s=0)
        await collect(h, call())
        stats = await h.stats()
    assert stats.in_flight == 0 and stats.successes == 1


async def test_stream_runs_in_the_callers_task() -> None:
    """No producer task to be cancelled by someone else (a consumer used to hang then)."""
    a = Scripted("a")
    h = Harness(a)
    async with h.system:
        mine = asyncio.current_task()
        await collect(h, call())
    assert a.stream_tasks == [mine]


async def test_non_provider_aurea_error_from_stream_adapter_is_not_retried() -> None:
    """e.g. the local model file is missing: pass the error (and its message) through."""
    a = Scripted("a", [e.FailedPrecondition("model file /x.gguf is missing")] * 3)
    h = Harness(a)
    async with h.system:
        with pytest.raises(e.FailedPrecondition, match="missing"):
            await collect(h, call())
    assert a.calls == 1 and h.sleeps == []


@pytest.mark.parametrize("mode", ["stream", "unary"])
async def test_adapter_bug_maps_to_provider_server_error_on_every_path(mode: str) -> None:
    a = Scripted("a", [KeyError("x")] * 3)
    h = Harness(a, max_retries=0)
    async with h.system:
        with pytest.raises(e.ProviderServerError, match="KeyError"):
            if mode == "stream":
                await collect(h, call())
            else:
                await h.inference.generate(call())
    assert h.balanced()


async def test_a_base_exception_from_an_adapter_ends_the_call() -> None:
    """A pyo3 panic is a BaseException: it must end the call with a status, never hang."""
    a = Scripted("a", [Panic("tokenizer panicked")] * 3)
    h = Harness(a, max_retries=0)
    async with h.system:
        with pytest.raises(e.ProviderServerError, match="Panic"):
            await collect(h, call())
    assert h.balanced() and h.records[0].outcome is CallOutcome.FAILED


async def test_failed_attempts_count_as_provider_failures() -> None:
    a = Scripted("a", [e.ProviderServerError("500", provider="a")])
    h = Harness(a)
    async with h.system:
        await collect(h, call())
        stats = await h.stats()
    assert (stats.requests, stats.successes, stats.failures) == (2, 1, 1)
    assert stats.last_ok is True


async def test_avg_latency_counts_only_finished_attempts() -> None:
    """Cancelled attempts' latency used to be added while only finished ones were counted."""
    h = Harness(Scripted("a", ["hang"]))
    async with h.system:
        task = asyncio.create_task(collect(h, call()))
        await until(lambda: h.providers["a"].calls > 0)
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = await h.stats()
    assert stats.cancelled == 1 and stats.total_latency_s == 0.0


# -- routing and allow/deny --------------------------------------------------------------


async def test_denied_model_is_refused_on_every_path() -> None:
    h = Harness(Scripted("a"), denied_models=["m-b"])
    async with h.system:
        with pytest.raises(e.ModelDenied):
            await collect(h, call(model="m-b"))
        events = await collect(h, call(model="m-b", fallbacks=("m-a",)))
    assert events[-1].model == "m-a"
    assert h.providers["b"].calls == 0


async def test_unknown_model_error_does_not_list_denied_models() -> None:
    h = Harness(Scripted("a"), denied_models=["m-b"])
    async with h.system:
        with pytest.raises(e.UnknownModel) as info:
            await collect(h, call(model="nope"))
    assert "m-a" in info.value.message and "m-b" not in info.value.message


async def test_policy_ranks_only_permitted_models_then_fallbacks() -> None:
    from aurea.types import Policy

    h = Harness(Scripted("a"), Scripted("b"), allowed_models=["m-b"])
    async with h.system:
        events = await collect(h, call(policy=Policy.COST))
    assert events[-1].model == "m-b" and h.providers["a"].calls == 0


class CappedPermit(CountingPermit):
    """Like a ledger lease: refuses (raises BudgetExceeded) past ``cap`` output tokens."""

    def __init__(self, log: list[tuple[str, Any]], cap: int) -> None:
        super().__init__(log, "cap")
        self.cap = cap

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        self.observed.append(cost_nanos)
        if usage.output_tokens > self.cap:
            raise e.BudgetExceeded("over", job_id="j", spent_nanos=cost_nanos, budget_nanos=1)


class CappingGuard:
    name = "cap"

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.permits: list[CappedPermit] = []

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> CappedPermit:
        p = CappedPermit([], self.cap)
        self.permits.append(p)
        return p


async def test_a_permit_refusing_mid_stream_stops_it_with_budget_exceeded() -> None:
    guard = CappingGuard(cap=3)
    a = Scripted("a", tokens=10)
    h = Harness(a, guards=[guard])
    async with h.system:
        events = await collect(h, call())
        stats = await h.stats()
    final = events[-1]
    assert final.finish_reason is FinishReason.BUDGET_EXCEEDED
    text = "".join(ev.text for ev in events if isinstance(ev, Delta))
    assert text == "t0 t1 t2 "  # the delta that would cross the cap was not sent
    assert a.closed_streams == 1  # the upstream was closed at once
    permit = guard.permits[0]
    assert permit.observed[-1] == final.cost_nanos  # the permit settles on the final cost
    assert h.balanced() and stats.in_flight == 0
