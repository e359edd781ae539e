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

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aurea.errors import FieldViolation, InvalidRequest
from aurea.http import _anthropic_options as opts
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
    ContentPart,
    GenerationOptions,
    ReasoningBlock,
    ReasoningFormat,
    Role,
    TextPart,
    ToolCall,
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


def _raise(bad: list[FieldViolation]) -> None:
    if bad:
        summary = "; ".join(f"{v.field}: {v.description}" for v in bad)
        raise InvalidRequest(f"invalid request: {summary}", bad)


def _text_block(block: Mapping[str, Any], at: str, bad: list[FieldViolation]) -> str | None:
    text = block.get("text")
    if not isinstance(text, str):
        bad.append(FieldViolation(f"{at}.text", "is required: a string"))
        return None
    if not is_text(text):
        bad.append(FieldViolation(f"{at}.text", BAD_TEXT))
        return None
    if block.get("citations"):
        bad.append(FieldViolation(f"{at}.citations", "citations are not supported"))
        return None
    return text


def _image_block(
    block: Mapping[str, Any], role: Role, at: str, bad: list[FieldViolation]
) -> ContentPart | None:
    if role is not Role.USER:
        bad.append(FieldViolation(at, "images are allowed in user messages only"))
        return None
    source = block.get("source")
    kind = source.get("type") if isinstance(source, Mapping) else None
    where = f"{at}.source"
    if kind == "url" and isinstance(source, Mapping) and isinstance(source.get("url"), str):
        url = source["url"]
        if url.startswith("data:"):  # only http(s) here: inline bytes come as base64
            bad.append(FieldViolation(f"{where}.url", "must be an http(s) URL"))
            return None
        return rich.image_part(url=url, data=b"", media_type="", detail="", field=where, bad=bad)
    if kind == "base64" and isinstance(source, Mapping):
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str) or not data:
            bad.append(FieldViolation(where, "needs media_type and data (base64)"))
            return None
        mine: list[FieldViolation] = []
        image = rich.image_part(
            url=f"data:{media_type};base64,{data}",
            data=b"",
            media_type=media_type,
            detail="",
            field=where,
            bad=mine,
        )
        for v in mine:  # the core speaks of the data: URL made here from the two fields
            name = f"{where}.data" if v.field == f"{where}.url" else v.field
            bad.append(FieldViolation(name, v.description))
        return image
    bad.append(FieldViolation(where, 'must be {type: "base64", ...} or {type: "url", url}'))
    return None


def _tool_use(block: Mapping[str, Any], at: str, bad: list[FieldViolation]) -> ToolCall | None:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    ok = True
    if not isinstance(call_id, str) or not 0 < len(call_id) <= rich.MAX_TOOL_CALL_ID:
        bad.append(FieldViolation(f"{at}.id", f"must be 1 to {rich.MAX_TOOL_CALL_ID} characters"))
        ok = False
    if not isinstance(name, str) or not rich.name_ok(name):
        bad.append(FieldViolation(f"{at}.name", rich.NAME_RULE))
        ok = False
    text = ""
    if not isinstance(arguments, Mapping):
        bad.append(FieldViolation(f"{at}.input", "must be an object"))
        ok = False
    else:
        text = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
        if len(text) > rich.MAX_ARGUMENTS_CHARS or not is_text(text):
            bad.append(
                FieldViolation(
                    f"{at}.input", f"must be at most {rich.MAX_ARGUMENTS_CHARS} characters of JSON"
                )
            )
            ok = False
    if not ok:
        return None
    assert isinstance(call_id, str) and isinstance(name, str)
    return ToolCall(id=call_id, name=name, arguments=text)


def _tool_result(
    block: Mapping[str, Any], at: str, bad: list[FieldViolation]
) -> ChatMessage | None:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not 0 < len(call_id) <= rich.MAX_TOOL_CALL_ID:
        bad.append(
            FieldViolation(f"{at}.tool_use_id", f"must be 1 to {rich.MAX_TOOL_CALL_ID} characters")
        )
        return None
    content = block.get("content", "")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts: list[str] = []
        for j, part in enumerate(content):
            where = f"{at}.content[{j}]"
            if not isinstance(part, Mapping) or part.get("type") != "text":
                bad.append(FieldViolation(where, "only text blocks are supported in tool results"))
                return None
            found = _text_block(part, where, bad)
            if found is None:
                return None
            texts.append(found)
        text = "".join(texts)
    else:
        bad.append(FieldViolation(f"{at}.content", "must be a string or a list of text blocks"))
        return None
    if not is_text(text):
        bad.append(FieldViolation(f"{at}.content", BAD_TEXT))
        return None
    if block.get("is_error") is not None and not isinstance(block.get("is_error"), bool):
        bad.append(FieldViolation(f"{at}.is_error", "must be true or false"))
        return None
    return ChatMessage(Role.TOOL, text, tool_call_id=call_id)


