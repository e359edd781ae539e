"""Domain results in Anthropic's Messages shapes: the ``message`` object of a unary answer, and
one answer streamed as Anthropic's named server-sent events (``message_start``, ``ping``,
``content_block_start`` / ``_delta`` / ``_stop``, ``message_delta``, ``message_stop``, ``error``).

As at the OpenAI door, the status line goes out with the first text (or the end), so a refusal
before it is a plain HTTP error the SDKs raise as their typed exceptions; after it, a failure is
an in-band ``error`` event and the stream ends without ``message_stop``. Text streams as it
comes; tool calls and the provider's signed reasoning blocks are whole only on the core's final
event, so a stream sends them as whole blocks after the text (one ``input_json_delta`` /
``thinking_delta`` + ``signature_delta`` each).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from aiohttp import web

from aurea.api.status import anthropic_error
from aurea.cache import CachedInference
from aurea.errors import ProviderServerError, StreamBroken
from aurea.http._render import HEADER_REQUEST_ID, aurea_block, dumps
from aurea.http._sse import SSE_HEADERS, broken_answer
from aurea.inference import CallerGone, Delta, FallbackEvent, Final, GenerateCall, GenEvent, Started
from aurea.inference.writer import CoalescingWriter
from aurea.providers._base import FinishReason, ReasoningFormat, ToolCall, Usage

HEADER_ANTHROPIC_REQUEST_ID = "request-id"  # where Anthropic's SDKs read the request id

# Anthropic's stop reasons. STOP covers a stop sequence too: the core does not say which ended
# the answer, so ``stop_sequence`` is always null. A budget cut is "max_tokens" in a unary
# answer (an answer cut short, never "end_turn") and an ``error`` event in a stream.
STOP_REASONS = {
    FinishReason.STOP: "end_turn",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.TOOL_CALLS: "tool_use",
    FinishReason.CONTENT_FILTER: "refusal",
    FinishReason.BUDGET_EXCEEDED: "max_tokens",
}
BUDGET_CUT = (
    "the job's budget ran out during the answer: Aurea stopped it, and the text so far is "
    "incomplete"
)


def message_id(request_id: str) -> str:
    return f"msg_{request_id}"


def usage(u: Usage) -> dict[str, Any]:
    """Anthropic counts cache reads apart from ``input_tokens``; Aurea's count includes them."""
    return {
        "input_tokens": u.input_tokens - u.cached_input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u.cached_input_tokens,
    }


def tool_input(call: ToolCall, provider: str) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ProviderServerError(
            f"provider {provider} returned arguments for tool {call.name!r} that are not a "
            "JSON object",
            provider=provider,
        )
    return value


def thinking_blocks(final: Final) -> list[dict[str, Any]]:
    """The provider's Anthropic reasoning blocks as Anthropic sends them (other providers'
    signatures have no Anthropic shape and stay out); without any, the reasoning text a unary
    answer carries, unsigned."""
    out: list[dict[str, Any]] = []
    for b in final.reasoning_blocks:
        if b.format is ReasoningFormat.ANTHROPIC_THINKING:
            out.append({"type": "thinking", "thinking": b.text, "signature": b.signature})
        elif b.format is ReasoningFormat.ANTHROPIC_REDACTED:
            out.append({"type": "redacted_thinking", "data": b.data})
    if not out and final.reasoning:
        out.append({"type": "thinking", "thinking": final.reasoning, "signature": ""})
    return out


def message(final: Final, request_id: str) -> dict[str, Any]:
    """A unary answer as Anthropic's ``message`` object (Aurea's extras in ``aurea``)."""
    content = thinking_blocks(final)
    if final.text or not final.tool_calls:
        content.append({"type": "text", "text": final.text})
    for call in final.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": tool_input(call, final.provider),
            }
        )
    return {
        "id": message_id(request_id),
        "type": "message",
        "role": "assistant",
        "model": final.model,
        "content": content,
        "stop_reason": STOP_REASONS.get(final.finish_reason, "end_turn"),
        "stop_sequence": None,
        "usage": usage(final.usage),
        "aurea": aurea_block(final, request_id),
    }


def event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(payload) + b"\n\n"


def error_event(exc: BaseException, request_id: str) -> bytes:
    _, body = anthropic_error(exc, request_id)
    return event("error", body)


