"""``POST /v1/chat/completions`` request bodies to domain calls, with OpenAI's field names.

Every bad field is collected, so one 400 names them all (``param`` is the first). What OpenAI
accepts and Aurea cannot honour yet is refused, never ignored: a client that asks for tools, a
JSON schema or an image must not get an answer that silently lacks them. Tools, tool choice,
``response_format`` and image parts arrive with rich generation (issue 15); ``parse_chat``
is where they will be read into the call. Fields that change nothing Aurea does (``user``,
``metadata``, ``store``, ...) are accepted and ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aurea.errors import FieldViolation, InvalidRequest
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
from aurea.inference import GenerateCall
from aurea.inference.calls import FailoverMode
from aurea.providers._base import ChatMessage, Role
from aurea.security import input_limits, limit_text

NOT_YET = (
    "is not supported yet; tools, tool choice, JSON-schema output and images come with rich "
    "generation"
)
_ROLES = {
    "system": Role.SYSTEM,
    "developer": Role.SYSTEM,
    "user": Role.USER,
    "assistant": Role.ASSISTANT,
}
_LATER_ROLES = frozenset({"tool", "function"})
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
        "parallel_tool_calls",  # meaningless without tools, which are refused
    }
)
# Refused until rich generation (issue 15) reads them into the call.
_LATER = ("tools", "tool_choice", "functions", "function_call")
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
        *_LATER,
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


def _text(content: Any, where: str, bad: list[FieldViolation]) -> str | None:
    """The text of a message's content: a string, or a list of ``text`` parts (joined)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        bad.append(FieldViolation(where, "must be a string or a list of content parts"))
        return None
    texts: list[str] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("image_url", "input_audio", "file"):
            bad.append(FieldViolation(at, f"a content part of type {kind!r} {NOT_YET}"))
        else:
            bad.append(FieldViolation(at, "must be a content part {type: 'text', text: '...'}"))
    return "".join(texts)


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
        at = f"messages[{i}]"
        if not isinstance(m, Mapping):
            bad.append(FieldViolation(at, "must be an object with role and content"))
            continue
        name = m.get("role")
        role = _ROLES.get(name) if isinstance(name, str) else None
        if name in _LATER_ROLES:
            bad.append(FieldViolation(f"{at}.role", f"the role {name!r} {NOT_YET}"))
            continue
        if role is None:
            bad.append(FieldViolation(f"{at}.role", "must be system, developer, user or assistant"))
            continue
        if m.get("tool_calls") or m.get("function_call"):
            bad.append(FieldViolation(f"{at}.tool_calls", f"tool calls {NOT_YET}"))
            continue
        text = _text(m.get("content"), f"{at}.content", bad)
        if text is None:
            continue
        if not text:
            bad.append(FieldViolation(f"{at}.content", "must not be empty"))
            continue
        if not is_text(text):
            bad.append(FieldViolation(f"{at}.content", BAD_TEXT))
            continue
        out.append(ChatMessage(role, text))
    if out and not bad and all(m.role is Role.SYSTEM for m in out):
        bad.append(FieldViolation("messages", "needs at least one user or assistant message"))
    return out


def _unsupported(body: Mapping[str, Any], bad: list[FieldViolation]) -> None:
    for key in _LATER:
        if body.get(key) is not None:
            bad.append(FieldViolation(key, NOT_YET))
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, Mapping) and fmt.get("type") == "text"):
        bad.append(FieldViolation("response_format", f"anything but {{'type': 'text'}} {NOT_YET}"))
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
    chars, most = sum(len(m.content) for m in messages), input_limits().max_prompt_chars
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
    )
    return ChatRequest(call=call, stream=stream is True, include_usage=include_usage, aurea=ext)
