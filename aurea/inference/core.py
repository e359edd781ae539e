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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import structlog

from aurea.actors.provider import ProviderMsg
from aurea.actors.router import Candidate, Route, RouterMsg
from aurea.config import RetrySettings
from aurea.errors import AureaError, DeadlineExceeded
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
)
from aurea.inference.guards import AttemptInfo, Guard
from aurea.inference.stream import StreamRun
from aurea.pricing import cost_nanos
from aurea.providers._base import (
    Completion,
    Embeddings,
    EmbedRequest,
    Usage,
)
from aurea.providers._tokens import (
    estimate_messages_tokens_async,
    estimate_text_tokens_async,
)
from aurea.runtime import ActorRef

log = structlog.get_logger("aurea.inference")
RecordSink = Callable[[CallRecord], None]


class Inference:
    """Coordinates calls; holds only references to actors, guards and settings."""

    def __init__(
        self,
        *,
        router: ActorRef[RouterMsg],
        providers: Mapping[str, ActorRef[ProviderMsg]],
        retry: RetrySettings,
        ask_timeout_s: float,
        guards: Sequence[Guard] = (),
        default_call_timeout_s: float = 300.0,
        sinks: Sequence[RecordSink] = (),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._router = router
        self._timeout = ask_timeout_s
        self._default_timeout_s = default_call_timeout_s
        self._sinks = tuple(sinks)
        self._clock = clock
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
            candidates = await self._route(call.model, "chat", call, call.fallbacks)
            run = StreamRun(call, emit, record, t0, self._clock)
            final = await self._loop.run(
                self._info(call.request_id, CallKind.STREAM, call.job_id, call.max_tokens),
                candidates,
                run.body,
                record,
                deadline=deadline,
                on_fallback=run.on_fallback,
            )
            record.outcome = CallOutcome.OK
            return final

    async def generate(self, call: GenerateCall) -> Final:
        """A unary call: the provider's non-streaming API, same routing, retries and fallback."""
        record = self._record(call.request_id, CallKind.UNARY, call.job_id, call.labels)
        t0 = self._clock()
        async with self._bounded(call.deadline, record, t0) as deadline:
            candidates = await self._route(call.model, "chat", call, call.fallbacks)

            async def body(cand: Candidate, attempt: Attempt) -> Final:
                model = cand.model
                try:
                    result: Completion = await attempt.adapter.complete(
                        provider_request(call, cand)
                    )
                except BaseException as exc:
                    raise mapped(model.provider, exc) from exc
                usage = result.usage or Usage(
                    input_tokens=await estimate_messages_tokens_async(
                        call.messages, model.upstream
                    ),
                    output_tokens=await estimate_text_tokens_async(result.text, model.upstream),
                    estimated=True,
                )
                cost = cost_nanos(model, usage)
                attempt.observe(usage, cost)
                latency = self._clock() - t0
                return Final(
                    finish_reason=result.finish.reason,
                    usage=usage,
                    cost_nanos=cost,
                    latency_s=latency,
                    ttft_s=latency,
                    model=model.name,
                    provider=model.provider,
                    attempts=attempt.number,
                    route_reason=cand.reason,
                    text=result.text,
                )

            final = await self._loop.run(
                self._info(call.request_id, CallKind.UNARY, call.job_id, call.max_tokens),
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
            candidates = await self._route(call.model, "embedding", None, ())

            async def body(cand: Candidate, attempt: Attempt) -> EmbedResult:
                model = cand.model
                req = EmbedRequest(
                    model=model.upstream, inputs=call.inputs, request_id=call.request_id
                )
                try:
                    result: Embeddings = await attempt.adapter.embed(req)
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
                self._info(call.request_id, CallKind.EMBED, call.job_id, 0),
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
        return CallRecord(request_id=rid, kind=kind, job_id=job, labels=labels)

    @staticmethod
    def _info(rid: str, kind: CallKind, job: str, max_tokens: int) -> AttemptInfo:
        return AttemptInfo(request_id=rid, kind=kind, job_id=job, max_tokens=max_tokens)

    async def _route(
        self, model: str, kind: str, call: GenerateCall | None, fallbacks: tuple[str, ...]
    ) -> tuple[Candidate, ...]:
        policy = call.policy if call is not None else None
        msg = Route(model=model, kind=kind, policy=policy, fallbacks=fallbacks)
        return await self._router.ask(msg, timeout_s=self._timeout)

    @contextlib.asynccontextmanager
    async def _bounded(
        self, deadline: float | None, record: CallRecord, t0: float
    ) -> AsyncIterator[float]:
        """Bound the whole call (every retry and candidate) by the caller's deadline or, when
        it set none, by ``server.default_call_timeout_s``; finish the record however it ends."""
        if deadline is None:
            deadline = t0 + self._default_timeout_s
        try:
            async with asyncio.timeout(max(deadline - self._clock(), 0.0)):
                yield deadline
        except TimeoutError:
            record.outcome = CallOutcome.DEADLINE
            record.error = DeadlineExceeded.reason
            raise DeadlineExceeded(
                f"the call did not finish within its deadline "
                f"({deadline - t0:.3g} s after it started)"
            ) from None
        except AureaError as exc:
            record.error = exc.reason
            raise
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError | GeneratorExit):
                record.outcome = CallOutcome.CANCELLED
            else:
                record.error = "INTERNAL"
            raise
        finally:
            record.latency_s = self._clock() - t0
            for sink in self._sinks:
                try:
                    sink(record)
                except Exception as exc:  # a sink must never fail the call it reports
                    log.error("record_sink_failed", error=repr(exc), exc_info=exc)
