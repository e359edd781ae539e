"""Every provider kind end to end through Aurea's gRPC API, against a fake of that provider's
wire format on 127.0.0.1: unary and streamed text, normalized usage and cost, the provider's own
request format (system prompts, auth headers), its faults mapped to gRPC statuses with retries and
fallback, client cancellation reaching the upstream, embeddings, and the admin views.

Expected token counts are computed by hand from what each fake reports (whitespace words), and
costs from the catalog prices in ``providers_conftest.CASES``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from providers_conftest import (
    ANTHROPIC_CACHE_READ,
    BY_PROVIDER,
    CASES,
    GEMINI_CACHED,
    GEMINI_THOUGHTS,
    LAMBDA_FUNCTION,
    LAMBDA_REGION,
    OPENAI_CACHED,
    OPENAI_REASONING,
    RUNPOD_ENDPOINT,
    UNSET_KEY_ENV,
    Case,
    Failure,
    Rig,
    Secrets,
    StreamRun,
    admin,
    failure_of,
    hand_cost,
    inference,
    open_rig,
    run_stream,
    wait_until,
    words,
)
from structlog.testing import capture_logs

from aurea.testing import RunningServer
from aurea.testing.fakes import Fault, FaultKind, RecordedRequest
from aurea.testing.fakes.openai import fake_embedding
from aurea.v1 import admin_pb2
from aurea.v1 import inference_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PROMPT = "alpha beta gamma delta"
SYSTEM = "You answer in exactly one short sentence"
REPORTED = pb.USAGE_SOURCE_PROVIDER_REPORTED
ESTIMATED = pb.USAGE_SOURCE_ESTIMATED
MODES = ("unary", "stream")
STREAMING = [c for c in CASES if c.kind != "lambda"]  # Lambda RequestResponse is one delta
SECRETS = Secrets(
    keys={
        "openai": "sk-e2e-openai-0001",
        "compat": "sk-e2e-compat-0002",
        "anthropic": "sk-ant-e2e-0003",
        "gemini": "AIza-e2e-0004",
        "http": "e2e-http-0005",
        "runpod": "rp-e2e-0006",
    },
    aws_access_key="AKIDE2EEXAMPLE",
    aws_secret_key="e2e/secret/key/EXAMPLE",
    aws_session_token="e2e-session-token",
)


def ids(case: Case) -> str:
    return case.provider


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig() -> AsyncIterator[Rig]:
    async with open_rig(SECRETS) as r:
        yield r


@pytest.fixture(autouse=True)
def fresh(rig: Rig) -> Iterator[None]:
    """Each test starts with empty fault queues; no call may end INTERNAL (an ``rpc_bug``)."""
    rig.reset()
    with capture_logs() as logs:
        yield
    rig.reset()
    bugs = [e for e in logs if e.get("event") == "rpc_bug"]
    assert not bugs, f"a call ended INTERNAL (a bug): {bugs}"


# -- expectations computed by hand ----------------------------------------------------------------
@dataclass(frozen=True)
class Counts:
    input: int
    cached: int
    output: int
    reasoning: int

    def cost(self, case: Case) -> int:
        return hand_cost(case, self.input, self.cached, self.output)


def reply_of(user: str) -> str:
    return f"Echo: {user}"  # every fake's default deterministic reply


def expected(case: Case, user: str, system: str = "") -> Counts:
    """What the provider reports for one user message (and an optional system prompt), in
    Aurea's convention: input includes cached tokens, output includes reasoning tokens."""
    prompt = words(system, user)
    tokens = words(reply_of(user))
    if case.provider == "openai":  # prompt_tokens_details.cached_tokens, reasoning_tokens
        return Counts(prompt, min(OPENAI_CACHED, prompt), tokens + OPENAI_REASONING,
                      OPENAI_REASONING)  # fmt: skip
    if case.provider == "anthropic":  # input_tokens excludes cache reads and writes
        return Counts(prompt, min(ANTHROPIC_CACHE_READ, prompt), tokens, 0)
    if case.provider == "gemini":  # candidatesTokenCount excludes thoughtsTokenCount
        return Counts(prompt, min(GEMINI_CACHED, prompt), tokens + GEMINI_THOUGHTS, GEMINI_THOUGHTS)
    return Counts(prompt, 0, tokens, 0)


