"""Protobuf <-> domain conversion for inference, with request validation.

Validation collects every bad field at once, so a caller fixes a request in one round trip.
"""

from __future__ import annotations

import math
from typing import Any

from aurea.api._rich_convert import (
    _check,
    _message,
    _response_format,
    _tool_choice,
    _tools,
)
from aurea.api._rich_convert import reasoning_blocks_pb as reasoning_blocks_pb
from aurea.errors import FieldViolation, InvalidRequest
from aurea.inference import EmbedCall, FailoverMode, Final, GenerateCall, rich
from aurea.providers._base import (
    ChatMessage,
    FinishReason,
    GenerationOptions,
    ReasoningEffort,
    ReasoningKind,
    Role,
    ToolCall,
    Usage,
)
from aurea.security import input_limits, limit_text
from aurea.types import Policy
from aurea.v1 import inference_pb2 as pb

MAX_MESSAGES = 1000
MAX_TOKENS = 1_000_000
MAX_STOP = 4
MAX_FALLBACKS = 8
MAX_LABELS = 32
MAX_JOB_ID = 128
MAX_EMBED_INPUTS = 2048
MAX_MODEL_NAME = 256

_EFFORTS = {
    pb.REASONING_EFFORT_LOW: ReasoningEffort.LOW,
    pb.REASONING_EFFORT_MEDIUM: ReasoningEffort.MEDIUM,
    pb.REASONING_EFFORT_HIGH: ReasoningEffort.HIGH,
}
REASONING_KIND = {
    ReasoningKind.TEXT: pb.REASONING_KIND_TEXT,
    ReasoningKind.SUMMARY: pb.REASONING_KIND_SUMMARY,
}
_POLICIES = {
    pb.ROUTING_POLICY_COST: Policy.COST,
    pb.ROUTING_POLICY_QUALITY: Policy.QUALITY,
    pb.ROUTING_POLICY_LATENCY: Policy.LATENCY,
    pb.ROUTING_POLICY_BALANCED: Policy.BALANCED,
}
_FAILOVER = {
    pb.MID_STREAM_FAILOVER_UNSPECIFIED: FailoverMode.CONTINUE,
    pb.MID_STREAM_FAILOVER_CONTINUE: FailoverMode.CONTINUE,
    pb.MID_STREAM_FAILOVER_CONTINUE_OR_RESTART: FailoverMode.CONTINUE_OR_RESTART,
    pb.MID_STREAM_FAILOVER_RESTART: FailoverMode.RESTART,
    pb.MID_STREAM_FAILOVER_NONE: FailoverMode.NONE,
}
FINISH = {
    FinishReason.STOP: pb.FINISH_REASON_STOP,
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.CONTENT_FILTER: pb.FINISH_REASON_CONTENT_FILTER,
    FinishReason.TOOL_CALLS: pb.FINISH_REASON_TOOL_CALLS,
    FinishReason.BUDGET_EXCEEDED: pb.FINISH_REASON_BUDGET_EXCEEDED,
    FinishReason.ERROR: pb.FINISH_REASON_ERROR,
    FinishReason.CANCELLED: pb.FINISH_REASON_ERROR,
}


def _raise(bad: list[FieldViolation]) -> None:
    if bad:
        summary = "; ".join(f"{v.field}: {v.description}" for v in bad)
        raise InvalidRequest(f"invalid request: {summary}", bad)


def _labels(labels: Any, bad: list[FieldViolation]) -> None:
    lim = input_limits()
    if len(labels) > lim.max_labels:
        bad.append(
            FieldViolation("labels", f"at most {lim.max_labels} labels {limit_text('max_labels')}")
        )
        return
    for k, v in labels.items():
        if len(k) > lim.max_label_chars or len(v) > lim.max_label_chars:
            bad.append(
                FieldViolation(
                    f"labels[{k[:64]!r}]",
                    f"keys and values of at most {lim.max_label_chars} characters "
                    f"{limit_text('max_label_chars')}",
                )
            )


