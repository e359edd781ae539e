"""Domain results to OpenAI's JSON shapes: chat completions, stream chunks, usage blocks,
embeddings, the model list and error bodies, plus the headers the door adds.

Aurea's extras ride where OpenAI clients ignore them: an ``aurea`` object beside the standard
fields (provider, Aurea's own finish reason, attempts, timings) and ``usage.aurea`` (the cost
in nano-dollars, and whether the counts are estimates).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from aurea.api.status import openai_error, retry_delay_s, row_for
from aurea.errors import BudgetExceeded
from aurea.inference import EmbedResult, Final
from aurea.providers._base import FinishReason, ToolCall, ToolCallDelta, Usage

# OpenAI's finish reasons; Aurea's own (budget) is the nearest one, with the real one in ``aurea``.
FINISH = {
    FinishReason.STOP: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.CONTENT_FILTER: "content_filter",
    FinishReason.TOOL_CALLS: "tool_calls",
    FinishReason.BUDGET_EXCEEDED: "length",
}

HEADER_REQUEST_ID = "x-request-id"
HEADER_COST = "x-aurea-cost-nanos"
HEADER_MODEL = "x-aurea-model"
HEADER_PROVIDER = "x-aurea-provider"


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def usage_block(usage: Usage, cost_nanos: int) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "aurea": {"cost_nanos": cost_nanos, "estimated": usage.estimated},
    }


def aurea_block(final: Final, request_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "provider": final.provider,
        "finish_reason": final.finish_reason.value,
        "attempts": final.attempts,
        "latency_ms": round(final.latency_s * 1e3, 3),
        "ttft_ms": round(final.ttft_s * 1e3, 3),
        "route_reason": final.route_reason,
        "cost_nanos": final.cost_nanos,
    }


def tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def tool_call_delta(piece: ToolCallDelta) -> dict[str, Any]:
    """One piece as OpenAI streams it: the first piece of a call carries its id, type and name
    (and ``arguments``, possibly empty); later pieces carry only the next argument fragment."""
    if piece.id or piece.name:
        return {
            "index": piece.index,
            "id": piece.id,
            "type": "function",
            "function": {"name": piece.name, "arguments": piece.arguments},
        }
    return {"index": piece.index, "function": {"arguments": piece.arguments}}


def message(final: Final) -> dict[str, Any]:
    """The answer's message; OpenAI sends ``content: null`` for an answer of tool calls only,
    and ``tool_calls`` only when there are some."""
    content: str | None = final.text
    if final.tool_calls and not content:
        content = None
    out: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if final.tool_calls:
        out["tool_calls"] = [tool_call(c) for c in final.tool_calls]
    return out


def completion(final: Final, request_id: str, created: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": created,
        "model": final.model,
        "choices": [
            {
                "index": 0,
                "message": message(final),
                "logprobs": None,
                "finish_reason": FINISH.get(final.finish_reason, "stop"),
            }
        ],
        "usage": usage_block(final.usage, final.cost_nanos),
        "system_fingerprint": None,
        "aurea": aurea_block(final, request_id),
    }


class ChunkFormat:
    """The SSE frames of one stream. A delta's frame is built from a prefix and suffix made
    once per stream, so the hot path is one ``json.dumps`` of the text."""

    __slots__ = ("_base", "_prefix", "_suffix", "include_usage", "request_id")

    def __init__(self, request_id: str, created: int, model: str, include_usage: bool) -> None:
        self.request_id = request_id
        self.include_usage = include_usage
        self._base: dict[str, Any] = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        head = dumps(self._base)[:-1]  # without the closing brace
        self._prefix = head + b',"choices":[{"index":0,"delta":{"content":'
        tail = b'},"logprobs":null,"finish_reason":null}]'
        self._suffix = tail + (b',"usage":null}\n\n' if include_usage else b"}\n\n")

    def delta(self, text: str) -> bytes:
        return b"data: " + self._prefix + dumps(text) + self._suffix

    def first(self, text: str) -> bytes:
        """The first frame: OpenAI opens every stream with the assistant's role."""
        return self._frame({"role": "assistant", "content": text}, None)

    def tool_call(self, piece: ToolCallDelta, first: bool) -> bytes:
        """A tool-call piece's frame; the stream's first frame also carries the role."""
        delta: dict[str, Any] = {"tool_calls": [tool_call_delta(piece)]}
        if first:
            delta = {"role": "assistant", "content": None, **delta}
        return self._frame(delta, None)

    def _frame(self, delta: Mapping[str, Any], finish: str | None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        payload = {**self._base, "choices": [choice], **extra}
        if self.include_usage:
            payload.setdefault("usage", None)
        return b"data: " + dumps(payload) + b"\n\n"

    def end(self, final: Final) -> bytes:
        """The finish frame, the usage frame when asked for, and ``[DONE]``: one write."""
        out = self._frame(
            {},
            FINISH.get(final.finish_reason, "stop"),
            aurea=aurea_block(final, self.request_id),
        )
        if self.include_usage:
            payload = {
                **self._base,
                "choices": [],
                "usage": usage_block(final.usage, final.cost_nanos),
            }
            out += b"data: " + dumps(payload) + b"\n\n"
        return out + b"data: [DONE]\n\n"


def error_frame(exc: BaseException, request_id: str) -> bytes:
    """An in-band error event: the stream then ends without ``[DONE]``."""
    _, body = openai_error(exc, request_id)
    return b"data: " + dumps(body) + b"\n\n"


def embeddings(result: EmbedResult, vectors: list[Any]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ],
        "model": result.model,
        "usage": {
            "prompt_tokens": result.usage.input_tokens,
            "total_tokens": result.usage.input_tokens,
            "aurea": {"cost_nanos": result.cost_nanos, "estimated": result.usage.estimated},
        },
        "aurea": {"provider": result.provider, "attempts": result.attempts},
    }


def model_entry(name: str, provider: str, kind: str) -> dict[str, Any]:
    # ``created`` is unknown for a catalog entry; 0 keeps the field an integer as clients expect.
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": provider,
        "aurea": {"kind": kind},
    }


def error_headers(exc: BaseException) -> dict[str, str]:
    """``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms`` when the table gives a
    hint, and ``x-should-retry`` for the statuses OpenAI SDKs retry on their own, so they do not
    retry what cannot succeed (an exhausted budget, Aurea's own configuration)."""
    headers: dict[str, str] = {}
    delay = retry_delay_s(exc)
    row = row_for(exc)
    if delay is not None:
        headers["retry-after"] = str(max(1, math.ceil(delay)))
        headers["retry-after-ms"] = str(round(delay * 1e3))
    if row.http == 429 or row.http >= 500:
        retryable = row.grpc.name in ("UNAVAILABLE", "RESOURCE_EXHAUSTED")
        retryable = retryable and not isinstance(exc, BudgetExceeded)
        headers["x-should-retry"] = "true" if retryable else "false"
    return headers
