"""Requests from keyword arguments, and protobuf replies to the client's dataclasses. The only
module of the inference calls that touches generated code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from aurea_client._pb import inference_pb2 as pb
from aurea_client._types import (
    Completion,
    Delta,
    Embeddings,
    Failover,
    Fallback,
    Final,
    FinishReason,
    Message,
    MessageLike,
    Policy,
    Started,
    StreamEvent,
    Usage,
    UsageUpdate,
)

_ROLES = {"system": pb.ROLE_SYSTEM, "user": pb.ROLE_USER, "assistant": pb.ROLE_ASSISTANT}
_POLICIES = {
    "cost": pb.ROUTING_POLICY_COST,
    "quality": pb.ROUTING_POLICY_QUALITY,
    "latency": pb.ROUTING_POLICY_LATENCY,
    "balanced": pb.ROUTING_POLICY_BALANCED,
}


def _message(m: MessageLike) -> pb.ChatMessage:
    role: str
    content: str
    if isinstance(m, Message):
        role, content = m.role, m.content
    elif isinstance(m, tuple):
        role, content = m
    else:
        role, content = m["role"], m["content"]
    if role not in _ROLES:
        raise ValueError(f"a message's role is system, user or assistant, not {role!r}")
    return pb.ChatMessage(role=_ROLES[role], content=content)


def generate_fields(
    *,
    prompt: str | None,
    messages: Sequence[MessageLike],
    system: str | None,
    model: str,
    max_tokens: int,
    temperature: float | None,
    top_p: float | None,
    stop: Sequence[str],
    seed: int | None,
    job_id: str,
    policy: Policy | None,
    fallbacks: Sequence[str],
    cache_bypass: bool,
    labels: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The fields GenerateRequest and GenerateStreamRequest share. A ``system`` text (with a
    ``prompt``) becomes a two-message conversation."""
    chat = [_message(m) for m in messages]
    if system is not None:
        chat.insert(0, pb.ChatMessage(role=pb.ROLE_SYSTEM, content=system))
        if prompt is not None:
            chat.append(pb.ChatMessage(role=pb.ROLE_USER, content=prompt))
            prompt = None
    fields: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "stop": list(stop),
        "job_id": job_id,
        "fallback_models": list(fallbacks),
        "cache_bypass": cache_bypass,
        "labels": dict(labels or {}),
    }
    if chat:
        fields["messages"] = chat
    if prompt is not None:
        fields["prompt"] = prompt
    if temperature is not None:
        fields["temperature"] = temperature
    if top_p is not None:
        fields["top_p"] = top_p
    if seed is not None:
        fields["seed"] = seed
    if policy is not None:
        if policy not in _POLICIES:
            raise ValueError(f"policy is one of {', '.join(_POLICIES)}, not {policy!r}")
        fields["routing_policy"] = _POLICIES[policy]
    return fields


def failover(mode: Failover | None) -> str:
    """The MidStreamFailover value's name for ``mode`` (None: the server's default, CONTINUE)."""
    name = f"MID_STREAM_FAILOVER_{'UNSPECIFIED' if mode is None else str(mode).upper()}"
    if name not in set(pb.MidStreamFailover.keys()):
        raise ValueError(
            f"failover is continue, continue_or_restart, restart or none, not {mode!r}"
        )
    return name


def usage(u: pb.Usage) -> Usage:
    return Usage(
        input_tokens=u.input_tokens,
        cached_input_tokens=u.cached_input_tokens,
        output_tokens=u.output_tokens,
        reasoning_tokens=u.reasoning_tokens,
        estimated=u.source == pb.USAGE_SOURCE_ESTIMATED,
    )


def finish(value: int) -> FinishReason:
    name = pb.FinishReason.Name(value).removeprefix("FINISH_REASON_").lower()
    return cast(FinishReason, name)


def completion(r: pb.GenerateResponse) -> Completion:
    return Completion(
        request_id=r.request_id,
        model=r.model,
        provider=r.provider,
        text=r.text,
        finish_reason=finish(r.finish_reason),
        usage=usage(r.usage),
        cost_nanos=r.cost_nanos,
        latency_ms=r.latency_ms,
        ttft_ms=r.time_to_first_token_ms,
        attempts=r.attempts,
        cache_hit=r.cache_hit,
        route_reason=r.route_reason,
    )


def event(r: pb.GenerateStreamResponse) -> StreamEvent | None:
    """The typed event (None for an event kind this client does not know yet)."""
    kind = r.WhichOneof("event")
    if kind == "delta":
        return Delta(r.delta.text)
    if kind == "usage":
        return UsageUpdate(usage=usage(r.usage.usage), cost_nanos=r.usage.cost_nanos)
    if kind == "started":
        s = r.started
        return Started(
            request_id=s.request_id,
            model=s.model,
            provider=s.provider,
            attempt=s.attempt,
            route_reason=s.route_reason,
            cache_hit=s.cache_hit,
        )
    if kind == "fallback":
        f = r.fallback
        return Fallback(
            from_model=f.from_model,
            to_model=f.to_model,
            to_provider=f.to_provider,
            cause=f.cause,
            message=f.message,
            attempt=f.attempt,
            restart=f.restart,
        )
    if kind == "final":
        f2 = r.final
        return Final(
            finish_reason=finish(f2.finish_reason),
            usage=usage(f2.usage),
            cost_nanos=f2.cost_nanos,
            latency_ms=f2.latency_ms,
            ttft_ms=f2.time_to_first_token_ms,
            model=f2.model,
            provider=f2.provider,
            attempts=f2.attempts,
        )
    return None


def embeddings(r: pb.EmbedResponse) -> Embeddings:
    ordered = sorted(r.embeddings, key=lambda e: e.index)
    return Embeddings(
        request_id=r.request_id,
        model=r.model,
        provider=r.provider,
        vectors=tuple(tuple(e.values) for e in ordered),
        usage=usage(r.usage),
        cost_nanos=r.cost_nanos,
    )
