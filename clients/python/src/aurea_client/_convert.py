"""Requests from keyword arguments, and protobuf replies to the client's dataclasses. The only
module of the inference calls that touches generated code."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from aurea_client._messages import (
    Image,
    ImageLike,
    Message,
    MessageLike,
    ReasoningBlock,
    ReasoningBlockFormat,
    ToolCall,
    ToolLike,
    as_image,
    as_message,
    as_tool,
)
from aurea_client._pb import inference_pb2 as pb
from aurea_client._types import (
    Completion,
    Delta,
    Embeddings,
    Failover,
    Fallback,
    Final,
    FinishReason,
    Policy,
    ReasoningDelta,
    ReasoningEffort,
    ReasoningKind,
    Started,
    StreamEvent,
    ToolCallDelta,
    Usage,
    UsageUpdate,
)

_ROLES = {
    "system": pb.ROLE_SYSTEM,
    "user": pb.ROLE_USER,
    "assistant": pb.ROLE_ASSISTANT,
    "tool": pb.ROLE_TOOL,
}
_TOOL_CHOICES = {
    "auto": pb.TOOL_CHOICE_MODE_AUTO,
    "none": pb.TOOL_CHOICE_MODE_NONE,
    "required": pb.TOOL_CHOICE_MODE_REQUIRED,
}
_EFFORTS = {
    "low": pb.REASONING_EFFORT_LOW,
    "medium": pb.REASONING_EFFORT_MEDIUM,
    "high": pb.REASONING_EFFORT_HIGH,
}
_POLICIES = {
    "cost": pb.ROUTING_POLICY_COST,
    "quality": pb.ROUTING_POLICY_QUALITY,
    "latency": pb.ROUTING_POLICY_LATENCY,
    "balanced": pb.ROUTING_POLICY_BALANCED,
}


def _image(i: Image) -> pb.Image:
    source = {"url": i.url} if i.url else {"data": i.data}
    return pb.Image(media_type=i.media_type, detail=i.detail, **source)


def _parts(m: Message) -> list[pb.ContentPart]:
    if m.parts:
        return [
            pb.ContentPart(text=p) if isinstance(p, str) else pb.ContentPart(image=_image(p))
            for p in cast(tuple[str | Image, ...], m.parts)
        ]
    if not m.images:
        return []
    parts = [pb.ContentPart(text=m.content)] if m.content else []
    return parts + [pb.ContentPart(image=_image(i)) for i in cast(tuple[Image, ...], m.images)]


def tool_call_pb(c: ToolCall) -> pb.ToolCall:
    return pb.ToolCall(id=c.id, name=c.name, arguments=c.arguments, signature=c.signature)


def _block_format(name: ReasoningBlockFormat) -> int:
    if name.isdigit():  # a format these stubs do not know, kept as its number (see _block)
        return int(name)
    try:
        return pb.ReasoningBlockFormat.Value(f"REASONING_BLOCK_FORMAT_{name.upper()}")
    except ValueError:
        raise ValueError(f"a reasoning block's format is not {name!r}") from None


def block_pb(b: ReasoningBlock) -> pb.ReasoningBlock:
    return pb.ReasoningBlock(
        format=cast(Any, _block_format(b.format)), text=b.text, signature=b.signature, data=b.data
    )


def message_pb(like: MessageLike) -> pb.ChatMessage:
    m = as_message(like)
    parts = _parts(m)
    return pb.ChatMessage(
        role=_ROLES[m.role],
        content="" if parts else m.content,
        parts=parts,
        tool_calls=[tool_call_pb(c) for c in m.tool_calls],
        tool_call_id=m.tool_call_id,
        reasoning_blocks=[block_pb(b) for b in m.reasoning_blocks],
    )


def _tool(t: ToolLike) -> pb.Tool:
    tool = as_tool(t)
    schema = "" if tool.parameters is None else json.dumps(tool.parameters)
    return pb.Tool(
        name=tool.name,
        description=tool.description,
        parameters_json_schema=schema,
        strict=tool.strict,
    )


def rich_fields(
    *,
    tools: Sequence[ToolLike],
    tool_choice: str | None,
    parallel_tool_calls: bool | None,
    json_schema: Mapping[str, Any] | None,
    schema_name: str,
    strict: bool,
    json_object: bool,
    reasoning_effort: ReasoningEffort | None,
) -> dict[str, Any]:
    """The GenerateRequest fields of tool use, structured output and reasoning."""
    fields: dict[str, Any] = {}
    if tools:
        fields["tools"] = [_tool(t) for t in tools]
    if tool_choice is not None:
        mode = _TOOL_CHOICES.get(tool_choice)
        fields["tool_choice"] = (
            pb.ToolChoice(tool=tool_choice) if mode is None else pb.ToolChoice(mode=mode)
        )
    if parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = parallel_tool_calls
    if json_schema is not None and json_object:
        raise ValueError("give json_schema (JSON matching it) or json_object (any), not both")
    if json_schema is not None:
        fields["response_format"] = pb.ResponseFormat(
            type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
            name=schema_name,
            json_schema=json.dumps(json_schema),
            strict=strict,
        )
    elif strict or schema_name:
        raise ValueError("strict and schema_name go with json_schema")
    elif json_object:
        fields["response_format"] = pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    if reasoning_effort is not None:
        if reasoning_effort not in _EFFORTS:
            raise ValueError(f"reasoning_effort is low, medium or high, not {reasoning_effort!r}")
        fields["reasoning_effort"] = _EFFORTS[reasoning_effort]
    return fields


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
    images: Sequence[ImageLike] = (),
) -> dict[str, Any]:
    """The fields GenerateRequest and GenerateStreamRequest share. A ``system`` text (with a
    ``prompt``) becomes a two-message conversation; so do ``images`` (with the prompt's text)."""
    chat = [message_pb(m) for m in messages]
    if images and prompt is None:
        raise ValueError("images go with a prompt; in messages, give them on a Message")
    if system is not None:
        chat.insert(0, pb.ChatMessage(role=pb.ROLE_SYSTEM, content=system))
    if prompt is not None and (system is not None or images):
        chat.append(message_pb(Message("user", prompt, images=[as_image(i) for i in images])))
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


def _calls(calls: Iterable[pb.ToolCall]) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(c.id, c.name, c.arguments, c.signature) for c in calls)