def counts_of(usage: pb.Usage) -> Counts:
    return Counts(
        usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, usage.reasoning_tokens
    )


def header(request: RecordedRequest, name: str) -> str | None:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return value
    return None


def attempts(case: Case, requests: list[RecordedRequest]) -> int:
    """Upstream attempts among recorded requests (RunPod also polls; those are not attempts)."""
    if case.kind == "runpod":
        return sum(r.method == "POST" and r.path.endswith(("/run", "/runsync")) for r in requests)
    return len(requests)


# -- calls ----------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """A unary or streamed call, seen the same way."""

    failure: Failure | None
    text: str = ""
    usage: pb.Usage | None = None
    cost_nanos: int = 0
    model: str = ""
    provider: str = ""
    finish: int = 0
    run: StreamRun | None = None


async def call(rs: RunningServer, mode: str, **fields: Any) -> Outcome:
    if mode == "unary":
        try:
            resp = await inference(rs).Generate(pb.GenerateRequest(**fields), timeout=20)
        except grpc.RpcError as err:
            return Outcome(failure_of(err))
        return Outcome(
            None, resp.text, resp.usage, resp.cost_nanos, resp.model, resp.provider,
            resp.finish_reason,
        )  # fmt: skip
    run = await run_stream(rs, pb.GenerateStreamRequest(request=pb.GenerateRequest(**fields)))
    run.check_order()
    if run.failure is not None:
        return Outcome(run.failure, run.text, run=run)
    final = run.final
    return Outcome(
        None, run.text, final.usage, final.cost_nanos, final.model, final.provider,
        final.finish_reason, run,
    )  # fmt: skip


def system_and_user(user: str = PROMPT) -> list[pb.ChatMessage]:
    return [
        pb.ChatMessage(role=pb.ROLE_SYSTEM, content=SYSTEM),
        pb.ChatMessage(role=pb.ROLE_USER, content=user),
    ]


# -- unary and streamed text, usage and cost -------------------------------------------------------
def check_unary_wire(rig: Rig, case: Case, sent: list[RecordedRequest]) -> None:
    """The request went out in the provider's own format, with its own auth."""
    key = SECRETS.keys.get(case.provider, "")
    first = sent[0]
    assert first.method == "POST"
    if case.kind == "openai":
        assert len(sent) == 1 and first.path == "/v1/chat/completions"
        assert header(first, "Authorization") == f"Bearer {key}"
        assert first.body["model"] == case.upstream and "stream" not in first.body
    elif case.kind == "anthropic":
        assert len(sent) == 1 and first.path == "/v1/messages"
        assert header(first, "x-api-key") == key
        assert header(first, "anthropic-version") == "2023-06-01"
        assert header(first, "Authorization") is None
        assert first.body["model"] == case.upstream and "stream" not in first.body
        assert isinstance(first.body["max_tokens"], int)  # required by the Messages API
    elif case.kind == "gemini":
        assert len(sent) == 1 and first.path == f"/v1beta/models/{case.upstream}:generateContent"
        assert header(first, "x-goog-api-key") == key
        assert "key" not in first.query, "the key must travel in a header, not the URL"
    elif case.kind == "http":
        assert len(sent) == 1 and first.path == "/generate"
        assert header(first, "X-Api-Key") == key
        assert first.body["model"] == case.upstream
    elif case.kind == "lambda":
        assert len(sent) == 1
        assert first.path == f"/2015-03-31/functions/{LAMBDA_FUNCTION}/invocations"
        auth = header(first, "Authorization") or ""
        assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={SECRETS.aws_access_key}/")
        assert f"/{LAMBDA_REGION}/lambda/aws4_request" in auth
        assert header(first, "X-Amz-Security-Token") == SECRETS.aws_session_token
        assert header(first, "X-Amz-Invocation-Type") == "RequestResponse"
        assert first.body["model"] == case.upstream
    elif case.kind == "runpod":
        assert first.path == f"/v2/{RUNPOD_ENDPOINT}/runsync"
        assert header(first, "Authorization") == f"Bearer {key}"
        assert "stream" not in first.body["input"]
        assert isinstance(first.body["input"]["sampling_params"]["max_tokens"], int)


