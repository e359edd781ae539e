"""One chat completion streamed as OpenAI's server-sent events.

The response's status line goes out with the first text or tool call (or the end), not
before: until then every refusal or failure (a guard, every candidate failing before its first
token) is still a plain HTTP error with its own status, which OpenAI SDKs raise as their typed
exceptions. After it, an error is an in-band ``data: {"error": ...}`` event and the stream ends
without ``data: [DONE]``, so no client mistakes a cut answer for a whole one. A mid-stream
failover that would restart the answer cannot be said in this format: the core ends such a
stream with an error (or continues it by prefill, when it can), never with a silent restart.

Events reach the transport through the core's ``CoalescingWriter``: text that piles up while a
write is in progress goes out as one chunk.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from aurea.cache import CachedInference
from aurea.errors import AureaError, ProviderServerError, StreamBroken
from aurea.http._render import HEADER_REQUEST_ID, ChunkFormat, error_frame
from aurea.inference import (
    CallerGone,
    Delta,
    FallbackEvent,
    Final,
    GenerateCall,
    GenEvent,
    Started,
)
from aurea.inference.writer import CoalescingWriter
from aurea.providers._base import FinishReason, ToolCallDelta

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-style proxies not to hold the events back
}


def broken_answer(final: Final) -> AureaError | None:
    """A final event that says the upstream failed after output began is an error here: this
    door has no finish reason for it, and a broken answer must not end cleanly."""
    if final.finish_reason is FinishReason.ERROR:
        return ProviderServerError(
            f"provider {final.provider} failed after the answer had begun; it is incomplete",
            provider=final.provider,
        )
    return None


class SseStream:
    """Writes one stream's events; ``opened`` tells whether the status line has gone out."""

    __slots__ = (
        "_format",
        "_include_usage",
        "_model",
        "_request",
        "created",
        "request_id",
        "response",
    )

    def __init__(
        self, request: web.Request, request_id: str, created: int, include_usage: bool
    ) -> None:
        self._request = request
        self.request_id = request_id
        self.created = created
        self._include_usage = include_usage
        self._model = ""
        self._format: ChunkFormat | None = None
        self.response: web.StreamResponse | None = None

    @property
    def opened(self) -> bool:
        return self.response is not None

    async def run(self, inference: CachedInference, call: GenerateCall) -> Exception | None:
        """Stream the call; returns the error the stream ended with in-band (None: a whole
        answer). Raises when nothing was sent yet, so the door answers with a status."""
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
            await self._send_quietly(error_frame(exc, self.request_id))
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
            if self._format is None:
                await self._open(self._model)
                assert self._format is not None
                await self._send(self._format.first(ev.text))
            else:
                await self._send(self._format.delta(ev.text))
        elif kind is ToolCallDelta:
            assert isinstance(ev, ToolCallDelta)
            first = self._format is None
            if first:
                await self._open(self._model)
            assert self._format is not None
            await self._send(self._format.tool_call(ev, first))
        elif kind is Started:
            assert isinstance(ev, Started)
            self._model = ev.model
        elif kind is FallbackEvent:
            assert isinstance(ev, FallbackEvent)
            self._model = ev.to_model  # before the first text: the chunks name who answers
            if self._format is not None:
                if ev.restart:  # the door asks for CONTINUE, so the core never sends this
                    raise StreamBroken(
                        "the answer would restart on another model, which this door cannot say",
                        provider=ev.to_provider,
                    )
                # Continued by prefill: the rest of the answer comes from the next model.
                self._format = ChunkFormat(
                    self.request_id, self.created, ev.to_model, self._include_usage
                )
        elif kind is Final:
            assert isinstance(ev, Final)
            if self._format is None:
                await self._open(ev.model)
            assert self._format is not None
            await self._send(self._format.end(ev))
        # UsageUpdate: OpenAI's streams carry usage only at the end. ReasoningDelta: OpenAI's
        # Chat Completions streams never carry the model's reasoning, so neither does this door.

    async def _open(self, model: str) -> None:
        self._format = ChunkFormat(self.request_id, self.created, model, self._include_usage)
        response = web.StreamResponse(
            status=200, headers={**SSE_HEADERS, HEADER_REQUEST_ID: self.request_id}
        )
        try:
            await response.prepare(self._request)
        except ConnectionError as exc:
            raise CallerGone("the client went away") from exc
        self.response = response

    async def _send(self, data: bytes) -> None:
        assert self.response is not None
        try:
            await self.response.write(data)
        except ConnectionError as exc:
            # aiohttp's reset error: the client left. Unwind as a cancellation, not a bug.
            raise CallerGone("the client went away") from exc

    async def _send_quietly(self, data: bytes) -> None:
        assert self.response is not None
        with contextlib.suppress(ConnectionError):
            await self.response.write(data)
            await self.response.write_eof()
