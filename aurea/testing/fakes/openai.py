"""A fake OpenAI Chat Completions server (``/v1/chat/completions``, ``/v1/embeddings``,
``/v1/models``) replaying OpenAI's wire format: Bearer auth and its 401 bodies, ``data:``-only
SSE ending in ``data: [DONE]``, the ``stream_options.include_usage`` usage chunk with empty
``choices``, and ``{"error": {message, type, param, code}}`` error bodies.

Switches for OpenAI-compatible servers (vLLM, llama.cpp, Ollama): ``ignore_include_usage``,
``omit_done``, ``usage_on_last_choice``.

Rich generation as OpenAI sends it: ``tool_calls`` in the reply message (``content`` null) or as
stream deltas (the first piece of a call with ``id``, ``type`` and ``function.name``, then
``function.arguments`` pieces), finish reason ``tool_calls``; ``reasoning_content`` deltas (as
OpenAI-compatible reasoning servers send them) when ``thoughts`` is set. Like OpenAI, it refuses
a ``tool`` message that answers no earlier call, a ``tool_choice`` naming no tool, and a
``json_schema`` response format without a name or schema.
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
    pieces,
    split_tokens,
)
from aurea.testing.fakes._openai_wire import (
    _BROKEN_CHUNK,
    _CREATED,
    _FINGERPRINT,
    _error,
    _invalid,
    fake_embedding,
    fault_reply,
    text_of,
    wrong_key_reply,
)

__all__ = ["FakeOpenAI", "fake_embedding"]


class FakeOpenAI(FakeServer):
    """OpenAI (and OpenAI-compatible) chat server; ``base_url`` ends in ``/v1``."""

    def __init__(self, *, api_key: str = "sk-test", **kwargs: Any) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.ignore_include_usage = False  # a server that never sends the usage chunk
        self.omit_done = False  # a server that ends the stream without ``data: [DONE]``
        self.usage_on_last_choice = False  # usage rides on the finish_reason chunk
        self.model_ids = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
        self.embedding_dims = 8

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)

    # -- auth and faults -------------------------------------------------------------------------
    def _auth_error(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return json_response(
                _error(
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)"
                    ", or as the password field (with blank username) if you're accessing the "
                    "API from your browser and are prompted for a username and password. You can "
                    "obtain an API key from https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    None,
                ),
                status=401,
                indent=4,
            )
        key = header.removeprefix("Bearer ").strip()
        if key != self.api_key:
            return self._wrong_key(key)
        return None

    def _wrong_key(self, key: str) -> web.Response:
        return wrong_key_reply(key)

    def _fault_response(self, fault: Fault, model: str) -> web.Response | None:
        kind = fault.kind
        if kind is FaultKind.UNAUTHORIZED:
            return self._wrong_key("sk-revoked-key-0000")
        return fault_reply(fault, model)

    # -- chat ------------------------------------------------------------------------------------
    def _usage(self, body: dict[str, Any], generation: Generation) -> dict[str, Any]:
        prompt = count_words(text_of(m.get("content")) for m in body.get("messages", []))
        cached = min(self.cached_input_tokens, prompt)
        completion = len(generation.tokens) + self.reasoning_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _finish_reason(self, generation: Generation) -> str:
        if self.finish_override:
            return self.finish_override
        return "length" if generation.truncated else "stop"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        body = await request.json()
        model = str(body.get("model", ""))
        if not model:
            return json_response(
                _error("you must provide a model parameter", "invalid_request_error", None),
                status=400,
                indent=4,
            )
        fault = await self.slow_start(request, self.take_fault())
        if fault is not None:
            answer = self._fault_response(fault, model)
            if answer is not None:
                return answer
        messages = body.get("messages", [])
        invalid = _invalid(body)
        if invalid:
            return json_response(
                _error(invalid, "invalid_request_error", None, "messages"), status=400, indent=4
            )
        prefill = ""
        if messages and messages[-1].get("role") == "assistant":
            if self.reject_prefill:
                return json_response(
                    _error(
                        "This model does not support a trailing assistant message (prefill).",
                        "invalid_request_error",
                        None,
                        "messages",
                    ),
                    status=400,
                    indent=4,
                )
            prefill = str(messages[-1].get("content", ""))
        prompt = "\n".join(text_of(m.get("content")) for m in messages if m.get("role") == "user")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        generation = self.generate(prompt, max_tokens, prefill)
        calls = self._calls_for(body)
        if messages and messages[-1].get("role") == "tool":
            results: list[str] = []
            for m in reversed(messages):
                if m.get("role") != "tool":
                    break
                results.insert(0, text_of(m.get("content")))
            generation = Generation(split_tokens(self.answer_after_tools(results)), truncated=False)
        elif self.json_answer is not None and (body.get("response_format") or {}).get("type") in (
            "json_object",
            "json_schema",
        ):
            generation = Generation(pieces(self.json_answer, self.argument_piece), truncated=False)
        if body.get("stream"):
            if calls:
                return await self._chat_stream(request, body, model, generation, fault, calls)
            # (Subclasses in tests override ``_chat_stream`` with its plain-text arguments.)
            return await self._chat_stream(request, body, model, generation, fault)
        text = "".join(generation.tokens)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if calls else text,
            "refusal": None,
            "annotations": [],
        }
        if calls:
            message["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                for cid, name, args in calls
            ]
        if self.thoughts:
            message["reasoning_content"] = self.thoughts
        reply = json_response(
            {
                "id": f"chatcmpl-fake{self.request_count}",
                "object": "chat.completion",
                "created": _CREATED,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": "tool_calls" if calls else self._finish_reason(generation),
                    }
                ],
                "usage": self._usage(body, generation),
                "service_tier": "default",
                "system_fingerprint": _FINGERPRINT,
            },
            headers={"x-request-id": f"req_fake{self.request_count}"},
        )
        assert isinstance(reply.body, bytes)
        return await self.unary_fault(request, fault, reply.body) or reply

    def _calls_for(self, body: dict[str, Any]) -> list[tuple[str, str, str]]:
        """(id, name, arguments) of the calls this request is answered with (none unless it
        offers tools, allows calls and does not end with tool results)."""
        messages = body.get("messages") or []
        if (
            not body.get("tools")
            or not self.tool_calls
            or body.get("tool_choice") == "none"
            or (messages and messages[-1].get("role") == "tool")
        ):
            return []
        plan = self.tool_calls if body.get("parallel_tool_calls", True) else self.tool_calls[:1]
        return [
            (f"call_fake{self.request_count}_{i}", name, args)
            for i, (name, args) in enumerate(plan)
        ]

    async def _chat_stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        model: str,
        generation: Generation,
        fault: Fault | None,
        calls: list[tuple[str, str, str]] | None = None,
    ) -> web.StreamResponse:
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage")) and not self.ignore_include_usage
        response = await self.open_sse(request, **{"x-request-id": f"req_fake{self.request_count}"})
        chunk_id = f"chatcmpl-fake{self.request_count}"

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            payload: dict[str, Any] = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": _CREATED,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": _FINGERPRINT,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                payload["usage"] = None
            if finish is not None and self.usage_on_last_choice:
                payload["usage"] = self._usage(body, generation)
            return f"data: {frame_json(payload)}\n\n".encode()

        # Each "token" is one delta: text, or a piece of a tool call (its first piece names it).
        deltas: list[dict[str, Any]] = []
        if self.thoughts:
            deltas += [{"reasoning_content": t} for t in pieces(self.thoughts, 8)]
        if calls:
            for i, (cid, name, args) in enumerate(calls):
                head = {"index": i, "id": cid, "type": "function"}
                deltas.append(
                    {"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]}
                )
                deltas += [
                    {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                    for piece in pieces(args, self.argument_piece)
                ]
        else:
            deltas += [{"content": token} for token in generation.tokens]
        finish = "tool_calls" if calls else self._finish_reason(generation)

        async def emit() -> None:
            await self.send(
                request,
                response,
                chunk({"role": "assistant", "content": "", "refusal": None}, None),
            )
            stop_at = self.fault_point(fault, len(deltas))
            for index, delta in enumerate(deltas):
                if fault is not None and index == stop_at:
                    await self._stream_fault(request, response, fault)
                    return
                await self.interlude(request, response, fault, index, _BROKEN_CHUNK)
                await self.pause(request)
                await self.send(request, response, chunk(delta, None))
            if fault is not None and stop_at == len(deltas):
                await self._stream_fault(request, response, fault)
                return
            await self.send(request, response, chunk({}, finish))
            if include_usage and not self.usage_on_last_choice:
                usage_chunk = {
                    "id": chunk_id,
                    "object": "chat.completion.chunk",
                    "created": _CREATED,
                    "model": model,
                    "service_tier": "default",
                    "system_fingerprint": _FINGERPRINT,
                    "choices": [],
                    "usage": self._usage(body, generation),
                }
                await self.send(request, response, f"data: {frame_json(usage_chunk)}\n\n".encode())
            if not self.omit_done:
                await self.send(request, response, b"data: [DONE]\n\n")

        return await self.run_stream(request, response, emit)

    async def _stream_fault(
        self, request: web.Request, response: web.StreamResponse, fault: Fault
    ) -> None:
        if fault.kind is FaultKind.CUT_STREAM:
            self.cut(request)
        elif fault.kind is FaultKind.EARLY_EOF:
            return
        elif fault.kind is FaultKind.MALFORMED:
            await self.send(request, response, _BROKEN_CHUNK)
        elif fault.kind is FaultKind.STREAM_ERROR:
            error = _error(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            )
            await self.send(request, response, f"data: {frame_json(error)}\n\n".encode())

    # -- embeddings and models -------------------------------------------------------------------
    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        body = await request.json()
        fault = await self.slow_start(request, self.take_fault())
        if fault is not None:
            answer = self._fault_response(fault, str(body.get("model", "")))
            if answer is not None:
                return answer
        inputs = body.get("input", [])
        texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
        tokens = count_words(texts)
        return json_response(
            {
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": fake_embedding(t, self.embedding_dims),
                    }
                    for i, t in enumerate(texts)
                ],
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        return json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": _CREATED, "owned_by": "openai"}
                    for m in self.model_ids
                ],
            }
        )