@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_unary_generate(rig: Rig, case: Case) -> None:
    fake = rig.fake(case.provider)
    n = len(fake.requests)
    resp = await inference(rig.strict).Generate(
        pb.GenerateRequest(prompt=PROMPT, model=case.model), timeout=20
    )
    assert resp.text == fake.reply(PROMPT) == reply_of(PROMPT)
    assert (resp.model, resp.provider) == (case.model, case.provider)
    assert resp.finish_reason == pb.FINISH_REASON_STOP
    assert resp.request_id and resp.attempts == 1
    want = expected(case, PROMPT)
    assert counts_of(resp.usage) == want
    assert resp.usage.source == REPORTED  # every fake reports usage on unary replies
    assert resp.cost_nanos == want.cost(case) > 0
    check_unary_wire(rig, case, fake.requests[n:])


def check_stream_wire(case: Case, sent: list[RecordedRequest]) -> None:
    first = sent[0]
    if case.kind == "openai":
        assert len(sent) == 1 and first.path == "/v1/chat/completions"
        assert first.body["stream"] is True
        assert first.body["stream_options"] == {"include_usage": True}
    elif case.kind == "anthropic":
        assert len(sent) == 1 and first.body["stream"] is True
    elif case.kind == "gemini":
        assert len(sent) == 1
        assert first.path == f"/v1beta/models/{case.upstream}:streamGenerateContent"
        assert first.query == {"alt": "sse"}
    elif case.kind == "http":
        assert len(sent) == 1 and first.path == "/generate/stream"
    elif case.kind == "lambda":
        assert len(sent) == 1  # one RequestResponse invocation
    elif case.kind == "runpod":
        assert first.path == f"/v2/{RUNPOD_ENDPOINT}/run" and first.body["input"]["stream"] is True
        polls = sent[1:]
        assert polls and all(r.method == "GET" and "/stream/" in r.path for r in polls)


@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_stream_generate(rig: Rig, case: Case) -> None:
    fake = rig.fake(case.provider)
    unary = await inference(rig.strict).Generate(
        pb.GenerateRequest(prompt=PROMPT, model=case.model), timeout=20
    )
    n = len(fake.requests)
    run = await run_stream(
        rig.strict,
        pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt=PROMPT, model=case.model)),
    )
    assert run.failure is None, run.failure
    run.check_order()
    assert run.kinds == ["started", *["delta"] * run.deltas, "final"]
    started = run.events[0].started
    assert (started.model, started.provider, started.attempt) == (case.model, case.provider, 1)
    assert ("x-request-id", started.request_id) in run.initial
    assert run.text == unary.text == reply_of(PROMPT)
    # Text a reader has not taken yet may be merged into one delta: never more deltas than tokens.
    assert 1 <= run.deltas <= words(reply_of(PROMPT))
    final = run.final
    assert (final.model, final.provider, final.attempts) == (case.model, case.provider, 1)
    assert final.finish_reason == pb.FINISH_REASON_STOP
    if case.provider == "compat":
        # The server ignores stream_options.include_usage: Aurea counts the tokens itself.
        assert final.usage.source == ESTIMATED
        assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
        assert final.cost_nanos == counts_of(final.usage).cost(case)
    else:
        assert final.usage.source == REPORTED
        assert counts_of(final.usage) == counts_of(unary.usage) == expected(case, PROMPT)
        assert final.cost_nanos == unary.cost_nanos == expected(case, PROMPT).cost(case)
    check_stream_wire(case, fake.requests[n:])


