"""A fake Anthropic Messages API (``POST /v1/messages``, ``GET /v1/models``) replaying Anthropic's
wire format: ``x-api-key`` + ``anthropic-version`` headers, ``event:``-named SSE
(message_start, content_block_start, ping, content_block_delta, content_block_stop,
message_delta, message_stop), usage split into input / cache_read / cache_creation, HTTP 529
``overloaded_error`` and ``{"type": "error", "error": {type, message}}`` bodies.

Rich generation as Anthropic sends it: ``tool_use`` content blocks (streamed as a
``content_block_start`` naming the call, then ``input_json_delta`` pieces of its input), stop
reason ``tool_use``; a forced tool (``tool_choice`` of type ``tool``) answered with
``json_answer`` as its input; ``thinking`` blocks when the request enables thinking and
``thoughts`` is set, each signed (``signature`` / a ``signature_delta``), and a
``redacted_thinking`` block first when a user message holds ``REDACTED_TRIGGER`` (Anthropic's
magic string for it). Like Anthropic, it refuses a ``tool_result`` without its ``tool_use`` in the
previous turn, a ``tool_use`` left without its result, malformed image sources, a thinking block
whose signature it did not issue, and, with thinking enabled, a final assistant turn with
``tool_use`` that does not start with its thinking block.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from aurea.testing.fakes._anthropic_wire import (
    _BROKEN_EVENT,
    _RATE_LIMIT_MESSAGE,
    _blocks,
    _error,
    _rich_problem,
    text_of,
)
from aurea.testing.fakes._core import (
    FakeServer,
    Fault,
    FaultKind,
    Generation,
    count_words,
    frame_json,
    json_response,
    pieces,
    split_tokens,
)
from aurea.testing.fakes._thinking import REDACTED_TRIGGER, Signer, anthropic_thinking_problem

__all__ = ["FakeAnthropic"]


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
        self.signer = Signer()  # signs the thinking it hands out, checks what comes back

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
        problem = _rich_problem(body) or anthropic_thinking_problem(body, self.signer)
        if problem:
            return self._reply_error(400, "invalid_request_error", problem)
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
        texts = [text_of(m.get("content")) for m in body.get("messages", [])]
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
            text_of(m.get("content")) for m in body["messages"] if m.get("role") == "user"
        )
        last = body["messages"][-1]
        prefill = str(last.get("content", "")) if last.get("role") == "assistant" else ""
        generation = self.generate(prompt, int(body["max_tokens"]), prefill)
        results = _blocks(last, "tool_result") if last.get("role") == "user" else []
        if results:
            after = self.answer_after_tools([text_of(b.get("content")) for b in results])
            generation = Generation(split_tokens(after), truncated=False)
        if fault is not None and fault.kind is FaultKind.CONTENT_FILTER:
            generation = Generation(generation.tokens[: fault.after_tokens], truncated=False)
        calls = [] if results else self._calls_for(body)
        thinking = self.thoughts if body.get("thinking") else ""
        redacted = (
            self.signer.redacted() if body.get("thinking") and REDACTED_TRIGGER in prompt else ""
        )
        if body.get("stream"):
            if calls or thinking or redacted:
                return await self._stream(
                    request, body, generation, fault, calls, thinking, redacted
                )
            # (Subclasses in tests override ``_stream`` with its plain-text arguments.)
            return await self._stream(request, body, generation, fault)
        content: list[dict[str, Any]] = []
        if redacted:
            content.append({"type": "redacted_thinking", "data": redacted})
        if thinking:
            signature = self.signer.sign(thinking)
            content.append({"type": "thinking", "thinking": thinking, "signature": signature})
        if calls:
            content += [
                {"type": "tool_use", "id": cid, "name": name, "input": json.loads(args)}
                for cid, name, args in calls
            ]
        else:
            content.append({"type": "text", "text": "".join(generation.tokens)})
        message = {
            "id": f"msg_fake{self.request_count}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": content,
            "stop_reason": "tool_use" if calls else self._stop_reason(generation, fault),
            "stop_sequence": None,
            "usage": self._usage(body, len(generation.tokens)),
        }
        reply = json_response(message, headers={"request-id": f"req_fake{self.request_count}"})
        assert isinstance(reply.body, bytes)
        return await self.unary_fault(request, fault, reply.body) or reply

    def _calls_for(self, body: dict[str, Any]) -> list[tuple[str, str, str]]:
        """(id, name, input JSON text) of the tool_use blocks this request is answered with."""
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {}
        if not tools or choice.get("type") == "none":
            return []
        plan = list(self.tool_calls)
        if choice.get("type") == "tool":
            name = choice.get("name")
            plan = [c for c in plan if c[0] == name] or [(str(name), self.json_answer or "{}")]
        if choice.get("disable_parallel_tool_use"):
            plan = plan[:1]
        return [
            (f"toolu_fake{self.request_count}_{i}", name, args)
            for i, (name, args) in enumerate(plan)
        ]

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        generation: Generation,
        fault: Fault | None,
        calls: list[tuple[str, str, str]] | None = None,
        thinking: str = "",
        redacted: str = "",
    ) -> web.StreamResponse:
        response = await self.open_sse(request, **{"request-id": f"req_fake{self.request_count}"})
        calls = calls or []

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

        # The content blocks, as steps: each step is the events of one "token" (a stream fault's
        # ``after_tokens`` counts steps). Plain text keeps its block open from the start.
        Event = tuple[str, dict[str, Any]]
        steps: list[list[Event]] = []
        opening: list[Event] = []
        block = 0

        def delta(index: int, payload: dict[str, Any]) -> Event:
            return (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": payload},
            )

        def start(index: int, payload: dict[str, Any]) -> Event:
            return (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": payload},
            )

        def stop(index: int) -> Event:
            return ("content_block_stop", {"type": "content_block_stop", "index": index})

        if redacted:
            steps.append(
                [start(block, {"type": "redacted_thinking", "data": redacted}), stop(block)]
            )
            block += 1
        if thinking:
            parts = pieces(thinking, 8)
            steps.append([start(block, {"type": "thinking", "thinking": "", "signature": ""})])
            steps += [[delta(block, {"type": "thinking_delta", "thinking": p})] for p in parts]
            steps[-1] += [
                delta(block, {"type": "signature_delta", "signature": self.signer.sign(thinking)}),
                stop(block),
            ]
            block += 1
        text_block = -1
        if not calls:
            text_block = block
            (opening if not steps else steps[-1]).append(start(block, {"type": "text", "text": ""}))
            steps += [[delta(block, {"type": "text_delta", "text": t})] for t in generation.tokens]
            block += 1
        for cid, name, args in calls:
            steps.append([start(block, {"type": "tool_use", "id": cid, "name": name, "input": {}})])
            steps += [
                [delta(block, {"type": "input_json_delta", "partial_json": p})]
                for p in pieces(args, self.argument_piece)
            ]
            steps[-1].append(stop(block))
            block += 1
        stop_reason = "tool_use" if calls else self._stop_reason(generation, fault)

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
            for name, payload in opening:
                await event(name, payload)
            await event("ping", {"type": "ping"})
            stop_at = self.fault_point(fault, len(steps))
            for index, step in enumerate(steps):
                if fault is not None and index == stop_at:
                    return await fail(fault)
                await self.interlude(request, response, fault, index, _BROKEN_EVENT)
                await self.pause(request)
                for name, payload in step:
                    await event(name, payload)
            if fault is not None and stop_at == len(steps):
                return await fail(fault)
            if text_block >= 0:
                await event(*stop(text_block))
            await event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
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