def generate_call(req: Any, request_id: str, deadline: float | None = None) -> GenerateCall:
    """Validate a GenerateRequest, or a GenerateStreamRequest (its ``request`` and its stream
    options)."""
    bad: list[FieldViolation] = []
    interval = 16
    failover: FailoverMode | None = FailoverMode.CONTINUE
    if isinstance(req, pb.GenerateStreamRequest):
        _check(
            bad,
            0 <= req.usage_interval_deltas <= 10_000,
            "usage_interval_deltas",
            "must be between 0 and 10000",
        )
        interval = req.usage_interval_deltas or 16
        failover = _FAILOVER.get(req.mid_stream_failover)
        _check(
            bad,
            failover is not None,
            "mid_stream_failover",
            "is not a known MidStreamFailover value",
        )
        _check(bad, req.HasField("request"), "request", "is required")
        req = req.request
    lim = input_limits()
    messages: list[ChatMessage] = []
    if req.prompt and req.messages:
        bad.append(FieldViolation("prompt", "give either prompt or messages, not both"))
    elif req.messages:
        if len(req.messages) > lim.max_messages:
            # Not looked into: a huge list costs no per-message work.
            bad.append(
                FieldViolation(
                    "messages",
                    f"at most {lim.max_messages} messages are allowed {limit_text('max_messages')}",
                )
            )
            _raise(bad)
        for i, m in enumerate(req.messages):
            message = _message(m, i, bad)
            if message is not None:
                messages.append(message)
        _check(
            bad,
            any(m.role is not Role.SYSTEM for m in messages) or bool(bad),
            "messages",
            "needs at least one user or assistant message",
        )
    else:
        _check(bad, bool(req.prompt), "prompt", "must not be empty (or give messages instead)")
        messages.append(ChatMessage(Role.USER, req.prompt))
    # Refusals' texts are formatted only when a check fails: this runs on every call.
    if not 0 <= req.max_tokens <= lim.max_tokens:
        bad.append(
            FieldViolation(
                "max_tokens",
                f"must be between 1 and {lim.max_tokens}, or 0 for the model's default "
                f"{limit_text('max_tokens')}",
            )
        )
    chars = sum(
        len(m.content)
        + sum(len(c.arguments) + len(c.signature) for c in m.tool_calls)
        + sum(len(b.text) + len(b.signature) + len(b.data) for b in m.reasoning_blocks)
        for m in messages
    )
    if chars > lim.max_prompt_chars:
        bad.append(
            FieldViolation(
                "messages" if req.messages else "prompt",
                f"the prompt is {chars} characters; at most {lim.max_prompt_chars} are allowed "
                f"{limit_text('max_prompt_chars')}",
            )
        )
    temperature = req.temperature if req.HasField("temperature") else None
    if temperature is not None:
        _check(
            bad,
            math.isfinite(temperature) and 0.0 <= temperature <= 2.0,
            "temperature",
            "must be between 0 and 2",
        )
    top_p = req.top_p if req.HasField("top_p") else None
    if top_p is not None:
        _check(
            bad,
            math.isfinite(top_p) and 0.0 < top_p <= 1.0,
            "top_p",
            "must be greater than 0 and at most 1",
        )
    if len(req.stop) > MAX_STOP:
        bad.append(FieldViolation("stop", f"at most {MAX_STOP} stop sequences"))
    for i, s in enumerate(req.stop):
        _check(bad, bool(s), f"stop[{i}]", "must not be empty")
    if len(req.job_id) > MAX_JOB_ID:
        bad.append(FieldViolation("job_id", f"at most {MAX_JOB_ID} characters"))
    if len(req.model) > MAX_MODEL_NAME:
        bad.append(FieldViolation("model", f"at most {MAX_MODEL_NAME} characters"))
    policy = None
    if req.routing_policy:
        policy = _POLICIES.get(req.routing_policy)
        _check(bad, policy is not None, "routing_policy", "is not a known RoutingPolicy value")
    if len(req.fallback_models) > MAX_FALLBACKS:
        bad.append(FieldViolation("fallback_models", f"at most {MAX_FALLBACKS} fallback models"))
    for i, f in enumerate(req.fallback_models):
        _check(
            bad,
            0 < len(f) <= MAX_MODEL_NAME,
            f"fallback_models[{i}]",
            f"must be 1 to {MAX_MODEL_NAME} characters",
        )
    if req.labels:
        _labels(req.labels, bad)
    if len(req.tools) > lim.max_tools:
        text = f"at most {lim.max_tools} tools {limit_text('max_tools')}"
        bad.append(FieldViolation("tools", text))
    tools = _tools(req, bad) if req.tools else ()
    choice = _tool_choice(req, bad)
    response_format = _response_format(req, bad)
    reasoning = None
    if req.reasoning_effort:
        reasoning = _EFFORTS.get(req.reasoning_effort)
        _check(bad, reasoning is not None, "reasoning_effort", "is not a known ReasoningEffort")
    if tools or choice is not None or any(m.role is Role.TOOL for m in messages):
        rich.check_conversation(messages, tools, choice, bad)
    _raise(bad)
    parallel = req.parallel_tool_calls if req.HasField("parallel_tool_calls") else None
    options = None
    if tools or choice or parallel is not None or response_format or reasoning is not None:
        options = GenerationOptions(
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=parallel,
            response_format=response_format,
            reasoning=reasoning,
        )
    return GenerateCall(
        request_id=request_id,
        messages=tuple(messages),
        model=req.model,
        max_tokens=req.max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=tuple(req.stop),
        seed=req.seed if req.HasField("seed") else None,
        job_id=req.job_id,
        policy=policy,
        fallbacks=tuple(req.fallback_models),
        cache_bypass=req.cache_bypass,
        labels=dict(req.labels),
        usage_interval=interval,
        deadline=deadline,
        failover=failover or FailoverMode.CONTINUE,
        options=options,
    )


