"""``POST /v1/chat/completions`` request bodies to domain calls, with OpenAI's field names.

Every bad field is collected, so one 400 names them all (``param`` is the first). What OpenAI
accepts and Aurea cannot honour is refused, never ignored (``n`` > 1, audio, log probabilities):
a client that asks for them must not get an answer that silently lacks them. Tools, tool choice,
``response_format``, image parts and tool turns are read in ``_rich`` with the core's bounds.
Fields that change nothing Aurea does (``user``, ``metadata``, ``store``, ...) are accepted and
ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aurea.errors import FieldViolation, InvalidRequest
from aurea.http import _rich
from aurea.http._inputs import (
    BAD_TEXT,
    MAX_MODEL_NAME,
    MAX_STOP,
    AureaInputs,
    aurea_inputs,
    deadline_of,
    is_int,
    is_number,
    is_text,
)
from aurea.inference import GenerateCall, rich
from aurea.inference.calls import FailoverMode
from aurea.providers._base import ChatMessage, ContentPart, Role, ToolCall
from aurea.security import input_limits, limit_text

_ROLES = {
    "system": Role.SYSTEM,
    "developer": Role.SYSTEM,
    "user": Role.USER,
    "assistant": Role.ASSISTANT,
    "tool": Role.TOOL,
}
# Accepted and ignored: they change nothing about the answer Aurea gives.
_IGNORED = frozenset(
    {
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)
_RICH = ("tools", "tool_choice", "parallel_tool_calls")
# OpenAI's deprecated forms of tools: refused with a pointer to the current ones.
_DEPRECATED = ("functions", "function_call")
# Refused: Aurea has no way to honour them with every provider.
_UNSUPPORTED = {
    "logprobs": "log probabilities are not supported",
    "top_logprobs": "log probabilities are not supported",
    "logit_bias": "logit bias is not supported",
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "reasoning_effort": "reasoning effort is not supported",
    "verbosity": "verbosity is not supported",
}
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "n",
        "stream",
        "stream_options",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
        "modalities",
        "aurea",
        *_IGNORED,
        *_RICH,
        *_DEPRECATED,
        *_UNSUPPORTED,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    call: GenerateCall
    stream: bool
    include_usage: bool
    aurea: AureaInputs


def _raise(bad: list[FieldViolation]) -> None:
    if bad:
        summary = "; ".join(f"{v.field}: {v.description}" for v in bad)
        raise InvalidRequest(f"invalid request: {summary}", bad)


def _content(
    m: Mapping[str, Any], role: Role, at: str, bad: list[FieldViolation]
) -> tuple[str, tuple[ContentPart, ...]] | None:
    """A message's text and parts (parts only when there are images); None when bad."""
    content = m.get("content")
    if content is None and role is Role.ASSISTANT and m.get("tool_calls"):
        return "", ()  # an assistant turn that only called tools
    if isinstance(content, str):
        if not is_text(content):
            bad.append(FieldViolation(f"{at}.content", BAD_TEXT))
            return None
        return content, ()
    if not isinstance(content, list):
        bad.append(FieldViolation(f"{at}.content", "must be a string or a list of content parts"))
        return None
    return _rich.parts(content, role, f"{at}.content", bad)


def _message(m: Any, at: str, bad: list[FieldViolation]) -> ChatMessage | None:
    if not isinstance(m, Mapping):
        bad.append(FieldViolation(at, "must be an object with role and content"))
        return None
    name = m.get("role")
    role = _ROLES.get(name) if isinstance(name, str) else None
    if name == "function":
        bad.append(FieldViolation(f"{at}.role", "the deprecated role 'function': use 'tool'"))
        return None
    if role is None:
        bad.append(
            FieldViolation(f"{at}.role", "must be system, developer, user, assistant or tool")
        )
        return None
    if m.get("function_call") is not None:
        bad.append(FieldViolation(f"{at}.function_call", "is deprecated: use tool_calls"))
        return None
    calls: tuple[ToolCall, ...] = ()
    if m.get("tool_calls") is not None:
        if role is not Role.ASSISTANT:
            bad.append(FieldViolation(f"{at}.tool_calls", "only on assistant messages"))
            return None
        calls = _rich.tool_calls(m.get("tool_calls"), f"{at}.tool_calls", bad)
    call_id = m.get("tool_call_id")
    if role is Role.TOOL:
        if not isinstance(call_id, str) or not 0 < len(call_id) <= rich.MAX_TOOL_CALL_ID:
            bad.append(
                FieldViolation(
                    f"{at}.tool_call_id",
                    f"must be 1 to {rich.MAX_TOOL_CALL_ID} characters on a tool message",
                )
            )
            return None
    elif call_id is not None:
        bad.append(FieldViolation(f"{at}.tool_call_id", "only on tool messages"))
        return None
    before = len(bad)
    found = _content(m, role, at, bad)
    if found is None or len(bad) > before:
        return None  # its bad parts are named; "empty" would only add noise
    text, parts = found
    if not text and not parts and not calls:
        bad.append(FieldViolation(f"{at}.content", "must not be empty"))
        return None
    if not parts and not calls and role is not Role.TOOL:
        return ChatMessage(role, text)  # the common case: plain text, nothing extra
    return ChatMessage(
        role, text, parts=parts, tool_calls=calls, tool_call_id=call_id if call_id else ""
    )


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
    for i, m in enumerate(raw):
        message = _message(m, f"messages[{i}]", bad)
        if message is not None:
            out.append(message)
    if out and not bad and all(m.role is Role.SYSTEM for m in out):
        bad.append(FieldViolation("messages", "needs at least one user or assistant message"))
    return out