def _block(b: pb.ReasoningBlock) -> ReasoningBlock:
    known = b.format in pb.ReasoningBlockFormat.values()
    name = (
        pb.ReasoningBlockFormat.Name(b.format).removeprefix("REASONING_BLOCK_FORMAT_").lower()
        if known
        else str(int(b.format))  # newer than these stubs: echoed back as the same number
    )
    return ReasoningBlock(cast(ReasoningBlockFormat, name), b.text, b.signature, b.data)


def _blocks(blocks: Iterable[pb.ReasoningBlock]) -> tuple[ReasoningBlock, ...]:
    return tuple(_block(b) for b in blocks)


_KINDS: dict[int, ReasoningKind] = {
    pb.REASONING_KIND_TEXT: "text",
    pb.REASONING_KIND_SUMMARY: "summary",
}


def _kind(value: int) -> ReasoningKind | None:
    return _KINDS.get(value)


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
        tool_calls=_calls(r.tool_calls),
        reasoning=r.reasoning,
        reasoning_kind=_kind(r.reasoning_kind) if r.reasoning else None,
        reasoning_blocks=_blocks(r.reasoning_blocks),
    )


def event(r: pb.GenerateStreamResponse) -> StreamEvent | None:
    """The typed event (None for an event kind this client does not know yet)."""
    kind = r.WhichOneof("event")
    if kind == "delta":
        return Delta(r.delta.text)
    if kind == "tool_call":
        t = r.tool_call
        return ToolCallDelta(index=t.index, id=t.id, name=t.name, arguments=t.arguments)
    if kind == "reasoning":
        return ReasoningDelta(r.reasoning.text, _kind(r.reasoning.kind))
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
            tool_calls=_calls(f2.tool_calls),
            reasoning_blocks=_blocks(f2.reasoning_blocks),
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