def embed_call(req: pb.EmbedRequest, request_id: str, deadline: float | None = None) -> EmbedCall:
    bad: list[FieldViolation] = []
    lim = input_limits()
    _check(
        bad,
        1 <= len(req.inputs) <= lim.max_embed_inputs,
        "inputs",
        f"must hold 1 to {lim.max_embed_inputs} texts {limit_text('max_embed_inputs')}",
    )
    chars = sum(len(text) for text in req.inputs)
    _check(
        bad,
        chars <= lim.max_prompt_chars,
        "inputs",
        f"the inputs are {chars} characters; at most {lim.max_prompt_chars} are allowed "
        f"{limit_text('max_prompt_chars')}",
    )
    for i, text in enumerate(req.inputs):
        _check(bad, bool(text), f"inputs[{i}]", "must not be empty")
    _check(bad, len(req.job_id) <= MAX_JOB_ID, "job_id", f"at most {MAX_JOB_ID} characters")
    _check(bad, len(req.model) <= MAX_MODEL_NAME, "model", f"at most {MAX_MODEL_NAME} characters")
    _raise(bad)
    return EmbedCall(
        request_id=request_id,
        inputs=tuple(req.inputs),
        model=req.model,
        job_id=req.job_id,
        deadline=deadline,
    )


def usage_pb(u: Usage) -> pb.Usage:
    return pb.Usage(
        input_tokens=u.input_tokens,
        cached_input_tokens=u.cached_input_tokens,
        output_tokens=u.output_tokens,
        reasoning_tokens=u.reasoning_tokens,
        source=pb.USAGE_SOURCE_ESTIMATED if u.estimated else pb.USAGE_SOURCE_PROVIDER_REPORTED,
    )


def tool_calls_pb(calls: tuple[ToolCall, ...]) -> list[pb.ToolCall]:
    return [
        pb.ToolCall(id=c.id, name=c.name, arguments=c.arguments, signature=c.signature)
        for c in calls
    ]


def final_pb(f: Final) -> pb.StreamFinal:
    return pb.StreamFinal(
        finish_reason=FINISH[f.finish_reason],
        usage=usage_pb(f.usage),
        cost_nanos=f.cost_nanos,
        latency_ms=f.latency_s * 1e3,
        time_to_first_token_ms=f.ttft_s * 1e3,
        model=f.model,
        provider=f.provider,
        attempts=f.attempts,
        tool_calls=tool_calls_pb(f.tool_calls) if f.tool_calls else None,
        reasoning_blocks=reasoning_blocks_pb(f.reasoning_blocks) if f.reasoning_blocks else None,
    )