def _unsupported(body: Mapping[str, Any], bad: list[FieldViolation]) -> None:
    for key in _DEPRECATED:
        if body.get(key) is not None:
            bad.append(FieldViolation(key, "is deprecated and not supported: use tools"))
    for key, why in _UNSUPPORTED.items():
        value = body.get(key)
        if value is not None and value is not False and value != {}:
            bad.append(FieldViolation(key, why))
    for key in ("presence_penalty", "frequency_penalty"):
        value = body.get(key)
        if value is not None and value != 0:
            bad.append(FieldViolation(key, "penalties are not supported (0 or null only)"))
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        bad.append(FieldViolation("modalities", "only ['text'] is supported"))
    n = body.get("n")
    if n is not None and n != 1:
        bad.append(FieldViolation("n", "only one choice per call is supported (n = 1)"))


def _stop(raw: Any, bad: list[FieldViolation]) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or len(items) > MAX_STOP:
        bad.append(FieldViolation("stop", f"must be a string or a list of at most {MAX_STOP}"))
        return ()
    for i, s in enumerate(items):
        if not isinstance(s, str) or not s or not is_text(s):
            bad.append(FieldViolation(f"stop[{i}]", "must be a non-empty string"))
    return tuple(s for s in items if isinstance(s, str) and s)


def parse_chat(
    body: Any, headers: Mapping[str, str], request_id: str, started: float, principal: str = ""
) -> ChatRequest:
    """Validate a chat completions body. ``started`` is the door's clock when the request
    arrived: an ``aurea.timeout_ms`` (or ``x-aurea-timeout-ms``) counts from it."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object")
    bad: list[FieldViolation] = []
    for key in body:
        if key not in _KNOWN:
            bad.append(FieldViolation(str(key)[:64], "is not a recognized request argument"))
    _unsupported(body, bad)
    model = body.get("model", "")
    if model is None:
        model = ""
    if not isinstance(model, str) or len(model) > MAX_MODEL_NAME:
        bad.append(
            FieldViolation("model", f"must be a string of at most {MAX_MODEL_NAME} characters")
        )
        model = ""
    messages = _messages(body.get("messages"), bad)
    max_tokens = body.get("max_completion_tokens")
    key = "max_completion_tokens"
    if max_tokens is None:
        max_tokens, key = body.get("max_tokens"), "max_tokens"
    most = input_limits().max_tokens
    if max_tokens is not None and not (is_int(max_tokens) and 1 <= max_tokens <= most):
        bad.append(
            FieldViolation(key, f"must be a whole number in [1, {most}] {limit_text('max_tokens')}")
        )
        max_tokens = None
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
    temperature = body.get("temperature")
    if temperature is not None and not (is_number(temperature) and 0 <= temperature <= 2):
        bad.append(FieldViolation("temperature", "must be a number in [0, 2]"))
        temperature = None
    top_p = body.get("top_p")
    if top_p is not None and not (is_number(top_p) and 0 < top_p <= 1):
        bad.append(FieldViolation("top_p", "must be a number in (0, 1]"))
        top_p = None
    seed = body.get("seed")
    if seed is not None and not (is_int(seed) and -(2**63) <= seed < 2**63):
        bad.append(FieldViolation("seed", "must be a whole number (int64)"))
        seed = None
    stop = _stop(body.get("stop"), bad)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        bad.append(FieldViolation("stream", "must be true or false"))
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if stream is not True:
            bad.append(FieldViolation("stream_options", "is only allowed when stream is true"))
        elif not isinstance(options, Mapping):
            bad.append(FieldViolation("stream_options", "must be an object"))
        else:
            value = options.get("include_usage", False)
            if not isinstance(value, bool):
                bad.append(FieldViolation("stream_options.include_usage", "must be true or false"))
            include_usage = value is True
    ext = aurea_inputs(body, headers, bad)
    options = _rich.options(body, bad)
    tools = options.tools if options is not None else ()
    choice = options.tool_choice if options is not None else None
    if tools or choice is not None or any(m.role is Role.TOOL for m in messages):
        rich.check_conversation(messages, tools, choice, bad)
    _raise(bad)
    call = GenerateCall(
        request_id=request_id,
        messages=tuple(messages),
        model=model,
        max_tokens=max_tokens or 0,
        temperature=float(temperature) if temperature is not None else None,
        top_p=float(top_p) if top_p is not None else None,
        stop=stop,
        seed=seed,
        job_id=ext.job_id,
        principal=principal,
        policy=ext.policy,
        fallbacks=ext.fallbacks,
        cache_bypass=ext.cache_bypass,
        labels=ext.labels,
        usage_interval=0,  # OpenAI's streams carry no running usage: skip counting it
        deadline=deadline_of(ext, started),
        # OpenAI's stream format cannot tell a client to discard text: a stream cut after
        # output began continues by prefill, or ends with the error event.
        failover=FailoverMode.CONTINUE,
        options=options,
    )
    return ChatRequest(call=call, stream=stream is True, include_usage=include_usage, aurea=ext)
