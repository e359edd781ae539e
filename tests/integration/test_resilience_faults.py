"""Issue 8's acceptance, through gRPC: every fault of a fault-injecting upstream ends in a whole
answer or a defined status, with the attempts the retry table implies, counted (and, where a
wait is promised, its lower bound checked) at the fakes, which timestamp every request.

The rig: ``prim`` (an OpenAI-wire fake, time-to-first-token and stall limits of 1 s: well below
the 5 s the slow faults wait, well above what a busy 2-core CI machine takes to answer; context
window 8000), ``cont`` (an Anthropic-wire fake that continues a prefill, window 16000) and
``plain`` (an OpenAI-wire fake that does not take a prefill, window 4000). After every test a
normal call must still be answered whole by ``prim``. No test asserts how long anything took;
a call ends within its gRPC deadline or fails the test.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio

from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as make_settings
from aurea.testing.fakes import FakeAnthropic, FakeOpenAI, FakeServer, Fault, FaultKind
from aurea.testing.fakes._core import echo_reply
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

KEYS = {"prim": "sk-prim-0123456789", "cont": "sk-ant-cont-0123456789", "plain": "sk-plain-01234"}
ENV = {name: f"RESILIENCE_{name.upper()}_KEY" for name in KEYS}
CHAT = "/chat/completions"
MESSAGES = "/v1/messages"
# 59 words: the fakes answer "Echo: " + the prompt, 60 tokens.
PROMPT = " ".join(f"w{i}" for i in range(1, 60))
ANSWER = echo_reply(PROMPT)
CALL_DEADLINE_S = 20.0  # far beyond every limit below: a call that ends, ended by the rules


@dataclass
class Rig:
    server: RunningServer
    prim: FakeOpenAI
    cont: FakeAnthropic
    plain: FakeOpenAI
    # The rate limiter holds a model back for an upstream 429's Retry-After (issue 8, part A):
    # a test that made one says how long, so the next test does not start inside the hold.
    held_s: float = 0.0

    @property
    def fakes(self) -> tuple[FakeServer, ...]:
        return (self.prim, self.cont, self.plain)

    def reset(self) -> None:
        for fake in self.fakes:
            fake.faults.clear()
            fake.always = None
            fake.requests.clear()
            fake.reject_prefill = False
        self.prim.omit_done = False


def _config(prim: FakeServer, cont: FakeServer, plain: FakeServer) -> dict[str, Any]:
    def block(kind: str, fake: FakeServer, name: str) -> dict[str, Any]:
        return {
            "kind": kind,
            "base_url": fake.base_url,
            "api_key_env": ENV[name],
            "connect_timeout_s": 2,
            "first_byte_timeout_s": 5,
            "idle_timeout_s": 5,
            "total_timeout_s": 30,
        }

    return {
        "providers": {
            "prim": block("openai", prim, "prim"),
            "cont": block("anthropic", cont, "cont"),
            "plain": block("openai", plain, "plain"),
        },
        "models": {
            "prim": {
                "provider": "prim",
                "upstream": "gpt-4o-mini",
                "ttft_timeout_s": 1.0,
                "stall_timeout_s": 1.0,
                "context_window": 8000,
            },
            "cont": {
                "provider": "cont",
                "upstream": "claude-3-5-haiku-20241022",
                "accepts_prefill": True,
                "context_window": 16000,
            },
            "plain": {"provider": "plain", "upstream": "gpt-4o", "context_window": 4000},
        },
        "routing": {"default_model": "prim"},
        "retry": {"max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.5},
        # The breaker has its own acceptance tests; here every fault must reach the retry table.
        "breaker": {"failure_threshold": 1_000_000},
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig() -> AsyncIterator[Rig]:
    prim, plain = FakeOpenAI(api_key=KEYS["prim"]), FakeOpenAI(api_key=KEYS["plain"])
    cont = FakeAnthropic(api_key=KEYS["cont"])
    with pytest.MonkeyPatch.context() as mp:
        for name, key in KEYS.items():
            mp.setenv(ENV[name], key)
        async with prim, cont, plain:
            settings = make_settings(_config(prim, cont, plain))
            async with running_server(settings) as server:
                yield Rig(server, prim, cont, plain)


@pytest.fixture(autouse=True)
def fresh(rig: Rig) -> Iterator[None]:
    rig.reset()
    yield
    rig.reset()


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def still_answers(rig: Rig, fresh: None) -> AsyncIterator[None]:
    """After every fault, a normal call is answered whole (by the model asked for)."""
    yield
    rig.reset()
    await asyncio.sleep(rig.held_s)
    rig.held_s = 0.0
    out = await stream(rig, "prim")
    assert out.ok and out.text == ANSWER and out.final.model == "prim"


@dataclass
class Outcome:
    text: str = ""
    events: list[str] = field(default_factory=list)
    fallbacks: list[pb.Fallback] = field(default_factory=list)
    final: pb.StreamFinal = field(default_factory=pb.StreamFinal)
    error: grpc.aio.AioRpcError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.events[-1:] == ["final"]


async def stream(
    rig: Rig,
    model: str,
    *fallbacks: str,
    mode: int = pb.MID_STREAM_FAILOVER_UNSPECIFIED,
    prompt: str = PROMPT,
) -> Outcome:
    """One GenerateStream call read as a client must: a restart discards the text so far."""
    stub = inference_pb2_grpc.InferenceServiceStub(rig.server.channel)
    request = pb.GenerateStreamRequest(
        request=pb.GenerateRequest(prompt=prompt, model=model, fallback_models=fallbacks),
        mid_stream_failover=mode,
    )
    out = Outcome()
    parts: list[str] = []
    try:
        async for ev in stub.GenerateStream(request, timeout=CALL_DEADLINE_S):
            kind = ev.WhichOneof("event")
            out.events.append(kind)
            if kind == "delta":
                parts.append(ev.delta.text)
            elif kind == "fallback":
                out.fallbacks.append(ev.fallback)
                if ev.fallback.restart:
                    parts.clear()
            elif kind == "final":
                out.final = ev.final
    except grpc.aio.AioRpcError as err:
        out.error = err
    out.text = "".join(parts)
    if out.ok:  # usage on every successful stream
        assert out.final.usage.output_tokens > 0 and out.final.usage.input_tokens > 0
        assert out.final.cost_nanos >= 0
    return out


Details = Callable[[grpc.RpcError], Any]


def gaps(fake: FakeServer, path: str) -> list[float]:
    at = [r.at for r in fake.attempts(path)]
    return [b - a for a, b in itertools.pairwise(at)]


# -- 429, 5xx, resets: the same candidate again, with backoff ---------------------------------


async def test_429_with_retry_after_is_retried_after_it(rig: Rig) -> None:
    rig.prim.inject(Fault(FaultKind.RATE_LIMIT, retry_after="0.2"))
    rig.held_s = 0.2
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "prim"
    assert len(rig.prim.attempts(CHAT)) == 2 and not rig.cont.attempts(MESSAGES)
    # Retry-After honoured: the retry left at least 0.2 s after the 429 reached Aurea, which
    # was after the first request reached the fake (a causal lower bound, not a timing).
    assert gaps(rig.prim, CHAT)[0] >= 0.2
    assert out.final.attempts == 2


async def test_429_without_retry_after_is_retried_with_backoff(rig: Rig) -> None:
    rig.prim.inject(Fault(FaultKind.RATE_LIMIT, retry_after=""))
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "prim"
    assert len(rig.prim.attempts(CHAT)) == 2 and not rig.cont.attempts(MESSAGES)


async def test_429_forever_retries_then_falls_back(rig: Rig) -> None:
    rig.prim.always = Fault(FaultKind.RATE_LIMIT, retry_after="0.05")
    rig.held_s = 0.05
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "cont"
    assert len(rig.prim.attempts(CHAT)) == 3  # 1 + retry.max_retries
    assert len(rig.cont.attempts(MESSAGES)) == 1
    assert [f.cause for f in out.fallbacks] == ["UPSTREAM_RATE_LIMITED"]
    assert not any(f.restart for f in out.fallbacks)


async def test_429_forever_without_fallback_is_resource_exhausted(
    rig: Rig, details: Details
) -> None:
    rig.prim.always = Fault(FaultKind.RATE_LIMIT, retry_after="0.05")
    rig.held_s = 0.05
    out = await stream(rig, "prim")
    assert out.error is not None and out.error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    info = details(out.error)
    assert info.reason == "UPSTREAM_RATE_LIMITED" and info.retry_info is not None
    assert len(rig.prim.attempts(CHAT)) == 3


async def test_500_once_is_retried(rig: Rig) -> None:
    rig.prim.inject(FaultKind.SERVER_ERROR)
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "prim"
    assert len(rig.prim.attempts(CHAT)) == 2 and not rig.cont.attempts(MESSAGES)


async def test_503_forever_retries_then_falls_back(rig: Rig, details: Details) -> None:
    rig.prim.always = Fault(FaultKind.OVERLOADED)
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "cont"
    assert len(rig.prim.attempts(CHAT)) == 3 and len(rig.cont.attempts(MESSAGES)) == 1
    rig.prim.requests.clear()
    alone = await stream(rig, "prim")
    assert alone.error is not None and alone.error.code() is grpc.StatusCode.UNAVAILABLE
    assert details(alone.error).reason == "UPSTREAM_OVERLOADED"
    assert len(rig.prim.attempts(CHAT)) == 3


async def test_connection_reset_is_retried(rig: Rig) -> None:
    rig.prim.inject(FaultKind.RESET)
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "prim"
    assert len(rig.prim.attempts(CHAT)) == 2 and not rig.cont.attempts(MESSAGES)


# -- silence: never retried, the next candidate at once ---------------------------------------


async def test_no_response_at_all_is_answered_by_the_fallback_after_one_attempt(
    rig: Rig, details: Details
) -> None:
    rig.prim.always = Fault(FaultKind.SILENT)
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "cont"
    assert len(rig.prim.attempts(CHAT)) == 1  # a silent upstream stays silent: one attempt
    assert [f.cause for f in out.fallbacks] == ["UPSTREAM_SILENT"]
    rig.prim.requests.clear()
    alone = await stream(rig, "prim")
    assert alone.error is not None and alone.error.code() is grpc.StatusCode.UNAVAILABLE
    assert details(alone.error).reason == "UPSTREAM_SILENT"
    assert len(rig.prim.attempts(CHAT)) == 1


async def test_slow_first_token_moves_to_the_fallback(rig: Rig) -> None:
    rig.prim.inject(Fault(FaultKind.SLOW_FIRST_TOKEN, delay_s=5.0))
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "cont"
    assert len(rig.prim.attempts(CHAT)) == 1 and len(rig.cont.attempts(MESSAGES)) == 1
    assert "delta" not in out.events[: out.events.index("fallback")]


# -- mid-stream failover ----------------------------------------------------------------------


async def test_cut_after_40_of_60_tokens_is_continued_by_prefill(rig: Rig) -> None:
    rig.prim.inject(Fault(FaultKind.CUT_STREAM, after_tokens=40))
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "cont"
    (fb,) = out.fallbacks
    assert not fb.restart and fb.cause == "UPSTREAM_STREAM_BROKEN"
    assert out.events.index("fallback") > out.events.index("delta")  # after output began
    (cont_request,) = rig.cont.attempts(MESSAGES)
    last = cont_request.body["messages"][-1]
    assert last["role"] == "assistant" and ANSWER.startswith(last["content"])
    assert len(last["content"].split()) == 40
    # The abandoned attempt's tokens were paid for: the final usage counts them too.
    assert out.final.usage.output_tokens > 20


async def test_cut_stream_restarts_on_a_fallback_without_prefill(rig: Rig) -> None:
    rig.prim.inject(Fault(FaultKind.CUT_STREAM, after_tokens=40))
    out = await stream(rig, "prim", "plain", mode=pb.MID_STREAM_FAILOVER_CONTINUE_OR_RESTART)
    assert out.ok and out.text == ANSWER and out.final.model == "plain"
    (fb,) = out.fallbacks
    assert fb.restart and fb.to_model == "plain"
    (plain_request,) = rig.plain.attempts(CHAT)
    assert plain_request.body["messages"][-1]["role"] == "user"  # no prefill was sent
    assert out.final.usage.output_tokens > 60  # 60 answered + the abandoned ones


async def test_a_refused_prefill_restarts_and_never_becomes_the_error(rig: Rig) -> None:
    rig.prim.inject(Fault(FaultKind.CUT_STREAM, after_tokens=40))
    rig.cont.reject_prefill = True
    out = await stream(rig, "prim", "cont", mode=pb.MID_STREAM_FAILOVER_CONTINUE_OR_RESTART)
    assert out.ok and out.text == ANSWER and out.final.model == "cont"
    assert [f.restart for f in out.fallbacks] == [False, True]
    first, second = rig.cont.attempts(MESSAGES)
    assert first.body["messages"][-1]["role"] == "assistant"
    assert second.body["messages"][-1]["role"] == "user"


async def test_a_refused_prefill_without_restarts_ends_with_the_cut(
    rig: Rig, details: Details
) -> None:
    rig.prim.inject(Fault(FaultKind.CUT_STREAM, after_tokens=40))
    rig.cont.reject_prefill = True
    out = await stream(rig, "prim", "cont")
    assert out.error is not None and out.error.code() is grpc.StatusCode.UNAVAILABLE
    assert details(out.error).reason == "UPSTREAM_STREAM_BROKEN"  # not the prefill's 400
    assert len(rig.cont.attempts(MESSAGES)) == 1


async def test_without_a_prefill_fallback_or_restarts_the_cut_ends_the_call(
    rig: Rig, details: Details
) -> None:
    rig.prim.inject(Fault(FaultKind.CUT_STREAM, after_tokens=40))
    out = await stream(rig, "prim", "plain")
    assert out.error is not None and out.error.code() is grpc.StatusCode.UNAVAILABLE
    assert details(out.error).reason == "UPSTREAM_STREAM_BROKEN"
    assert "final" not in out.events and not rig.plain.attempts(CHAT)
    assert "usage" in out.events  # what was spent is still reported


async def test_a_stall_mid_stream_is_continued_by_prefill(rig: Rig) -> None:
    rig.prim.inject(Fault(FaultKind.STALL, after_tokens=10, delay_s=5.0))
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "cont"
    (fb,) = out.fallbacks
    assert fb.cause == "UPSTREAM_STALLED" and not fb.restart
    assert len(rig.prim.attempts(CHAT)) == 1


# -- malformed chunks and end markers ---------------------------------------------------------


async def test_one_malformed_chunk_is_skipped_and_the_whole_answer_arrives(rig: Rig) -> None:
    rig.prim.inject(Fault(FaultKind.MALFORMED_CHUNK, after_tokens=5))
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "prim"
    assert len(rig.prim.attempts(CHAT)) == 1 and not out.fallbacks


async def test_no_end_marker_with_a_finish_reason_is_complete(rig: Rig) -> None:
    rig.prim.omit_done = True
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "prim"
    assert out.final.finish_reason == pb.FINISH_REASON_STOP
    assert len(rig.prim.attempts(CHAT)) == 1


async def test_neither_end_marker_nor_finish_reason_is_broken(rig: Rig) -> None:
    rig.prim.inject(Fault(FaultKind.EARLY_EOF, after_tokens=0))  # before any output: retried
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "prim"
    assert len(rig.prim.attempts(CHAT)) == 2
    rig.prim.requests.clear()
    rig.prim.inject(Fault(FaultKind.EARLY_EOF, after_tokens=30))  # after output: continued
    out = await stream(rig, "prim", "cont")
    assert out.ok and out.text == ANSWER and out.final.model == "cont"
    assert [f.cause for f in out.fallbacks] == ["UPSTREAM_STREAM_BROKEN"]


# -- rejections -------------------------------------------------------------------------------


async def test_context_length_moves_to_a_larger_window(rig: Rig) -> None:
    rig.prim.inject(FaultKind.CONTEXT_LENGTH)
    out = await stream(rig, "prim", "plain", "cont")  # plain's window is smaller: passed over
    assert out.ok and out.text == ANSWER and out.final.model == "cont"
    assert len(rig.prim.attempts(CHAT)) == 1 and not rig.plain.attempts(CHAT)
    assert [f.to_model for f in out.fallbacks] == ["cont"]


async def test_context_length_without_a_larger_window_is_invalid_argument(
    rig: Rig, details: Details
) -> None:
    rig.prim.inject(FaultKind.CONTEXT_LENGTH)
    out = await stream(rig, "prim", "plain")
    assert out.error is not None and out.error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert details(out.error).reason == "CONTEXT_LENGTH_EXCEEDED"
    assert len(rig.prim.attempts(CHAT)) == 1 and not rig.plain.attempts(CHAT)


async def test_content_policy_ends_the_call_with_the_providers_reason(
    rig: Rig, details: Details
) -> None:
    rig.prim.inject(FaultKind.CONTENT_FILTER)
    out = await stream(rig, "prim", "cont")
    assert out.error is not None and out.error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert details(out.error).reason == "CONTENT_FILTERED"
    assert "safety system" in (out.error.details() or "")
    assert len(rig.prim.attempts(CHAT)) == 1 and not rig.cont.attempts(MESSAGES)
