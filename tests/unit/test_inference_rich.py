"""Issue 15 in the inference core, with real actors and scripted upstreams: the capability
filter before the attempt loop, tool-call pieces relayed and assembled, the failover rule for
answers with tool calls (restart, never continue), permits seeing tool-call output, unary tool
calls and reasoning, and the writer merging pieces of one call."""

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
    Delta,
    FailoverMode,
    FallbackEvent,
    Final,
    GenerateCall,
    Inference,
    ReasoningDelta,
    ToolCallDelta,
)
from aurea.inference.writer import CoalescingWriter
from aurea.providers._base import (
    ChatMessage,
    Completion,
    Embeddings,
    EmbedRequest,
    Finish,
    FinishReason,
    GenerationOptions,
    ProviderEvent,
    ProviderRequest,
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextDelta,
    Tool,
    ToolCall,
    Usage,
    UsageReport,
)
from aurea.routing import Candidate, RouterView, RoutingTable
from aurea.runtime import ActorSystem, RestartPolicy

pytestmark = pytest.mark.timeout(20)

TOOL = Tool(name="lookup", parameters={"type": "object", "properties": {"q": {"type": "string"}}})
ARGS = ['{"q"', ': "pa', 'ris"}']


class Upstream:
    """Answers with a text preamble and one tool call (its arguments in ``ARGS`` pieces), per
    a script per call: "ok", ("cut", n) after n events, or an exception."""

    def __init__(self, name: str, script: list[Any] | None = None, call_id: str = "") -> None:
        self.name = name
        self.script = list(script or [])
        self.call_id = call_id or f"id-{name}"
        self.requests: list[ProviderRequest] = []

    def events(self) -> list[ProviderEvent]:
        return [
            ReasoningDelta("hmm"),
            TextDelta("Let me look."),
            ToolCallDelta(index=0, id=self.call_id, name="lookup"),
            *(ToolCallDelta(index=0, arguments=a) for a in ARGS),
        ]

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        self.requests.append(request)
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, BaseException):
            raise step
        kind, at = step if isinstance(step, tuple) else (step, -1)
        for i, ev in enumerate(self.events()):
            if i == at and kind == "cut":
                raise e.StreamBroken("cut", provider=self.name)
            yield ev
        yield UsageReport(Usage(input_tokens=10, output_tokens=9))
        yield Finish(FinishReason.STOP)  # (as Gemini says after calls)

    async def complete(self, request: ProviderRequest) -> Completion:
        self.requests.append(request)
        return Completion(
            text="",
            finish=Finish(FinishReason.STOP),
            usage=None,
            tool_calls=(ToolCall(id=self.call_id, name="lookup", arguments="".join(ARGS)),),
            reasoning="because",
        )

    async def embed(self, request: EmbedRequest) -> Embeddings:
        raise NotImplementedError

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        pass


class Permit:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.seen: list[Usage] = []

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        self.seen.append(usage)
        if len(self.seen) > self.budget:
            raise e.BudgetExceeded("out", job_id="j", spent_nanos=cost_nanos, budget_nanos=1)

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class Guard:
    name = "budget"

    def __init__(self, budget: int = 1000) -> None:
        self.budget = budget
        self.permits: list[Permit] = []

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> Permit:
        self.permits.append(Permit(self.budget))
        return self.permits[-1]


MODELS = {
    "m-a": {"provider": "a", "capabilities": ["tools", "json_schema"]},
    "m-b": {"provider": "b", "capabilities": ["tools"], "accepts_prefill": True},
    "m-text": {"provider": "c", "capabilities": []},
}