def sent_messages(case: Case, body: Any) -> Any:
    if case.kind == "runpod":
        return body["input"]["messages"]
    return body["messages"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_system_prompt_reaches_provider_in_its_format(
    rig: Rig, case: Case, mode: str
) -> None:
    fake = rig.fake(case.provider)
    n = len(fake.requests)
    out = await call(rig.strict, mode, model=case.model, messages=system_and_user())
    assert out.failure is None, out.failure
    assert out.text == reply_of(PROMPT)
    body = fake.requests[n].body
    openai_style = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    if case.kind == "anthropic":
        assert body["system"] == SYSTEM
        assert body["messages"] == [{"role": "user", "content": PROMPT}]
    elif case.kind == "gemini":
        assert body["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
        assert body["contents"] == [{"role": "user", "parts": [{"text": PROMPT}]}]
    else:
        assert sent_messages(case, body) == openai_style
        assert sent_messages(case, body)[0]["role"] == "system"
    assert out.usage is not None
    if out.usage.source == REPORTED:  # the provider counted the system prompt as input
        assert counts_of(out.usage) == expected(case, PROMPT, SYSTEM)
        assert out.cost_nanos == expected(case, PROMPT, SYSTEM).cost(case)


async def test_anthropic_refusal_is_a_content_filter_finish(rig: Rig) -> None:
    """Anthropic does not fail a refused request: it stops with ``stop_reason: refusal``."""
    case = BY_PROVIDER["anthropic"]
    fake = rig.fake("anthropic")
    for mode in MODES:
        fake.inject(Fault(FaultKind.CONTENT_FILTER, after_tokens=2))
        out = await call(rig.strict, mode, prompt=PROMPT, model=case.model)
        assert out.failure is None, out.failure
        assert out.finish == pb.FINISH_REASON_CONTENT_FILTER
        assert out.text == "Echo: alpha"  # what came before the refusal


# -- faults ---------------------------------------------------------------------------------------
REJECTIONS = [
    # (id, fault, status, ErrorInfo.reason)
    ("unauthorized", FaultKind.UNAUTHORIZED, grpc.StatusCode.FAILED_PRECONDITION,
     "UPSTREAM_AUTH_FAILED"),
    ("context-length", FaultKind.CONTEXT_LENGTH, grpc.StatusCode.INVALID_ARGUMENT,
     "CONTEXT_LENGTH_EXCEEDED"),
    ("content-filter", FaultKind.CONTENT_FILTER, grpc.StatusCode.FAILED_PRECONDITION,
     "CONTENT_FILTERED"),
]  # fmt: skip


def rejection_params() -> list[Any]:
    out = []
    for case in CASES:
        for name, fault, code, reason in REJECTIONS:
            if case.kind == "anthropic" and fault is FaultKind.CONTENT_FILTER:
                continue  # a refusal is a finish reason there (test above)
            out.append(pytest.param(case, fault, code, reason, id=f"{case.provider}-{name}"))
    return out


def check_failure(failure: Failure | None, case: Case, code: grpc.StatusCode, reason: str) -> None:
    assert failure is not None, "the call succeeded"
    assert (failure.code, failure.reason) == (code, reason), (failure.code, failure.message)
    info = failure.error_info
    assert info is not None and info.domain == "aurea.v1"
    assert info.metadata["provider"] == case.provider
    assert any(k == "x-request-id" and v for k, v in failure.trailing)
    assert failure.message.startswith(f"{case.provider}:"), failure.message


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("case", "fault", "code", "reason"), rejection_params())
async def test_rejections_map_to_status_and_are_not_retried(
    rig: Rig, case: Case, fault: FaultKind, code: grpc.StatusCode, reason: str, mode: str
) -> None:
    """The request itself (or the key) is wrong: no retry even on the retrying server."""
    fake = rig.fake(case.provider)
    fake.inject(Fault(fault))
    n = len(fake.requests)
    out = await call(rig.retrying, mode, prompt=PROMPT, model=case.model)
    check_failure(out.failure, case, code, reason)
    if out.run is not None:
        assert out.run.kinds == ["started"]
    assert attempts(case, fake.requests[n:]) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_rate_limit_gives_resource_exhausted_with_retry_info(
    rig: Rig, case: Case, mode: str
) -> None:
    fake = rig.fake(case.provider)
    fake.inject(Fault(FaultKind.RATE_LIMIT, retry_after="7"))
    n = len(fake.requests)
    out = await call(rig.strict, mode, prompt=PROMPT, model=case.model)
    check_failure(out.failure, case, grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_RATE_LIMITED")
    assert out.failure is not None
    retry = out.failure.retry_info
    assert retry is not None, "a 429's Retry-After must reach the caller as RetryInfo"
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (7, 0)
    info = out.failure.error_info
    assert info is not None and info.metadata["upstream_status"] == "429"
    assert attempts(case, fake.requests[n:]) == 1


TRANSIENT = [FaultKind.SERVER_ERROR, FaultKind.OVERLOADED]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", TRANSIENT)
@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_transient_fault_is_retried(
    rig: Rig, case: Case, fault: FaultKind, mode: str
) -> None:
    """One 500 / 503 (Anthropic: 529; Lambda: 502) is retried and the call succeeds."""
    fake = rig.fake(case.provider)
    fake.inject(Fault(fault))
    n = len(fake.requests)
    out = await call(rig.retrying, mode, prompt=PROMPT, model=case.model)
    assert out.failure is None, out.failure
    assert out.text == reply_of(PROMPT)
    assert attempts(case, fake.requests[n:]) == 2
    assert not fake.faults
    if out.run is not None:
        assert "fallback" not in out.run.kinds  # a retry of the same candidate, not a fallback


def exhausted_reason(case: Case, fault: FaultKind) -> str:
    if fault is FaultKind.SERVER_ERROR or case.kind == "lambda":  # Lambda's is a 502
        return "UPSTREAM_SERVER_ERROR"
    return "UPSTREAM_OVERLOADED"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", TRANSIENT)
@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_transient_fault_on_every_attempt_gives_unavailable(
    rig: Rig, case: Case, fault: FaultKind, mode: str
) -> None:
    fake = rig.fake(case.provider)
    fake.inject(*(Fault(fault) for _ in range(3)))  # max_retries = 2: three attempts
    n = len(fake.requests)
    out = await call(rig.retrying, mode, prompt=PROMPT, model=case.model)
    check_failure(out.failure, case, grpc.StatusCode.UNAVAILABLE, exhausted_reason(case, fault))
    assert out.failure is not None and out.failure.retry_info is not None
    assert attempts(case, fake.requests[n:]) == 3
    assert not fake.faults
    if out.run is not None:
        assert out.run.kinds == ["started"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_cut_before_any_output_is_retried(rig: Rig, case: Case, mode: str) -> None:
    """A connection dropped before the first token (unary: mid-body) is a retryable failure."""
    fake = rig.fake(case.provider)
    fake.inject(Fault(FaultKind.CUT_STREAM, after_tokens=0))
    n = len(fake.requests)
    out = await call(rig.retrying, mode, prompt=PROMPT, model=case.model)
    assert out.failure is None, out.failure
    assert out.text == reply_of(PROMPT)
    assert attempts(case, fake.requests[n:]) == 2


MID_STREAM = [
    # (fault, ErrorInfo.reason per provider kind)
    (FaultKind.CUT_STREAM, {}),
    (FaultKind.STREAM_ERROR, {"anthropic": "UPSTREAM_OVERLOADED"}),
]


@pytest.mark.parametrize(("fault", "reasons"), MID_STREAM, ids=["cut", "error-event"])
@pytest.mark.parametrize("case", STREAMING, ids=ids)
async def test_stream_failing_after_first_delta_ends_unavailable(
    rig: Rig, case: Case, fault: FaultKind, reasons: dict[str, str]
) -> None:
    """After output began there is no retry and no ``final``: a ``usage`` event, then a status."""
    fake = rig.fake(case.provider)
    after = 1
    if case.kind == "runpod":
        # The fake's worker drops the job right after appending an output; a token delay leaves
        # the first output visible to /stream polls before the job goes.
        fake.token_delay_s, after = 0.2, 2
    fake.inject(Fault(fault, after_tokens=after))
    n = len(fake.requests)
    run = await run_stream(
        rig.retrying,
        pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt=PROMPT, model=case.model)),
    )
    run.check_order()
    reason = "UPSTREAM_STREAM_BROKEN" if fault is FaultKind.CUT_STREAM else "UPSTREAM_SERVER_ERROR"
    check_failure(run.failure, case, grpc.StatusCode.UNAVAILABLE, reasons.get(case.kind, reason))
    kinds = run.kinds
    assert kinds[0] == "started" and kinds[-1] == "usage", kinds
    assert set(kinds[1:-1]) == {"delta"}, kinds
    assert run.text and reply_of(PROMPT).startswith(run.text) and run.text != reply_of(PROMPT)
    if case.sse:
        assert run.deltas == 1
    spent = run.events[-1].usage
    assert spent.usage.output_tokens >= 1 and spent.usage.source == ESTIMATED
    assert spent.cost_nanos == counts_of(spent.usage).cost(case)
    assert attempts(case, fake.requests[n:]) == 1


# -- fallback -------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [c for c in CASES if c.provider != "openai"], ids=ids)
async def test_fallback_to_a_model_on_another_provider(rig: Rig, target: Case) -> None:
    """Provider A answers 503 on every attempt; the stream falls back to B's model."""
    source = BY_PROVIDER["openai"]
    a, b = rig.fake("openai"), rig.fake(target.provider)
    a.inject(*(Fault(FaultKind.OVERLOADED) for _ in range(3)))
    na, nb = len(a.requests), len(b.requests)
    run = await run_stream(
        rig.retrying,
        pb.GenerateStreamRequest(
            request=pb.GenerateRequest(
                prompt=PROMPT, model=source.model, fallback_models=[target.model]
            )
        ),
    )
    assert run.failure is None, run.failure
    run.check_order()
    assert run.kinds == ["started", "fallback", *["delta"] * run.deltas, "final"]
    started = run.events[0].started
    assert (started.model, started.provider) == (source.model, source.provider)
    fb = run.events[1].fallback
    assert (fb.from_model, fb.to_model, fb.to_provider) == (
        source.model,
        target.model,
        target.provider,
    )
    assert fb.cause == "UPSTREAM_OVERLOADED" and fb.message and fb.attempt == 4
    assert run.text == reply_of(PROMPT)
    final = run.final
    assert (final.model, final.provider) == (target.model, target.provider)
    assert final.usage.source == (ESTIMATED if target.provider == "compat" else REPORTED)
    assert final.cost_nanos == counts_of(final.usage).cost(target)
    assert len(a.requests) - na == 3 and not a.faults
    assert attempts(target, b.requests[nb:]) == 1


async def test_unary_fallback_reports_the_serving_model(rig: Rig) -> None:
    a = rig.fake("openai")
    a.inject(*(Fault(FaultKind.SERVER_ERROR) for _ in range(3)))
    target = BY_PROVIDER["gemini"]
    resp = await inference(rig.retrying).Generate(
        pb.GenerateRequest(prompt=PROMPT, model="gpt-x", fallback_models=[target.model]),
        timeout=20,
    )
    assert (resp.model, resp.provider, resp.text) == (
        target.model,
        target.provider,
        reply_of(PROMPT),
    )
    assert counts_of(resp.usage) == expected(target, PROMPT)
    assert resp.cost_nanos == expected(target, PROMPT).cost(target)


# -- cancellation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", STREAMING, ids=ids)
async def test_cancelled_stream_disconnects_upstream(rig: Rig, case: Case) -> None:
    fake = rig.fake(case.provider)
    fake.token_delay_s = 0.05
    aborted = fake.aborted_streams
    long_prompt = " ".join(f"w{i}" for i in range(200))  # about 10 s of tokens
    stream = inference(rig.strict).GenerateStream(
        pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt=long_prompt, model=case.model)),
        timeout=30,
    )
    deltas = 0
    async for event in stream:
        deltas += event.HasField("delta")
        if deltas == 2:
            break
    stream.cancel()
    assert deltas == 2
    assert await wait_until(fake.stream_aborted), "the upstream never saw the client go away"
    assert fake.aborted_streams == aborted + 1
    assert await stream.code() == grpc.StatusCode.CANCELLED
    if case.kind == "runpod":
        assert fake.cancelled, "the RunPod job was not cancelled"


