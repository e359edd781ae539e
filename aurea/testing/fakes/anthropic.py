"""A fake Anthropic Messages API (``POST /v1/messages``, ``GET /v1/models``) replaying Anthropic's
wire format: ``x-api-key`` + ``anthropic-version`` headers, ``event:``-named SSE
(message_start, content_block_start, ping, content_block_delta, content_block_stop,
message_delta, message_stop), usage split into input / cache_read / cache_creation, HTTP 529
``overloaded_error`` and ``{"type": "error", "error": {type, message}}`` bodies.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aurea.testing.fakes._core import (
    FakeServer,
    Fault,
    FaultKind,
    Generation,
    count_words,
    frame_json,
    json_response,
)

__all__ = ["FakeAnthropic"]

_RATE_LIMIT_MESSAGE = (
    "Number of request tokens has exceeded your per-minute rate limit "
    "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for current usage. "
    "Please reduce the prompt length or the maximum tokens requested, or try again later."
)


_BROKEN_EVENT = b'event: content_block_delta\ndata: {"type":"content_block_delta",\n\n'


def _error(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


class FakeAnthropic(FakeServer):
    """Anthropic Messages API; ``base_url`` is the origin (the adapter adds ``/v1/messages``).

    ``cached_input_tokens`` are reported as ``cache_read_input_tokens`` and
    ``cache_creation_input_tokens`` as written; ``input_tokens`` is what is left (Anthropic's
    convention: the three add up to the prompt).
    """

    def __init__(self, *, api_key: str = "sk-ant-test", **kwargs: Any) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.cache_creation_input_tokens = 0
        self.honour_prefill = True  # the Messages API continues a trailing assistant message
        self.omit_message_stop = False  # end the stream after message_delta, without message_stop
        self.model_ids = ["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)

    def _reply_error(self, status: int, type_: str, message: str, **headers: str) -> web.Response:
        headers.setdefault("request-id", f"req_fake{self.request_count}")
        return json_response(_error(type_, message), status=status, headers=headers)

    def _check_headers(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-api-key")
        if not key:
            return self._reply_error(401, "authentication_error", "x-api-key header is required")
        if key != self.api_key:
            return self._reply_error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self._reply_error(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        return None

    def _fault_response(self, fault: Fault) -> web.Response | None:
        kind = fault.kind
        if kind is FaultKind.UNAUTHORIZED:
            return self._reply_error(401, "authentication_error", "invalid x-api-key")
        if kind is FaultKind.RATE_LIMIT:
            hint = {"retry-after": fault.retry_after} if fault.retry_after else {}
            return self._reply_error(
                429,
                "rate_limit_error",
                _RATE_LIMIT_MESSAGE,
                **{
                    **hint,
                    "anthropic-ratelimit-requests-limit": "50",
                    "anthropic-ratelimit-requests-remaining": "0",
                },
            )
        if kind is FaultKind.SERVER_ERROR:
            return self._reply_error(500, "api_error", "Internal server error")
        if kind is FaultKind.OVERLOADED:
            return self._reply_error(529, "overloaded_error", "Overloaded")
        if kind is FaultKind.CONTEXT_LENGTH:
            return self._reply_error(
                400, "invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"
            )
        return None

    def _validate(self, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return self._reply_error(400, "invalid_request_error", "body: Input should be a dict")
        if "max_tokens" not in body:
            return self._reply_error(400, "invalid_request_error", "max_tokens: Field required")
        for i, message in enumerate(body.get("messages") or []):
            if message.get("role") not in ("user", "assistant"):
                return self._reply_error(
                    400,
                    "invalid_request_error",
                    f"messages.{i}.role: Input should be 'user' or 'assistant'",
                )
        if not body.get("messages"):
            return self._reply_error(400, "invalid_request_error", "messages: Field required")
        last = body["messages"][-1]
        if last.get("role") == "assistant":
            if self.reject_prefill:
                return self._reply_error(
                    400,
                    "invalid_request_error",
                    "This model does not support assistant message prefill. The conversation "
                    "must end with a user message.",
                )
            content = last.get("content")
            if isinstance(content, str) and content != content.rstrip():
                return self._reply_error(
                    400,
                    "invalid_request_error",
                    "messages: final assistant content cannot end with trailing whitespace",
                )
        return None

    def _usage(self, body: dict[str, Any], output: int) -> dict[str, Any]:
        texts = [str(m.get("content", "")) for m in body.get("messages", [])]
        texts.append(str(body.get("system", "")))
        prompt = count_words(texts)
        read = min(self.cached_input_tokens, prompt)
        creation = min(self.cache_creation_input_tokens, prompt - read)
        return {
            "input_tokens": prompt - read - creation,
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": read,
            "output_tokens": output,
            "service_tier": "standard",
        }

    def _stop_reason(self, generation: Generation, fault: Fault | None) -> str:
        if fault is not None and fault.kind is FaultKind.CONTENT_FILTER:
            return "refusal"
        if self.finish_override:
            return self.finish_override
        return "max_tokens" if generation.truncated else "end_turn"

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        denied = self._check_headers(request)
        if denied is not None:
            return denied
        body = await request.json()
        invalid = self._validate(body)
        if invalid is not None:
            return invalid
        fault = await self.slow_start(request, self.take_fault())
        if fault is not None:
            answer = self._fault_response(fault)
            if answer is not None:
                return answer
        prompt = "\n".join(
            str(m.get("content", "")) for m in body["messages"] if m.get("role") == "user"
        )
        last = body["messages"][-1]
        prefill = str(last.get("content", "")) if last.get("role") == "assistant" else ""
        generation = self.generate(prompt, int(body["max_tokens"]), prefill)
        if fault is not None and fault.kind is FaultKind.CONTENT_FILTER:
            generation = Generation(generation.tokens[: fault.after_tokens], truncated=False)
        if body.get("stream"):
            return await self._stream(request, body, generation, fault)
        message = {
            "id": f"msg_fake{self.request_count}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": [{"type": "text", "text": "".join(generation.tokens)}],
            "stop_reason": self._stop_reason(generation, fault),
            "stop_sequence": None,
            "usage": self._usage(body, len(generation.tokens)),
        }
        reply = json_response(message, headers={"request-id": f"req_fake{self.request_count}"})
        assert isinstance(reply.body, bytes)
        return await self.unary_fault(request, fault, reply.body) or reply

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        generation: Generation,
        fault: Fault | None,
    ) -> web.StreamResponse:
        response = await self.open_sse(request, **{"request-id": f"req_fake{self.request_count}"})

        async def event(name: str, payload: Any) -> None:
            data = f"event: {name}\ndata: {frame_json(payload)}\n\n"
            await self.send(request, response, data.encode())

        async def fail(fault: Fault) -> None:
            if fault.kind is FaultKind.CUT_STREAM:
                self.cut(request)
            elif fault.kind is FaultKind.MALFORMED:
                await self.send(request, response, _BROKEN_EVENT)
            elif fault.kind is FaultKind.STREAM_ERROR:
                await event("error", _error("overloaded_error", "Overloaded"))

        async def emit() -> None:
            start_usage = self._usage(body, 1)
            await event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": f"msg_fake{self.request_count}",
                        "type": "message",
                        "role": "assistant",
                        "model": body.get("model", ""),
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
            await event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            await event("ping", {"type": "ping"})
            stop_at = self.fault_point(fault, len(generation.tokens))
            for index, token in enumerate(generation.tokens):
                if fault is not None and index == stop_at:
                    return await fail(fault)
                await self.interlude(request, response, fault, index, _BROKEN_EVENT)
                await self.pause(request)
                await event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": token},
                    },
                )
            if fault is not None and stop_at == len(generation.tokens):
                return await fail(fault)
            await event("content_block_stop", {"type": "content_block_stop", "index": 0})
            await event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": self._stop_reason(generation, fault),
                        "stop_sequence": None,
                    },
                    "usage": {"output_tokens": len(generation.tokens)},
                },
            )
            if not self.omit_message_stop:
                await event("message_stop", {"type": "message_stop"})

        return await self.run_stream(request, response, emit)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        denied = self._check_headers(request)
        if denied is not None:
            return denied
        data = [
            {
                "type": "model",
                "id": m,
                "display_name": m,
                "created_at": "2025-01-01T00:00:00Z",
            }
            for m in self.model_ids
        ]
        return json_response(
            {
                "data": data,
                "has_more": False,
                "first_id": self.model_ids[0] if self.model_ids else None,
                "last_id": self.model_ids[-1] if self.model_ids else None,
            }
        )