class Rig:
    def __init__(self, *upstreams: Upstream, guard: Guard | None = None) -> None:
        settings = build_settings(
            {
                "providers": {n: {"kind": "simulated"} for n in ("a", "b", "c")},
                "models": MODELS,
                "routing": {"default_model": "m-a"},
            }
        )
        self.up = {u.name: u for u in upstreams}
        for name in ("a", "b", "c"):
            self.up.setdefault(name, Upstream(name))
        system = ActorSystem(
            policy=RestartPolicy(max_restarts=5, backoff_base_s=0.001, backoff_max_s=0.001)
        )
        self.system = system
        refs = {
            name: system.spawn(
                f"provider:{name}",
                lambda p=p: ProviderActor(provider=p, kind="fake", max_concurrency=8),  # type: ignore[misc]
            )
            for name, p in self.up.items()
        }
        self.guard = guard or Guard()

        async def no_sleep(s: float) -> None:
            return None

        self.inference = Inference(
            view=RouterView(RoutingTable(models=settings.models, settings=settings.routing)),
            providers=refs,
            retry=RetrySettings(max_retries=0, backoff_base_s=0.1, backoff_max_s=1.0),
            ask_timeout_s=2.0,
            guards=[self.guard],
            sleep=no_sleep,
        )

    async def __aenter__(self) -> Rig:
        await self.system.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.system.__aexit__(*exc)

    @staticmethod
    def call(**kw: Any) -> GenerateCall:
        """A call offering ``TOOL`` (``tools=()``: none) with the other options given."""
        kw.setdefault("usage_interval", 0)
        opts = {k: kw.pop(k) for k in ("tools", "response_format") if k in kw}
        opts.setdefault("tools", (TOOL,))
        options = GenerationOptions(**opts) if any(opts.values()) else None
        return GenerateCall(
            request_id="r", messages=(ChatMessage(Role.USER, "hi"),), options=options, **kw
        )

    async def stream(self, **kw: Any) -> tuple[list[Any], Final]:
        events: list[Any] = []

        async def emit(ev: Any) -> None:
            events.append(ev)

        final = await self.inference.stream(self.call(**kw), emit)
        return events, final


def client_view(events: list[Any]) -> tuple[str, dict[int, list[str]]]:
    """What a client holds after honouring ``restart``: the text, and each call's pieces."""
    text: list[str] = []
    calls: dict[int, list[str]] = {}
    for ev in events:
        if isinstance(ev, FallbackEvent) and ev.restart:
            text.clear()
            calls.clear()
        elif isinstance(ev, Delta):
            text.append(ev.text)
        elif isinstance(ev, ToolCallDelta):
            calls.setdefault(ev.index, []).append(ev.id + ev.name + ev.arguments)
    return "".join(text), calls


async def test_tool_call_pieces_are_relayed_and_assembled_for_final() -> None:
    async with Rig() as rig:
        events, final = await rig.stream()
        pieces = [ev for ev in events if isinstance(ev, ToolCallDelta)]
        assert [p.arguments for p in pieces] == ["", *ARGS]
        assert final.tool_calls == (ToolCall(id="id-a", name="lookup", arguments='{"q": "paris"}'),)
        assert final.finish_reason is FinishReason.TOOL_CALLS  # the upstream said STOP
        assert [ev.text for ev in events if isinstance(ev, ReasoningDelta)] == ["hmm"]
        assert rig.up["a"].requests[0].tools == (TOOL,)


async def test_candidates_lacking_a_needed_capability_are_skipped() -> None:
    async with Rig() as rig:
        fmt = ResponseFormat(type=ResponseFormatType.JSON_SCHEMA, schema={"type": "object"})
        # m-b lacks json_schema: the call goes to the fallback that has it.
        _, final = await rig.stream(model="m-b", fallbacks=("m-a",), response_format=fmt)
        assert final.model == "m-a"
        assert not rig.up["b"].requests


async def test_no_capable_candidate_fails_before_any_attempt() -> None:
    async with Rig() as rig:
        with pytest.raises(e.UnsupportedFeature) as info:
            await rig.stream(model="m-text", fallbacks=("m-b",), response_format=ResponseFormat(
                type=ResponseFormatType.JSON_OBJECT
            ))  # fmt: skip
        assert "no candidate model can serve this request" in info.value.message
        assert "m-text lacks JSON response formats, tool calls" in info.value.message
        assert "m-b lacks JSON response formats" in info.value.message
        assert [v.field for v in info.value.violations] == ["response_format", "tools"]
        assert not rig.guard.permits and not any(u.requests for u in rig.up.values())
        # Plain text needs nothing: a text-only model serves it.
        _, final = await rig.stream(model="m-text", tools=())
        assert final.model == "m-text"