# -- embeddings -----------------------------------------------------------------------------------
async def test_embed_openai(rig: Rig) -> None:
    case = BY_PROVIDER["openai"]
    fake = rig.fake("openai")
    inputs = ["first text here", "second", "and the third one"]
    n = len(fake.requests)
    resp = await inference(rig.strict).Embed(
        pb.EmbedRequest(model=case.embed_model, inputs=inputs), timeout=20
    )
    assert (resp.model, resp.provider) == (case.embed_model, "openai")
    assert [e.index for e in resp.embeddings] == [0, 1, 2]
    for emb, text in zip(resp.embeddings, inputs, strict=True):
        assert list(emb.values) == pytest.approx(fake_embedding(text, fake.embedding_dims))
    assert resp.usage.source == REPORTED
    assert resp.usage.input_tokens == words(*inputs) and resp.usage.output_tokens == 0
    assert resp.cost_nanos == hand_cost(case, words(*inputs), 0, 0) > 0
    sent = fake.requests[n:]
    assert len(sent) == 1 and sent[0].path == "/v1/embeddings"
    assert sent[0].body["model"] == case.embed_upstream and sent[0].body["input"] == inputs


@pytest.mark.parametrize("inputs", [["just one text"], ["one", "two words", "three more words"]])
async def test_embed_gemini(rig: Rig, inputs: list[str]) -> None:
    case = BY_PROVIDER["gemini"]
    fake = rig.fake("gemini")
    n = len(fake.requests)
    resp = await inference(rig.strict).Embed(
        pb.EmbedRequest(model=case.embed_model, inputs=inputs), timeout=20
    )
    assert (resp.model, resp.provider) == (case.embed_model, "gemini")
    assert len(resp.embeddings) == len(inputs)
    for emb, text in zip(resp.embeddings, inputs, strict=True):
        assert list(emb.values) == pytest.approx(fake_embedding(text, fake.embedding_dims))
    # Gemini reports no usage for embeddings: Aurea estimates, and prices the estimate.
    assert resp.usage.source == ESTIMATED and resp.usage.input_tokens >= len(inputs)
    assert resp.cost_nanos == hand_cost(case, resp.usage.input_tokens, 0, 0) > 0
    method = "embedContent" if len(inputs) == 1 else "batchEmbedContents"
    sent = fake.requests[n:]
    assert len(sent) == 1 and sent[0].path == f"/v1beta/models/{case.embed_upstream}:{method}"


