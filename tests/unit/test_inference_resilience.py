"""Issue 8 in the inference core, with real actors and a scripted upstream: per-model limits
(time to first token, stall, total) and their watchdog, the retry table's new rows, context
windows, and mid-stream failover (prefill, restart, refusal, usage of abandoned attempts)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aurea import errors as e
from aurea.actors.provider import ProviderActor
from aurea.config import RetrySettings, build_settings
from aurea.inference import (
    AttemptInfo,
    CallRecord,
    Delta,
    FailoverMode,
    FallbackEvent,
    Final,
    GenerateCall,
    Inference,
    UsageUpdate,
)
from aurea.inference.deadlines import Deadlines
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
    Timeouts,
    Usage,
    UsageReport,
)
from aurea.routing import Candidate, RouterView, RoutingTable
from aurea.runtime import ActorSystem, RestartPolicy
from aurea.testing.fakes import continue_after

pytestmark = pytest.mark.timeout(20)

TOKENS = ["t0", *(f" t{i}" for i in range(1, 10))]
ANSWER = "".join(TOKENS)
LIMIT_S = 0.05  # m-a's time-to-first-token and stall limits


class Upstream:
    """A Provider following a script per call: "ok", "silent" (nothing, ever), ("cut", n) and
    ("stall", n) after n tokens, or an exception. It continues a trailing assistant message
    (a prefill) as a model that accepts one does."""

    def __init__(self, name: str, script: list[Any] | None = None, tokens: list[str] = TOKENS):
        self.name = name
        self.script = list(script or [])
        self.tokens = tokens
        self.requests: list[ProviderRequest] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        self.requests.append(request)
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, BaseException):
            raise step
        kind, at = step if isinstance(step, tuple) else (step, -1)
        if kind == "silent":
            await asyncio.Event().wait()
        last = request.messages[-1]
        tokens = (
            continue_after(self.tokens, last.content)
            if last.role is Role.ASSISTANT
            else self.tokens
        )
        for i, token in enumerate(tokens):
            if i == at and kind == "cut":
                raise e.StreamBroken("cut", provider=self.name)
            if i == at and kind == "stall":
                await asyncio.Event().wait()
            yield TextDelta(token)
        yield UsageReport(Usage(input_tokens=10 * len(request.messages), output_tokens=len(tokens)))
        yield Finish(FinishReason.STOP)

    async def complete(self, request: ProviderRequest) -> Completion:
        self.requests.append(request)
        step = self.script.pop(0) if self.script else "ok"
        if step == "silent":
            await asyncio.Event().wait()
        return Completion(text=ANSWER, finish=Finish(FinishReason.STOP), usage=Usage())

    async def embed(self, request: EmbedRequest) -> Embeddings:
        raise NotImplementedError

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        pass


class RecordingPermit:
    def __init__(self) -> None:
        self.observed: list[tuple[Usage, int]] = []

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        self.observed.append((usage, cost_nanos))

    async def __aenter__(self) -> RecordingPermit:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class RecordingGuard:
    name = "recording"

    def __init__(self) -> None:
        self.permits: list[RecordingPermit] = []

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> RecordingPermit:
        self.permits.append(RecordingPermit())
        return self.permits[-1]


MODELS = {
    # the primary: tight limits, a known window
    "m-a": {
        "provider": "a",
        "input_usd_per_mtok": "1",
        "output_usd_per_mtok": "2",
        "ttft_timeout_s": LIMIT_S,
        "stall_timeout_s": LIMIT_S,
        "context_window": 8000,
    },
    # takes a prefill, a larger window
    "m-b": {
        "provider": "b",
        "input_usd_per_mtok": "3",
        "output_usd_per_mtok": "4",
        "accepts_prefill": True,
        "context_window": 16000,
    },
    # no prefill, window unknown
    "m-c": {"provider": "c", "input_usd_per_mtok": "1", "output_usd_per_mtok": "1"},
}


class Rig:
    def __init__(self, *upstreams: Upstream, timeouts: dict[str, Timeouts] | None = None):
        settings = build_settings(
            {
                "providers": {n: {"kind": "simulated"} for n in ("a", "b", "c")},
                "models": MODELS,
                "routing": {"default_model": "m-a"},
            }
        )
        ups = {u.name: u for u in upstreams}
        for name in ("a", "b", "c"):
            ups.setdefault(name, Upstream(name))
        self.up = ups
        self.system = ActorSystem(
            policy=RestartPolicy(max_restarts=5, backoff_base_s=0.001, backoff_max_s=0.001)
        )
        refs = {
            name: self.system.spawn(
                f"provider:{name}",
                lambda p=p: ProviderActor(provider=p, kind="fake", max_concurrency=8),  # type: ignore[misc]
            )
            for name, p in ups.items()
        }
        self.guard = RecordingGuard()
        self.records: list[CallRecord] = []
        self.sleeps: list[float] = []

        async def no_sleep(s: float) -> None:
            self.sleeps.append(s)

        self.inference = Inference(
            view=RouterView(RoutingTable(models=settings.models, settings=settings.routing)),
            providers=refs,
            retry=RetrySettings(max_retries=2, backoff_base_s=0.1, backoff_max_s=1.0),
            ask_timeout_s=2.0,
            guards=[self.guard],
            timeouts=timeouts,
            sinks=[self.records.append],
            sleep=no_sleep,
            jitter=lambda: 1.0,
        )

    async def stream(self, emit_delay_s: float = 0.0, **kw: Any) -> tuple[list[Any], str]:
        """The events, and the text a client that honours ``restart`` ends up with."""
        events: list[Any] = []
        parts: list[str] = []

        async def emit(ev: Any) -> None:
            events.append(ev)
            if isinstance(ev, Delta):
                parts.append(ev.text)
                if emit_delay_s:
                    await asyncio.sleep(emit_delay_s)  # a slow client
            elif isinstance(ev, FallbackEvent) and ev.restart:
                parts.clear()

        kw.setdefault("usage_interval", 0)
        call = GenerateCall(request_id="r", messages=(ChatMessage(Role.USER, "hi"),), **kw)
        events.append(await self.inference.stream(call, emit))
        return events, "".join(parts)


def fallbacks(events: list[Any]) -> list[FallbackEvent]:
    return [ev for ev in events if isinstance(ev, FallbackEvent)]


def after_output(events: list[Any], ev: Any) -> bool:
    return any(isinstance(x, Delta) for x in events[: events.index(ev)])


# -- deadlines --------------------------------------------------------------------------------


def test_each_limit_is_the_models_or_else_its_providers() -> None:
    rig = Rig(timeouts={"a": Timeouts(connect_s=1, first_byte_s=2, idle_s=3, total_s=4)})
    limits = rig.inference._deadlines.of(rig.inference._view.table.models["m-a"])
    assert limits == Timeouts(connect_s=1, first_byte_s=LIMIT_S, idle_s=LIMIT_S, total_s=4)
    # A model without its own limits, on a provider without a block: the type's defaults.
    assert Deadlines().of(rig.inference._view.table.models["m-c"]) == Timeouts()


async def test_the_adapter_gets_the_attempts_limits() -> None:
    rig = Rig(timeouts={"a": Timeouts(connect_s=1, first_byte_s=2, idle_s=3, total_s=4)})
    async with rig.system:
        await rig.stream()
    assert rig.up["a"].requests[0].timeouts == Timeouts(
        connect_s=1, first_byte_s=LIMIT_S, idle_s=LIMIT_S, total_s=4
    )


async def test_a_silent_upstream_gets_one_attempt_then_the_next_candidate() -> None:
    rig = Rig(Upstream("a", ["silent"] * 3))
    async with rig.system:
        events, text = await rig.stream(fallbacks=("m-b",))
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert text == ANSWER and events[-1].model == "m-b"
    assert rig.up["a"].calls == 1 and rig.sleeps == []
    (fb,) = fallbacks(events)
    assert fb.cause == "UPSTREAM_SILENT" and not fb.restart
    assert [a.error for a in rig.records[0].attempts] == ["UPSTREAM_SILENT", ""]


async def test_a_silent_upstream_without_a_fallback_ends_unavailable_silent() -> None:
    rig = Rig(Upstream("a", ["silent"]))
    async with rig.system:
        with pytest.raises(e.ProviderSilent, match="ttft_timeout_s"):
            await rig.stream()
    assert rig.up["a"].calls == 1


async def test_the_callers_deadline_comes_before_a_longer_limit() -> None:
    rig = Rig(Upstream("b", ["silent"]))  # m-b: the provider default, 60 s to a first token
    async with rig.system:
        loop = asyncio.get_running_loop()
        with pytest.raises(e.DeadlineExceeded):
            await rig.stream(model="m-b", deadline=loop.time() + LIMIT_S)


async def test_a_slow_client_is_not_a_stalled_upstream() -> None:
    """Silence is counted only while waiting on the upstream: a client slower than the stall
    limit (back-pressure on every delta) must not fail a healthy stream."""
    rig = Rig()
    async with rig.system:
        events, text = await rig.stream(emit_delay_s=3 * LIMIT_S)
    assert text == ANSWER and not fallbacks(events) and rig.up["a"].calls == 1


async def test_a_unary_attempt_is_bounded_by_its_total_limit() -> None:
    rig = Rig(Upstream("b", ["silent"]))
    models = rig.inference._view.table.models
    rig.inference._deadlines._cache["m-b"] = (
        models["m-b"],
        Timeouts(connect_s=1, first_byte_s=1, idle_s=1, total_s=LIMIT_S),
    )
    async with rig.system:
        call = GenerateCall(
            request_id="r",
            messages=(ChatMessage(Role.USER, "hi"),),
            model="m-b",
            fallbacks=("m-c",),
        )
        final = await rig.inference.generate(call)
    assert final.model == "m-c" and rig.up["b"].calls == 1
    assert rig.records[0].attempts[0].error == "UPSTREAM_TIMEOUT"


# -- context windows --------------------------------------------------------------------------


async def test_context_length_skips_unknown_and_smaller_windows() -> None:
    too_long = e.ContextLengthExceeded("too long", provider="a")
    rig = Rig(Upstream("a", [too_long]))
    async with rig.system:
        events, _text = await rig.stream(fallbacks=("m-c", "m-b"))
    assert events[-1].model == "m-b" and rig.up["c"].calls == 0
    assert [f.to_model for f in fallbacks(events)] == ["m-b"]


async def test_context_length_with_no_larger_window_is_the_error_after_one_attempt() -> None:
    too_long = e.ContextLengthExceeded("too long", provider="a")
    rig = Rig(Upstream("a", [too_long, too_long]))
    async with rig.system:
        with pytest.raises(e.ContextLengthExceeded):
            await rig.stream(fallbacks=("m-c",))
    assert rig.up["a"].calls == 1 and rig.up["c"].calls == 0


# -- mid-stream failover ----------------------------------------------------------------------


async def test_a_stall_after_output_is_continued_by_prefill() -> None:
    rig = Rig(Upstream("a", [("stall", 4)]))
    async with rig.system:
        events, text = await rig.stream(fallbacks=("m-b",))
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert text == ANSWER
    final = events[-1]
    assert isinstance(final, Final) and final.model == "m-b" and final.provider == "b"
    (fb,) = fallbacks(events)
    assert fb.cause == "UPSTREAM_STALLED" and not fb.restart and after_output(events, fb)
    (request,) = rig.up["b"].requests
    assert request.messages[-1] == ChatMessage(Role.ASSISTANT, "t0 t1 t2 t3")
    assert request.messages[:-1] == (ChatMessage(Role.USER, "hi"),)


async def test_the_abandoned_attempts_spend_is_counted_and_settled() -> None:
    rig = Rig(Upstream("a", [("cut", 4)]))
    async with rig.system:
        events, _ = await rig.stream(fallbacks=("m-b",))
    final = events[-1]
    first, second = rig.guard.permits
    spent_a, cost_a = first.observed[-1]  # a's permit settled what a produced
    used_b, cost_b = second.observed[-1]
    assert spent_a.output_tokens >= 4 and cost_a > 0
    assert used_b == Usage(input_tokens=20, output_tokens=6)  # the continuation's own count
    assert final.cost_nanos == cost_a + cost_b
    assert final.usage.output_tokens == spent_a.output_tokens + 6
    assert rig.records[0].cost_nanos == final.cost_nanos
    # The usage update sent when the cut happened already counted it.
    (update,) = [ev for ev in events if isinstance(ev, UsageUpdate)]
    assert update.cost_nanos == cost_a


async def test_a_cut_restarts_on_a_candidate_without_prefill_when_allowed() -> None:
    rig = Rig(Upstream("a", [("cut", 4)]))
    async with rig.system:
        events, text = await rig.stream(
            fallbacks=("m-c",), failover=FailoverMode.CONTINUE_OR_RESTART
        )
    assert text == ANSWER and events[-1].model == "m-c"
    (fb,) = fallbacks(events)
    assert fb.restart and after_output(events, fb)
    assert rig.up["c"].requests[0].messages[-1].role is Role.USER


async def test_restart_mode_never_splices_two_models_text() -> None:
    rig = Rig(Upstream("a", [("cut", 4)]))
    async with rig.system:
        events, text = await rig.stream(fallbacks=("m-b",), failover=FailoverMode.RESTART)
    assert text == ANSWER and [f.restart for f in fallbacks(events)] == [True]
    assert rig.up["b"].requests[0].messages[-1].role is Role.USER


async def test_continue_passes_over_candidates_that_cannot_continue() -> None:
    rig = Rig(Upstream("a", [("cut", 4)]))
    async with rig.system:
        events, text = await rig.stream(fallbacks=("m-c", "m-b"))
    assert text == ANSWER and events[-1].model == "m-b" and rig.up["c"].calls == 0


@pytest.mark.parametrize("mode", [FailoverMode.CONTINUE, FailoverMode.NONE])
async def test_without_a_way_to_continue_the_cut_ends_the_call(mode: FailoverMode) -> None:
    rig = Rig(Upstream("a", [("cut", 4)]))
    fallback = "m-c" if mode is FailoverMode.CONTINUE else "m-b"
    async with rig.system:
        with pytest.raises(e.StreamBroken):
            await rig.stream(fallbacks=(fallback,), failover=mode)
    assert rig.up["b"].calls == rig.up["c"].calls == 0
    assert rig.records[0].cost_nanos > 0  # what was spent is still the call's


async def test_a_refused_prefill_restarts_on_the_same_candidate() -> None:
    refused = e.UpstreamRejected("no prefill here", provider="b", status=400)
    rig = Rig(Upstream("a", [("cut", 4)]), Upstream("b", [refused]))
    async with rig.system:
        events, text = await rig.stream(
            fallbacks=("m-b",), failover=FailoverMode.CONTINUE_OR_RESTART
        )
    assert text == ANSWER and events[-1].model == "m-b"
    first, second = fallbacks(events)
    assert (first.restart, second.restart) == (False, True)
    assert (second.from_model, second.to_model) == ("m-b", "m-b")
    prefilled, fresh = rig.up["b"].requests
    assert prefilled.messages[-1].role is Role.ASSISTANT and fresh.messages[-1].role is Role.USER


async def test_a_refused_prefill_is_never_the_calls_error() -> None:
    refused = e.UpstreamRejected("no prefill here", provider="b", status=400)
    rig = Rig(Upstream("a", [("cut", 4)]), Upstream("b", [refused]))
    async with rig.system:
        with pytest.raises(e.StreamBroken) as caught:
            await rig.stream(fallbacks=("m-b",))
    assert "UPSTREAM_REJECTED" in caught.value.message  # named, but not the status
    assert rig.up["b"].calls == 1


async def test_a_continuation_does_not_double_the_whitespace_the_client_holds() -> None:
    spaced = [f"t{i} " for i in range(10)]  # tokens that end in a space
    rig = Rig(Upstream("a", [("cut", 3)], tokens=spaced), Upstream("b", tokens=spaced))
    async with rig.system:
        _events, text = await rig.stream(fallbacks=("m-b",))
    assert text == "".join(spaced)
    # The prefill leaves the trailing space out (some APIs refuse it).
    assert rig.up["b"].requests[0].messages[-1].content == "t0 t1 t2"