async def test_a_cut_after_tool_output_restarts_even_where_a_prefill_would_do() -> None:
    # reasoning, text, the call's head, one piece
    async with Rig(Upstream("a", [("cut", 4)])) as rig:
        events, final = await rig.stream(
            fallbacks=("m-b",), failover=FailoverMode.CONTINUE_OR_RESTART
        )
        [fallback] = [ev for ev in events if isinstance(ev, FallbackEvent)]
        assert fallback.restart
        text, calls = client_view(events)
        assert text == "Let me look."  # once: the restart discarded the first
        assert calls == {0: ["id-blookup", *ARGS]}  # m-b's call, whole, once
        assert final.tool_calls == (ToolCall(id="id-b", name="lookup", arguments='{"q": "paris"}'),)
        # m-b was asked afresh: no prefill.
        assert rig.up["b"].requests[0].messages[-1].role is Role.USER


async def test_a_cut_before_tool_output_is_still_continued_by_prefill() -> None:
    # reasoning and text only
    async with Rig(Upstream("a", [("cut", 2)])) as rig:
        events, final = await rig.stream(fallbacks=("m-b",))
        [fallback] = [ev for ev in events if isinstance(ev, FallbackEvent)]
        assert not fallback.restart
        last = rig.up["b"].requests[0].messages[-1]
        assert last.role is Role.ASSISTANT and last.content == "Let me look."
        assert [c.id for c in final.tool_calls] == ["id-b"]


@pytest.mark.parametrize("mode", [FailoverMode.CONTINUE, FailoverMode.NONE])
async def test_a_cut_after_tool_output_without_restarts_ends_with_the_cut(
    mode: FailoverMode,
) -> None:
    async with Rig(Upstream("a", [("cut", 4)])) as rig:
        with pytest.raises(e.StreamBroken):
            await rig.stream(fallbacks=("m-b",), failover=mode)
        assert not rig.up["b"].requests


async def test_permits_see_tool_call_output_and_can_stop_it() -> None:
    async with Rig(guard=Guard(budget=3)) as rig:
        events, final = await rig.stream()
        assert final.finish_reason is FinishReason.BUDGET_EXCEEDED
        permit = rig.guard.permits[0]
        # Every piece of output is shown (reasoning, text, the call's head, its first piece, which
        # crosses the budget and is not sent), its estimate growing.
        growing = [u.output_tokens for u in permit.seen[:4]]
        assert len(permit.seen) >= 4 and growing == sorted(set(growing))
        assert len([ev for ev in events if isinstance(ev, ToolCallDelta)]) == 1  # cut at the budget


async def test_unary_tool_calls_reasoning_and_estimated_usage() -> None:
    async with Rig() as rig:
        final = await rig.inference.generate(rig.call())
        assert final.tool_calls == (ToolCall(id="id-a", name="lookup", arguments='{"q": "paris"}'),)
        assert final.finish_reason is FinishReason.TOOL_CALLS
        assert final.reasoning == "because"
        assert final.usage.estimated and final.usage.reasoning_tokens == 1
        plain = await rig.inference.generate(rig.call(tools=(), model="m-text"))
        # The tool definition counts in the prompt estimate.
        assert final.usage.input_tokens > plain.usage.input_tokens + 20


async def test_the_writer_merges_pieces_of_one_call_only() -> None:
    written: list[Any] = []
    gate = asyncio.Event()

    async def write(ev: Any) -> None:
        await gate.wait()
        written.append(ev)

    async with CoalescingWriter(write) as w:
        await w.emit(Delta("a"))
        await asyncio.sleep(0)  # the writer takes "a" and waits on the transport
        for ev in (
            ToolCallDelta(index=0, id="x", name="f"),
            ToolCallDelta(index=0, arguments='{"a"'),
            ToolCallDelta(index=0, arguments=": 1}"),
            ToolCallDelta(index=1, id="y", name="g"),
            ToolCallDelta(index=1, arguments="{}"),
            ReasoningDelta("th"),
            ReasoningDelta("ink"),
        ):
            await w.emit(ev)
        gate.set()
    assert written == [
        Delta("a"),
        ToolCallDelta(index=0, id="x", name="f", arguments='{"a": 1}'),
        ToolCallDelta(index=1, id="y", name="g", arguments="{}"),
        ReasoningDelta("think"),
    ]