# -- admin ----------------------------------------------------------------------------------------
async def provider_stats(rs: RunningServer, provider: str) -> admin_pb2.ProviderStats:
    resp = await admin(rs).GetProviderStats(
        admin_pb2.GetProviderStatsRequest(provider=provider), timeout=10
    )
    assert [p.provider for p in resp.providers] == [provider]
    return resp.providers[0]


async def test_provider_stats_reflect_calls(rig: Rig) -> None:
    case = BY_PROVIDER["openai"]
    rs = rig.strict
    before = await provider_stats(rs, "openai")
    unary = await call(rs, "unary", prompt=PROMPT, model=case.model)
    stream = await call(rs, "stream", prompt=PROMPT, model=case.model)
    emb = await inference(rs).Embed(
        pb.EmbedRequest(model=case.embed_model, inputs=["a b c"]), timeout=20
    )
    rig.fake("openai").inject(Fault(FaultKind.CUT_STREAM, after_tokens=1))
    broken = await call(rs, "stream", prompt=PROMPT, model=case.model)
    assert broken.failure is not None and broken.run is not None
    spent = broken.run.events[-1].usage
    after = await provider_stats(rs, "openai")
    assert unary.usage is not None and stream.usage is not None
    assert after.requests - before.requests == 4
    assert after.successes - before.successes == 3
    assert after.failures - before.failures == 1  # the stream that broke after output began
    assert after.input_tokens - before.input_tokens == (
        unary.usage.input_tokens
        + stream.usage.input_tokens
        + emb.usage.input_tokens
        + spent.usage.input_tokens
    )
    assert after.output_tokens - before.output_tokens == (
        unary.usage.output_tokens + stream.usage.output_tokens + spent.usage.output_tokens
    )
    assert after.cost_nanos - before.cost_nanos == (
        unary.cost_nanos + stream.cost_nanos + emb.cost_nanos + spent.cost_nanos
    )
    assert after.avg_latency_ms > 0 and 0 < after.success_rate <= 1
    assert after.HasField("last_request_time") and after.last_request_time.seconds > 0


