"""InferenceService: validate, hand the call to the pipeline, stream its events back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import structlog

from aurea.api import convert
from aurea.api.interceptors import request_id_var
from aurea.pipeline import Delta, FallbackEvent, Final, Inference, Started, UsageUpdate
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc


def _log_final(f: Final) -> None:
    structlog.contextvars.bind_contextvars(
        model=f.model,
        provider=f.provider,
        input_tokens=f.usage.input_tokens,
        output_tokens=f.usage.output_tokens,
        cost_nanos=f.cost_nanos,
        attempts=f.attempts,
        finish=f.finish_reason.value,
    )


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, inference: Inference) -> None:
        self._inference = inference

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateResponse:
        call = convert.generate_call(request, request_id_var.get())
        f = await self._inference.generate(call)
        _log_final(f)
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
            cache_hit=False,
            route_reason=f.route_reason,
        )

    async def GenerateStream(
        self, request: pb.GenerateStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateStreamResponse]:
        call = convert.generate_call(request, request_id_var.get())
        R = pb.GenerateStreamResponse
        events = self._inference.stream(call)
        try:
            async for ev in events:
                match ev:
                    case Delta(text=text):
                        yield R(delta=pb.TextDelta(text=text))
                    case UsageUpdate(usage=u, cost_nanos=c):
                        yield R(usage=pb.UsageUpdate(usage=convert.usage_pb(u), cost_nanos=c))
                    case Started():
                        yield R(
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
                        yield R(
                            fallback=pb.Fallback(
                                from_model=ev.from_model,
                                to_model=ev.to_model,
                                to_provider=ev.to_provider,
                                cause=ev.cause,
                                message=ev.message,
                                attempt=ev.attempt,
                            )
                        )
                    case Final():
                        _log_final(ev)
                        yield R(final=convert.final_pb(ev))
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def Embed(
        self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedResponse:
        call = convert.embed_call(request, request_id_var.get())
        r = await self._inference.embed(call)
        structlog.contextvars.bind_contextvars(
            model=r.model,
            provider=r.provider,
            input_tokens=r.usage.input_tokens,
            cost_nanos=r.cost_nanos,
        )
        return pb.EmbedResponse(
            request_id=call.request_id,
            model=r.model,
            provider=r.provider,
            embeddings=[pb.Embedding(index=i, values=v) for i, v in enumerate(r.vectors)],
            usage=convert.usage_pb(r.usage),
            cost_nanos=r.cost_nanos,
        )
