"""The inference core: one call end to end, in the caller's task. Route, run the attempt loop
with the call's body (stream, unary or embed), bound the whole call by its deadline, and leave
one ``CallRecord`` behind on every exit path.

Events are domain types; the edge turns them into protobuf (or JSON) and writes them itself, so
a stream has no generator layers between the adapter and the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType

import structlog

from aurea.actors.provider import ProviderMsg
from aurea.config import RetrySettings
from aurea.errors import AureaError, BudgetExceeded, DeadlineExceeded, ProviderTimeout
from aurea.inference._common import Emit, mapped, provider_request, settle
from aurea.inference.attempts import Attempt, AttemptLoop
from aurea.inference.calls import (
    CallKind,
    CallOutcome,
    CallRecord,
    EmbedCall,
    EmbedResult,
    Final,
    GenerateCall,
    current_record,
)
from aurea.inference.deadlines import Deadlines
from aurea.inference.guards import AttemptInfo, Guard
from aurea.inference.rich import capable
from aurea.inference.stream import StreamRun
from aurea.pricing import cost_nanos
from aurea.providers._base import (
    Completion,
    Embeddings,
    EmbedRequest,
    FinishReason,
    ProviderRequest,
    Timeouts,
    Usage,
    required_capabilities,
)
from aurea.providers._tokens import (
    estimate_messages_tokens_async,
    estimate_text_tokens_async,
    prompt_extra_tokens,
)
from aurea.routing import Candidate, RouterView
from aurea.runtime import ActorRef

log = structlog.get_logger("aurea.inference")
RecordSink = Callable[[CallRecord], None]


class Inference:
    """Coordinates calls; holds only references to actors, guards and settings."""

    def __init__(
        self,
        *,
        view: RouterView,
        providers: Mapping[str, ActorRef[ProviderMsg]],
        retry: RetrySettings,
        ask_timeout_s: float,
        guards: Sequence[Guard] = (),
        timeouts: Mapping[str, Timeouts] | None = None,
        default_call_timeout_s: float = 300.0,
        sinks: Sequence[RecordSink] = (),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._view = view
        self._timeout = ask_timeout_s
        self._default_timeout_s = default_call_timeout_s
        self._sinks = tuple(sinks)
        self._clock = clock
        # Each model's limits; ``timeouts`` are the providers' (``[providers.X]``), the defaults
        # of the models that set none.
        self._deadlines = Deadlines(timeouts)
        self._loop = AttemptLoop(
            guards=guards,
            providers=providers,
            retry=retry,
            ask_timeout_s=ask_timeout_s,
            clock=clock,
            sleep=sleep,
            jitter=jitter,
        )

    # -- the three calls -------------------------------------------------------------------

    async def stream(self, call: GenerateCall, emit: Emit) -> Final:
        """Emit ``started``, then fallbacks, deltas and usage updates; return the final event
        (the caller emits it). Raises the call's error; never a truncated success."""
        record = self._record(call.request_id, CallKind.STREAM, call.job_id, call.labels)
        t0 = self._clock()
        async with self._bounded(call.deadline, record, t0) as deadline:
            candidates = self._route(call.model, "chat", call, call.fallbacks)
            run = StreamRun(call, emit, record, t0, self._clock, self._deadlines)
            final = await self._loop.run(
                self._info(call, CallKind.STREAM, deadline, candidates),
                candidates,
                run.body,
                record,
                deadline=deadline,
                on_fallback=run.on_fallback,
                failover=run.mid,
            )
            record.outcome = CallOutcome.OK
            return final

    async def generate(self, call: GenerateCall) -> Final:
        """A unary call: the provider's non-streaming API, same routing, retries and fallback."""
        record = self._record(call.request_id, CallKind.UNARY, call.job_id, call.labels)
        t0 = self._clock()
        async with self._bounded(call.deadline, record, t0) as deadline:
            candidates = self._route(call.model, "chat", call, call.fallbacks)

            async def body(cand: Candidate, attempt: Attempt) -> Final:
                model = cand.model
                limits = self._deadlines.of(model)
                request = provider_request(call, cand, limits)
                try:
                    async with asyncio.timeout(limits.total_s):
                        result: Completion = await attempt.adapter.complete(request)
                except TimeoutError as exc:
                    raise _too_long(model.provider, limits) from exc
                except BaseException as exc:
                    raise mapped(model.provider, exc) from exc
                usage = result.usage or await _estimate_unary(request, result)
                cost = cost_nanos(model, usage)
                finish = result.finish.reason
                if result.tool_calls and finish is FinishReason.STOP:
                    finish = FinishReason.TOOL_CALLS  # (Gemini says STOP after calls)
                try:
                    attempt.observe(usage, cost)
                except BudgetExceeded as exc:
                    # The answer is whole and already generated: it is returned, marked, and
                    # charged only what the job's budget could still cover (the ledger's cap).
                    finish = FinishReason.BUDGET_EXCEEDED
                    if exc.limit_nanos is not None:
                        cost = min(cost, exc.limit_nanos)
                    for p in attempt.permits:
                        with contextlib.suppress(BudgetExceeded):
                            p.observe(usage, cost)
                latency = self._clock() - t0
                return Final(
                    finish_reason=finish,
                    usage=usage,
                    cost_nanos=cost,
                    latency_s=latency,
                    ttft_s=latency,
                    model=model.name,
                    provider=model.provider,
                    attempts=attempt.number,
                    route_reason=cand.reason,
                    text=result.text,
                    tool_calls=result.tool_calls,
                    reasoning=result.reasoning,
                    reasoning_kind=result.reasoning_kind,
                    reasoning_blocks=result.reasoning_blocks,
                )

            final = await self._loop.run(
                self._info(call, CallKind.UNARY, deadline, candidates),
                candidates,
                body,
                record,
                deadline=deadline,
            )
            settle(record, final)
            record.outcome = CallOutcome.OK
            return final

    async def embed(self, call: EmbedCall) -> EmbedResult:
        record = self._record(call.request_id, CallKind.EMBED, call.job_id, call.labels)
        t0 = self._clock()
        async with self._bounded(call.deadline, record, t0) as deadline:
            candidates = self._route(call.model, "embedding", None, ())

            async def body(cand: Candidate, attempt: Attempt) -> EmbedResult:
                model = cand.model
                req = EmbedRequest(
                    model=model.upstream, inputs=call.inputs, request_id=call.request_id
                )
                limits = self._deadlines.of(model)
                try:
                    async with asyncio.timeout(limits.total_s):
                        result: Embeddings = await attempt.adapter.embed(req)
                except TimeoutError as exc:
                    raise _too_long(model.provider, limits) from exc
                except BaseException as exc:
                    raise mapped(model.provider, exc) from exc
                usage = result.usage
                if usage is None:
                    total = 0
                    for text in call.inputs:
                        total += await estimate_text_tokens_async(text, model.upstream)
                    usage = Usage(input_tokens=total, estimated=True)
                cost = cost_nanos(model, usage)
                attempt.observe(usage, cost)
                return EmbedResult(
                    model=model.name,
                    provider=model.provider,
                    vectors=result.vectors,
                    usage=usage,
                    cost_nanos=cost,
                    attempts=attempt.number,
                )

            result = await self._loop.run(
                self._info(call, CallKind.EMBED, deadline, candidates),
                candidates,
                body,
                record,
                deadline=deadline,
            )
            record.usage, record.cost_nanos = result.usage, result.cost_nanos
            record.outcome = CallOutcome.OK
            return result

    # -- shared pieces ---------------------------------------------------------------------

    def _record(self, rid: str, kind: CallKind, job: str, labels: Mapping[str, str]) -> CallRecord:
        record = CallRecord(request_id=rid, kind=kind, job_id=job, labels=labels)
        current_record.set(record)
        return record

    @staticmethod
    def _info(
        call: GenerateCall | EmbedCall,
        kind: CallKind,
        deadline: float,
        candidates: tuple[Candidate, ...],
    ) -> AttemptInfo:
        """What the guards learn of the call: who, which job, until when, the candidates, and a
        cheap estimate of the prompt's tokens (characters / 4; actual usage corrects it)."""
        if isinstance(call, EmbedCall):
            max_tokens, chars = 0, sum(len(t) for t in call.inputs)
        else:
            max_tokens, chars = call.max_tokens, sum(len(m.content) for m in call.messages)
        return AttemptInfo(
            request_id=call.request_id,
            kind=kind,
            job_id=call.job_id,
            max_tokens=max_tokens,
            principal=call.principal,
            deadline=deadline,
            candidates=candidates,
            input_tokens=-(-chars // 4),
        )

    def _route(
        self, model: str, kind: str, call: GenerateCall | None, fallbacks: tuple[str, ...]
    ) -> tuple[Candidate, ...]:
        # The router's published snapshot: no mailbox hop per call.
        if call is None:
            return self._view.table.route(model, kind, None, fallbacks)
        cands = self._view.table.route(model, kind, call.policy, fallbacks)
        needs = required_capabilities(call.messages, call.options)
        # Only candidates that can do what the call needs (the router does not know what a
        # call needs; it ranks models). Plain text needs nothing: no filtering, no copy.
        return capable(cands, needs) if needs else cands

    def _bounded(self, deadline: float | None, record: CallRecord, t0: float) -> _Bounded:
        """Bound the whole call (every retry and candidate) by the caller's deadline or, when
        it set none, by ``server.default_call_timeout_s``; finish the record however it ends."""
        if deadline is None:
            deadline = t0 + self._default_timeout_s
        return _Bounded(self, deadline, record, t0)


async def _estimate_unary(request: ProviderRequest, result: Completion) -> Usage:
    """A unary answer's usage when the provider reported none: the prompt (tool definitions
    and schema included), the text, the tool calls and the reasoning."""
    upstream = request.model
    output = result.text + result.reasoning
    for tc in result.tool_calls:
        output += tc.name + tc.arguments
    reasoning = await estimate_text_tokens_async(result.reasoning, upstream)
    return Usage(
        input_tokens=await estimate_messages_tokens_async(request.messages, upstream)
        + prompt_extra_tokens(request),
        output_tokens=await estimate_text_tokens_async(output, upstream),
        reasoning_tokens=reasoning,
        estimated=True,
    )


def _too_long(provider: str, limits: Timeouts) -> ProviderTimeout:
    return ProviderTimeout(
        f"{provider}: the attempt did not finish within {limits.total_s:g} s (total_timeout_s)",
        provider=provider,
    )


class _Bounded:
    """The call's bound as an async context manager (a class: cheaper than a generator one on
    the hot path). Yields the deadline; turns its expiry into ``DeadlineExceeded``."""

    __slots__ = ("_core", "_deadline", "_record", "_t0", "_timeout")

    def __init__(self, core: Inference, deadline: float, record: CallRecord, t0: float) -> None:
        self._core = core
        self._deadline = deadline
        self._record = record
        self._t0 = t0
        self._timeout = asyncio.timeout(max(deadline - core._clock(), 0.0))

    async def __aenter__(self) -> float:
        await self._timeout.__aenter__()
        return self._deadline

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        core, record = self._core, self._record
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            record.outcome = CallOutcome.DEADLINE
            record.error = DeadlineExceeded.reason
            raise DeadlineExceeded(
                f"the call did not finish within its deadline "
                f"({self._deadline - self._t0:.3g} s after it started)"
            ) from None
        finally:
            if exc is not None and record.outcome is not CallOutcome.DEADLINE:
                if isinstance(exc, AureaError):
                    record.error = exc.reason
                elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
                    record.outcome = CallOutcome.CANCELLED
                else:
                    record.error = "INTERNAL"
            record.latency_s = core._clock() - self._t0
            for sink in core._sinks:
                try:
                    sink(record)
                except Exception as err:  # a sink must never fail the call it reports
                    log.error("record_sink_failed", error=repr(err), exc_info=err)