async def test_provider_stats_count_calls_that_fail_before_output(rig: Rig) -> None:
    case = BY_PROVIDER["anthropic"]
    fake = rig.fake("anthropic")
    rs = rig.strict
    before = await provider_stats(rs, "anthropic")
    fake.inject(Fault(FaultKind.CONTEXT_LENGTH))
    assert (await call(rs, "unary", prompt=PROMPT, model=case.model)).failure is not None
    fake.inject(Fault(FaultKind.SERVER_ERROR))
    assert (await call(rs, "stream", prompt=PROMPT, model=case.model)).failure is not None
    after = await provider_stats(rs, "anthropic")
    assert after.requests - before.requests == 2
    # A request the provider rejected as bad is not the provider's failure (issue 8).
    assert after.failures - before.failures == 1
    assert after.rejected - before.rejected == 1
    assert after.requests == after.successes + after.failures + after.cancelled + after.rejected


async def test_list_providers(rig: Rig) -> None:
    resp = await admin(rig.strict).ListProviders(admin_pb2.ListProvidersRequest(), timeout=10)
    names = [p.name for p in resp.providers]
    assert names == sorted(names) and not resp.next_page_token
    by_name = {p.name: p for p in resp.providers}
    for case in CASES:
        p = by_name[case.provider]
        fake = rig.fake(case.provider)
        base = f"{fake.origin}/generate" if case.kind == "http" else fake.base_url
        assert (p.kind, p.base_url) == (case.kind, base)
        assert list(p.models) == sorted(m for m in (case.model, case.embed_model) if m)
        if case.key_env:
            assert p.api_key_configured, case.provider
        assert p.circuit_state == admin_pb2.CIRCUIT_STATE_CLOSED
        text = str(p)
        for secret in SECRETS.all():
            assert secret not in text
    assert not by_name["nokey"].api_key_configured