class AnthropicStream:
    """Writes one stream's events; ``response`` is None until the status line has gone out."""

    __slots__ = ("_index", "_model", "_request", "_text_open", "request_id", "response")

    def __init__(self, request: web.Request, request_id: str) -> None:
        self._request = request
        self.request_id = request_id
        self._model = ""
        self._index = 0  # the next content block's index
        self._text_open = False
        self.response: web.StreamResponse | None = None

    async def run(self, inference: CachedInference, call: GenerateCall) -> Exception | None:
        """Stream the call; returns the error the stream ended with in-band (None: a whole
        answer, or one the budget cut, which ends with an ``error`` event of its own). Raises
        when nothing was sent yet, so the door answers with a status."""
        try:
            async with CoalescingWriter(self.write) as writer:
                final = await inference.stream(call, writer.emit)
                broken = broken_answer(final)
                if broken is not None:
                    raise broken
                await writer.emit(final)
        except Exception as exc:
            if self.response is None:
                raise
            await self._send_quietly(error_event(exc, self.request_id))
            return exc
        assert self.response is not None
        with contextlib.suppress(ConnectionError):
            await self.response.write_eof()
        return None

    async def write(self, ev: GenEvent) -> None:
        """The writer's transport: one event (or merged deltas) to the client."""
        kind = type(ev)
        if kind is Delta:
            assert isinstance(ev, Delta)
            if self.response is None:
                await self._open()
            if not self._text_open:
                await self._block_start({"type": "text", "text": ""})
                self._text_open = True
            delta = {"type": "text_delta", "text": ev.text}
            await self._send(self._delta(delta))
        elif kind is Started:
            assert isinstance(ev, Started)
            self._model = ev.model
        elif kind is FallbackEvent:
            assert isinstance(ev, FallbackEvent)
            if self.response is None:
                self._model = ev.to_model  # message_start names who answers
            elif ev.restart:  # the door asks for CONTINUE, so the core never sends this
                raise StreamBroken(
                    "the answer would restart on another model, which this door cannot say",
                    provider=ev.to_provider,
                )
        elif kind is Final:
            assert isinstance(ev, Final)
            await self._end(ev)
        # ToolCallDelta, ReasoningDelta: sent whole from the final event (see the module doc).
        # UsageUpdate: Anthropic's streams carry usage in message_start and message_delta.

    async def _end(self, final: Final) -> None:
        if self.response is None:
            self._model = final.model
            await self._open()
        out = b""
        if self._text_open:
            out += self._stop()
            self._text_open = False
        if final.finish_reason is FinishReason.BUDGET_EXCEEDED:
            # Never a clean end for a cut answer: the text so far, then an error event.
            body = {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": BUDGET_CUT},
                "request_id": self.request_id,
            }
            await self._send(out + event("error", body))
            return
        for block in thinking_blocks(final) if final.reasoning_blocks else ():
            text, signature = block.pop("thinking", None), block.pop("signature", None)
            if text is None:  # redacted: whole in its start event
                out += self._start(block) + self._stop()
                continue
            out += self._start({"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta({"type": "thinking_delta", "thinking": text}, self._index - 1)
            out += self._delta({"type": "signature_delta", "signature": signature}, self._index - 1)
            out += self._stop()
        for call in final.tool_calls:
            tool_input(call, final.provider)  # a broken tool call is an error, not a block
            out += self._start({"type": "tool_use", "id": call.id, "name": call.name, "input": {}})
            delta = {"type": "input_json_delta", "partial_json": call.arguments or "{}"}
            out += self._delta(delta, self._index - 1) + self._stop()
        ending = {
            "type": "message_delta",
            "delta": {
                "stop_reason": STOP_REASONS.get(final.finish_reason, "end_turn"),
                "stop_sequence": None,
            },
            "usage": usage(final.usage),
            "aurea": aurea_block(final, self.request_id),
        }
        out += event("message_delta", ending) + event("message_stop", {"type": "message_stop"})
        await self._send(out)

    # -- frames ------------------------------------------------------------------------
    def _start(self, block: dict[str, Any]) -> bytes:
        payload = {"type": "content_block_start", "index": self._index, "content_block": block}
        self._index += 1
        return event("content_block_start", payload)

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> bytes:
        at = self._index - 1 if index is None else index
        return event(
            "content_block_delta", {"type": "content_block_delta", "index": at, "delta": delta}
        )

    def _stop(self) -> bytes:
        return event("content_block_stop", {"type": "content_block_stop", "index": self._index - 1})

    async def _block_start(self, block: dict[str, Any]) -> None:
        await self._send(self._start(block))

    # -- transport ---------------------------------------------------------------------
    async def _open(self) -> None:
        response = web.StreamResponse(
            status=200,
            headers={
                **SSE_HEADERS,
                HEADER_REQUEST_ID: self.request_id,
                HEADER_ANTHROPIC_REQUEST_ID: self.request_id,
            },
        )
        try:
            await response.prepare(self._request)
        except ConnectionError as exc:
            raise CallerGone("the client went away") from exc
        self.response = response
        start = {
            "type": "message_start",
            "message": {
                "id": message_id(self.request_id),
                "type": "message",
                "role": "assistant",
                "model": self._model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                # The prompt's count comes with the end (message_delta): the core knows it then.
                "usage": usage(Usage()),
            },
        }
        await self._send(event("message_start", start) + event("ping", {"type": "ping"}))

    async def _send(self, data: bytes) -> None:
        assert self.response is not None
        try:
            await self.response.write(data)
        except ConnectionError as exc:
            raise CallerGone("the client went away") from exc

    async def _send_quietly(self, data: bytes) -> None:
        assert self.response is not None
        with contextlib.suppress(ConnectionError):
            await self.response.write(data)
            await self.response.write_eof()