def _reasoning(
    block: Mapping[str, Any], at: str, bad: list[FieldViolation]
) -> ReasoningBlock | None:
    if block.get("type") == "redacted_thinking":
        data = block.get("data")
        if not isinstance(data, str) or not data:
            bad.append(FieldViolation(f"{at}.data", "is required: a non-empty string"))
            return None
        return ReasoningBlock(format=ReasoningFormat.ANTHROPIC_REDACTED, data=data)
    thinking, signature = block.get("thinking"), block.get("signature", "")
    if not isinstance(thinking, str) or not is_text(thinking):
        bad.append(FieldViolation(f"{at}.thinking", "is required: a string"))
        return None
    if not isinstance(signature, str):
        bad.append(FieldViolation(f"{at}.signature", "must be a string"))
        return None
    if not signature:
        return None  # unsigned reasoning text (Aurea's, from a model that signs nothing): no
        # provider takes it back, so it is left out of the turn
    return ReasoningBlock(
        format=ReasoningFormat.ANTHROPIC_THINKING, text=thinking, signature=signature
    )


def _turn(m: Any, at: str, bad: list[FieldViolation]) -> list[ChatMessage]:
    """One Anthropic message as the domain's messages: its tool results first (one each), then
    the rest of the turn. Empty when bad."""
    if not isinstance(m, Mapping):
        bad.append(FieldViolation(at, "must be an object with role and content"))
        return []
    name = m.get("role")
    if name not in ("user", "assistant"):
        bad.append(FieldViolation(f"{at}.role", 'must be "user" or "assistant"'))
        return []
    role = Role.USER if name == "user" else Role.ASSISTANT
    content = m.get("content")
    if isinstance(content, str):
        if not is_text(content):
            bad.append(FieldViolation(f"{at}.content", BAD_TEXT))
            return []
        if not content and role is Role.USER:
            bad.append(FieldViolation(f"{at}.content", "must not be empty"))
            return []
        return [ChatMessage(role, content)]
    if not isinstance(content, list) or not content:
        bad.append(
            FieldViolation(f"{at}.content", "must be a string or a non-empty list of blocks")
        )
        return []
    if len(content) > rich.MAX_PARTS:
        bad.append(FieldViolation(f"{at}.content", f"at most {rich.MAX_PARTS} content blocks"))
        return []
    before = len(bad)
    results: list[ChatMessage] = []
    texts: list[str] = []
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    blocks: list[ReasoningBlock] = []
    images = False
    for j, block in enumerate(content):
        where = f"{at}.content[{j}]"
        kind = block.get("type") if isinstance(block, Mapping) else None
        assert kind is None or isinstance(block, Mapping)
        if kind == "text":
            text = _text_block(block, where, bad)
            if text is not None:
                texts.append(text)
                parts.append(TextPart(text))
        elif kind == "image":
            image = _image_block(block, role, where, bad)
            if image is not None:
                parts.append(image)
                images = True
        elif kind == "tool_use" and role is Role.ASSISTANT:
            call = _tool_use(block, where, bad)
            if call is not None:
                calls.append(call)
        elif kind == "tool_result" and role is Role.USER:
            result = _tool_result(block, where, bad)
            if result is not None:
                results.append(result)
        elif kind in ("thinking", "redacted_thinking") and role is Role.ASSISTANT:
            found = _reasoning(block, where, bad)
            if found is not None:
                blocks.append(found)
        elif kind in ("tool_use", "tool_result", "thinking", "redacted_thinking"):
            bad.append(FieldViolation(f"{where}.type", f"{kind!r} blocks are not allowed here"))
        else:
            bad.append(
                FieldViolation(
                    f"{where}.type",
                    "must be text, image, tool_use, tool_result, thinking or redacted_thinking",
                )
            )
    if len(bad) > before:
        return []
    text = "".join(texts)
    out = results
    if text or images or calls or blocks:
        out.append(
            ChatMessage(
                role,
                text,
                parts=tuple(parts) if images else (),
                tool_calls=tuple(calls),
                reasoning_blocks=tuple(blocks),
            )
        )
    return out


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
