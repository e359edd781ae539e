"""InferenceService: validate, hand the call to the inference core, write its events back.

Streams are written with ``context.write`` as the core emits them: no generator layers between
the adapter and the transport.
"""

from __future__ import annotations

import grpc

from aurea.api import convert
from aurea.api.cache import cache_mode, final_cache_fields
from aurea.api.interceptors import WRITE_FAILED
from aurea.cache import CachedInference, CacheOutcome, cache_outcome
from aurea.edge import current_scope
from aurea.inference import (
    CallerGone,
    Delta,
    FallbackEvent,
    Final,
    GenEvent,
    ReasoningDelta,
    Started,
    ToolCallDelta,
    UsageUpdate,
)
from aurea.inference.writer import CoalescingWriter
from aurea.runtime.context import request_id_var
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

R = pb.GenerateStreamResponse


def _scope() -> tuple[str, float | None]:
    """The request id and deadline the edge set for this call."""
    scope = current_scope.get()
    if scope is None:  # not behind the edge (a servicer driven directly in a test)
        return request_id_var.get(), None
    return scope.request_id, scope.deadline


def _event_pb(ev: GenEvent) -> pb.GenerateStreamResponse:
    match ev:
        case Delta(text=text):
            return R(delta=pb.TextDelta(text=text))
        case UsageUpdate(usage=u, cost_nanos=c):
            return R(usage=pb.UsageUpdate(usage=convert.usage_pb(u), cost_nanos=c))
        case Started():
            return R(
                started=pb.StreamStarted(
                    request_id=ev.request_id,
                    model=ev.model,
                    provider=ev.provider,
                    attempt=ev.attempt,
                    route_reason=ev.reason,
                    cache_hit=ev.cache_hit,
                )
            )
        case FallbackEvent():
            return R(
                fallback=pb.Fallback(
                    from_model=ev.from_model,
                    to_model=ev.to_model,
                    to_provider=ev.to_provider,
                    cause=ev.cause,
                    message=ev.message,
                    attempt=ev.attempt,
                    restart=ev.restart,
                )
            )
        case ToolCallDelta():
            return R(
                tool_call=pb.ToolCallDelta(
                    index=ev.index, id=ev.id, name=ev.name, arguments=ev.arguments
                )
            )
        case ReasoningDelta():
            return R(
                reasoning=pb.ReasoningDelta(text=ev.text, kind=convert.REASONING_KIND[ev.kind])
            )
        case Final():
            return R(final=convert.final_pb(ev))


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, inference: CachedInference) -> None:
        self._inference = inference  # the core behind the response cache

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateResponse:
        call = convert.generate_call(request, *_scope())
        f = await self._inference.generate(call, mode=cache_mode(request.cache_mode))
        hit = cache_outcome()
        return pb.GenerateResponse(
            request_id=call.request_id,
            model=f.model,
            provider=f.provider,
            text=f.text,
            finish_reason=convert.FINISH[f.finish_reason],
            usage=convert.usage_pb(f.usage),
            cost_nanos=f.cost_nanos,
            latency_ms=f.latency_s * 1e3,
            time_to_first_token_ms=f.ttft_s * 1e3,
            attempts=f.attempts,
            cache_hit=hit.hit,
            cache_saved_cost_nanos=hit.saved_cost_nanos,
            route_reason=f.route_reason,
            tool_calls=convert.tool_calls_pb(f.tool_calls) if f.tool_calls else None,
            reasoning=f.reasoning,
            reasoning_kind=convert.REASONING_KIND[f.reasoning_kind] if f.reasoning else None,
            reasoning_blocks=(
                convert.reasoning_blocks_pb(f.reasoning_blocks) if f.reasoning_blocks else None
            ),
        )

    async def GenerateStream(
        self, request: pb.GenerateStreamRequest, context: grpc.aio.ServicerContext
    ) -> None:
        call = convert.generate_call(request, *_scope())
        write = context.write
        outcome: CacheOutcome | None = None  # what the cache did, known once the call returns

        async def emit(ev: GenEvent) -> None:
            if type(ev) is Delta:
                msg = R(delta=pb.TextDelta(text=ev.text))
            elif outcome is not None and isinstance(ev, Final):
                msg = R(final=final_cache_fields(convert.final_pb(ev), outcome))
            else:
                msg = _event_pb(ev)
            try:
                await write(msg)
            except WRITE_FAILED as exc:
                # grpc raises its own batch error when the stream is gone (the client cancelled
                # or disconnected): the caller's cancellation, not a bug; unwind as one.
                raise CallerGone("the client went away") from exc

        mode = cache_mode(request.request.cache_mode)
        async with CoalescingWriter(emit) as writer:
            final = await self._inference.stream(call, writer.emit, mode=mode)
            outcome = cache_outcome()
            await writer.emit(final)

    async def Embed(
        self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedResponse:
        call = convert.embed_call(request, *_scope())
        r = await self._inference.embed(call, mode=cache_mode(request.cache_mode))
        hit = cache_outcome()
        return pb.EmbedResponse(
            request_id=call.request_id,
            model=r.model,
            provider=r.provider,
            embeddings=[pb.Embedding(index=i, values=v) for i, v in enumerate(r.vectors)],
            usage=convert.usage_pb(r.usage),
            cost_nanos=r.cost_nanos,
            cache_hit=hit.hit,
            cache_saved_cost_nanos=hit.saved_cost_nanos,
        )
