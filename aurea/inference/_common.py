"""Small pieces every call body shares: the provider request for a candidate, the one mapping
of adapter exceptions, and copying a final answer into the call's record."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aurea.actors.provider import adapter_failure
from aurea.actors.router import Candidate
from aurea.inference.calls import CallRecord, Final, GenerateCall, GenEvent
from aurea.providers._base import ChatMessage, ProviderRequest, Timeouts

Emit = Callable[[GenEvent], Awaitable[None]]
_CONTROL = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


def provider_request(
    call: GenerateCall,
    cand: Candidate,
    timeouts: Timeouts | None = None,
    messages: tuple[ChatMessage, ...] | None = None,
) -> ProviderRequest:
    return ProviderRequest(
        model=cand.model.upstream,
        messages=call.messages if messages is None else messages,
        timeouts=timeouts,
        max_tokens=call.max_tokens or cand.model.default_max_tokens,
        temperature=call.temperature,
        top_p=call.top_p,
        stop=call.stop,
        seed=call.seed,
        request_id=call.request_id,
        options=call.options,
    )


def mapped(provider: str, exc: BaseException) -> BaseException:
    """Control-flow exceptions pass; everything else from an adapter becomes an AureaError."""
    return exc if isinstance(exc, _CONTROL) else adapter_failure(provider, exc)


def settle(record: CallRecord, final: Final) -> None:
    record.usage, record.cost_nanos = final.usage, final.cost_nanos
    record.finish_reason = final.finish_reason
    record.ttft_s = final.ttft_s