@pytest.mark.parametrize("mode", MODES)
async def test_unset_key_variable_fails_before_any_request(rig: Rig, mode: str) -> None:
    """A provider whose key variable is unset: FAILED_PRECONDITION naming the variable (never a
    value), and nothing is sent upstream."""
    fake = rig.fake("openai")
    n = len(fake.requests)
    out = await call(rig.retrying, mode, prompt=PROMPT, model="nokey-model")
    assert out.failure is not None
    assert (out.failure.code, out.failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "UPSTREAM_AUTH_FAILED",
    )
    assert UNSET_KEY_ENV in out.failure.message
    assert len(fake.requests) == n


@pytest.mark.parametrize(
    ("fault", "falls_back"),
    [(FaultKind.UNAUTHORIZED, True), (FaultKind.CONTEXT_LENGTH, False)],
    ids=["auth-falls-back", "context-length-does-not"],
)
async def test_which_rejections_fall_back(rig: Rig, fault: FaultKind, falls_back: bool) -> None:
    """A key one provider refuses says nothing about the next provider; a prompt too long for
    the model is the caller's to fix, so no other candidate is tried."""
    a, b = rig.fake("openai"), rig.fake("gemini")
    a.inject(Fault(fault))
    nb = len(b.requests)
    run = await run_stream(
        rig.retrying,
        pb.GenerateStreamRequest(
            request=pb.GenerateRequest(prompt=PROMPT, model="gpt-x", fallback_models=["gemini-x"])
        ),
    )
    run.check_order()
    if falls_back:
        assert run.failure is None, run.failure
        assert run.events[1].fallback.cause == "UPSTREAM_AUTH_FAILED"
        assert run.final.provider == "gemini" and run.text == reply_of(PROMPT)
        assert len(b.requests) == nb + 1
    else:
        check_failure(
            run.failure,
            BY_PROVIDER["openai"],
            grpc.StatusCode.INVALID_ARGUMENT,
            "CONTEXT_LENGTH_EXCEEDED",
        )
        assert run.kinds == ["started"] and len(b.requests) == nb
