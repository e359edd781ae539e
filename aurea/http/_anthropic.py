"""``POST /v1/messages`` request bodies (Anthropic's Messages API) to domain calls, with
Anthropic's field names in every violation.

Content blocks map onto the domain's messages: ``text`` and ``image`` blocks to a turn's text and
parts, ``tool_use`` to an assistant's tool calls, each ``tool_result`` to a ``Role.TOOL`` message
(ahead of the rest of its user turn), signed ``thinking`` / ``redacted_thinking`` to the
assistant's reasoning blocks, sent back to the provider unchanged. ``thinking.budget_tokens``
becomes a reasoning effort. What Aurea cannot honour is refused (documents, server tools,
citations, a tool result with images); what changes nothing Aurea does is accepted and ignored
(``top_k``, ``metadata``, ``service_tier``, ``cache_control``, a tool result's ``is_error``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aurea.errors import FieldViolation, InvalidRequest
from aurea.http import _anthropic_options as opts
from aurea.http._anthropic_blocks import (
    _raise,
    _text_block,
    _turn,
)
from aurea.http._inputs import (
    BAD_TEXT,
    MAX_MODEL_NAME,
    aurea_inputs,
    deadline_of,
    is_int,
    is_number,
    is_text,
)
from aurea.inference import GenerateCall, rich
from aurea.inference.calls import FailoverMode
from aurea.providers._base import (
    ChatMessage,
    GenerationOptions,
    Role,
)
from aurea.security import input_limits, limit_text

MAX_STOP_SEQUENCES = 16
# Accepted and ignored: they change nothing about the answer Aurea gives.
_IGNORED = frozenset({"metadata", "service_tier", "top_k", "cache_control"})
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "aurea",
        *_IGNORED,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagesRequest:
    call: GenerateCall
    stream: bool


def _messages(raw: Any, bad: list[FieldViolation]) -> list[ChatMessage]:
    if not isinstance(raw, list) or not raw:
        bad.append(FieldViolation("messages", "is required: a non-empty list of messages"))
        return []
    most = input_limits().max_messages
    if len(raw) > most:
        bad.append(
            FieldViolation(
                "messages", f"at most {most} messages are allowed {limit_text('max_messages')}"
            )
        )
        return []
    out: list[ChatMessage] = []
    called: set[str] = set()
    for i, m in enumerate(raw):
        turn = _turn(m, f"messages[{i}]", bad)
        for message in turn:
            called.update(c.id for c in message.tool_calls)
            if message.role is Role.TOOL and message.tool_call_id not in called:
                bad.append(
                    FieldViolation(
                        f"messages[{i}].content",
                        "a tool_result answers no tool_use of an earlier assistant message: "
                        f"{message.tool_call_id!r}",
                    )
                )
        out.extend(turn)
    return out


def _system(raw: Any, bad: list[FieldViolation]) -> ChatMessage | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        if not is_text(raw):
            bad.append(FieldViolation("system", BAD_TEXT))
            return None
        return ChatMessage(Role.SYSTEM, raw) if raw else None
    if not isinstance(raw, list):
        bad.append(FieldViolation("system", "must be a string or a list of text blocks"))
        return None
    texts: list[str] = []
    for j, block in enumerate(raw):
        at = f"system[{j}]"
        if not isinstance(block, Mapping) or block.get("type") != "text":
            bad.append(FieldViolation(f"{at}.type", 'must be "text"'))
            continue
        text = _text_block(block, at, bad)
        if text is not None:
            texts.append(text)
    text = "\n\n".join(texts)  # blocks are separate paragraphs of one system prompt
    return ChatMessage(Role.SYSTEM, text) if text else None


def _stop(raw: Any, bad: list[FieldViolation]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_STOP_SEQUENCES:
        bad.append(
            FieldViolation("stop_sequences", f"must be a list of at most {MAX_STOP_SEQUENCES}")
        )
        return ()
    for i, s in enumerate(raw):
        if not isinstance(s, str) or not s or not is_text(s):
            bad.append(FieldViolation(f"stop_sequences[{i}]", "must be a non-empty string"))
    return tuple(s for s in raw if isinstance(s, str) and s)


def _numbers(body: Mapping[str, Any], bad: list[FieldViolation]) -> tuple[float | None, ...]:
    temperature = body.get("temperature")
    if temperature is not None and not (is_number(temperature) and 0 <= temperature <= 1):
        bad.append(FieldViolation("temperature", "must be a number in [0, 1]"))
        temperature = None
    top_p = body.get("top_p")
    if top_p is not None and not (is_number(top_p) and 0 < top_p <= 1):
        bad.append(FieldViolation("top_p", "must be a number in (0, 1]"))
        top_p = None
    top_k = body.get("top_k")  # accepted and ignored: not every provider has it
    if top_k is not None and not (is_int(top_k) and top_k >= 0):
        bad.append(FieldViolation("top_k", "must be a whole number, 0 or more"))
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        bad.append(FieldViolation("metadata", "must be an object"))
    return (
        float(temperature) if temperature is not None else None,
        float(top_p) if top_p is not None else None,
    )


def parse_messages(
    body: Any, headers: Mapping[str, str], request_id: str, started: float, principal: str = ""
) -> MessagesRequest:
    """Validate a Messages API body (every bad field named in one 400). ``started`` is the
    door's clock when the request arrived: an ``aurea.timeout_ms`` counts from it."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object")
    bad: list[FieldViolation] = []
    for key in body:
        if key not in _KNOWN:
            bad.append(FieldViolation(str(key)[:64], "is not a recognized or supported field"))
    model = body.get("model")
    if not isinstance(model, str) or not 0 < len(model) <= MAX_MODEL_NAME:
        bad.append(
            FieldViolation("model", f"is required: a string of 1 to {MAX_MODEL_NAME} characters")
        )
        model = ""
    max_tokens = body.get("max_tokens")
    most = input_limits().max_tokens
    if max_tokens is None:
        bad.append(FieldViolation("max_tokens", "is required"))
    elif not (is_int(max_tokens) and 1 <= max_tokens <= most):
        bad.append(
            FieldViolation(
                "max_tokens", f"must be a whole number in [1, {most}] {limit_text('max_tokens')}"
            )
        )
        max_tokens = None
    system = _system(body.get("system"), bad)
    messages = _messages(body.get("messages"), bad)
    if system is not None:
        messages.insert(0, system)
    chars = sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in messages)
    most = input_limits().max_prompt_chars
    if chars > most:
        bad.append(
            FieldViolation(
                "messages",
                f"the prompt is {chars} characters; at most {most} are allowed "
                f"{limit_text('max_prompt_chars')}",
            )
        )
    temperature, top_p = _numbers(body, bad)
    stop = _stop(body.get("stop_sequences"), bad)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        bad.append(FieldViolation("stream", "must be true or false"))
    tools = opts.tools(body.get("tools"), bad)
    choice, parallel = opts.tool_choice(body.get("tool_choice"), bad)
    effort = opts.thinking(body.get("thinking"), max_tokens, bad)
    chosen, fmt = opts.output_config(body.get("output_config"), bad)
    effort = chosen or effort
    if choice is not None:
        rich.check_conversation((), tools, choice, bad)
    ext = aurea_inputs(body, headers, bad)
    _raise(bad)
    options = None
    if tools or choice is not None or parallel is not None or effort or fmt:
        options = GenerationOptions(
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=parallel,
            response_format=fmt,
            reasoning=effort,
        )
    call = GenerateCall(
        request_id=request_id,
        messages=tuple(messages),
        model=model,
        max_tokens=max_tokens or 0,
        temperature=temperature,
        top_p=top_p,
        stop=stop,
        job_id=ext.job_id,
        principal=principal,
        policy=ext.policy,
        fallbacks=ext.fallbacks,
        cache_bypass=ext.cache_bypass,
        labels=ext.labels,
        usage_interval=0,  # the stream's usage goes out once, in message_delta
        deadline=deadline_of(ext, started),
        # Anthropic's stream cannot tell a client to discard text: a stream cut after output
        # began continues by prefill, or ends with an error event.
        failover=FailoverMode.CONTINUE,
        options=options,
    )
    return MessagesRequest(call=call, stream=stream is True)
