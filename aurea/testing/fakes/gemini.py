"""A fake Gemini API (``/v1beta/models/{model}:generateContent``,
``:streamGenerateContent?alt=sse``, ``:embedContent``, ``:batchEmbedContents``,
``GET /v1beta/models``) replaying Google's wire format:
``x-goog-api-key`` (or ``?key=``) with Google's 403 / 400 ``API_KEY_INVALID`` answers, SSE frames of
whole ``GenerateContentResponse`` objects separated by CRLF CRLF, cumulative ``usageMetadata``,
``promptFeedback.blockReason`` and ``{"error": {code, message, status, details}}`` bodies.

Rich generation as Gemini sends it: ``functionCall`` parts (a whole call per chunk, no id) with
finishReason STOP; ``json_answer`` as the text when ``responseMimeType`` is JSON; thought parts
(``"thought": true``) when ``thinkingConfig.includeThoughts`` is set and ``thoughts`` is. With
``thinkingConfig`` set it signs its answers as Gemini 3 does: a ``thoughtSignature`` on the first
function call part of a turn, else on the last text part. Like Gemini, it refuses a function
response turn that does not follow a function call turn or answers a different number of calls,
a function declared as an object without properties, and (Gemini 3) a function call it signed
that comes back without its signature, or with one it did not issue.
"""

from __future__ import annotations

import json
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
from aurea.testing.fakes._gemini_wire import _BAD_KEY, _error, _parts, _rich_problem
from aurea.testing.fakes._thinking import Signer, call_key, gemini_signature_problem
from aurea.testing.fakes.openai import fake_embedding

__all__ = ["FakeGemini"]


class FakeGemini(FakeServer):
    """Gemini Developer API; ``base_url`` is the origin (the adapter adds ``/v1beta/...``).

    ``cached_input_tokens`` -> ``cachedContentTokenCount`` (part of ``promptTokenCount``);
    ``reasoning_tokens`` -> ``thoughtsTokenCount`` (not part of ``candidatesTokenCount``).
    ``block_prompt`` makes the next answers a ``promptFeedback.blockReason`` of that value.
    """

    def __init__(self, *, api_key: str = "AIza-test", **kwargs: Any) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.model_ids = ["gemini-2.0-flash", "gemini-2.5-pro", "text-embedding-004"]
        self.page_size = 2  # models per page, so clients must follow nextPageToken
        self.embedding_dims = 8
        self.signer = Signer()  # signs the function calls it makes, checks what comes back
        self.signed_calls: set[str] = set()  # the calls (name and arguments) it signed

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{target}", self._model_call)
        app.router.add_get("/v1beta/models", self._models)

    def _reply(self, payload: Any, status: int = 200) -> web.Response:
        return json_response(payload, status=status, indent=2)

    def _auth_error(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return self._reply(
                _error(
                    403,
                    "PERMISSION_DENIED",
                    "Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity to call"
                    " this API.",
                ),
                403,
            )
        if key != self.api_key:
            return self._reply(_BAD_KEY, 400)
        return None

    def _fault_response(self, fault: Fault) -> web.Response | None:
        kind = fault.kind
        if kind is FaultKind.UNAUTHORIZED:
            return self._reply(_BAD_KEY, 400)
        if kind is FaultKind.RATE_LIMIT:
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{fault.retry_after}s",
                },
            ]
            message = "You exceeded your current quota, please check your plan and billing details."
            return self._reply(_error(429, "RESOURCE_EXHAUSTED", message, details), 429)
        if kind is FaultKind.SERVER_ERROR:
            message = "An internal error has occurred. Please retry or report the problem."
            return self._reply(_error(500, "INTERNAL", message), 500)
        if kind is FaultKind.OVERLOADED:
            message = "The model is overloaded. Please try again later."
            return self._reply(_error(503, "UNAVAILABLE", message), 503)
        if kind is FaultKind.CONTEXT_LENGTH:
            message = (
                "The input token count (1048577) exceeds the maximum number of tokens allowed "
                "(1048576)."
            )
            return self._reply(_error(400, "INVALID_ARGUMENT", message), 400)
        return None

    async def _model_call(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].rpartition(":")
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        body = await request.json()
        if method in ("embedContent", "batchEmbedContents"):
            return self._embed(model, method, body)
        if method not in ("generateContent", "streamGenerateContent"):
            return self._reply(_error(404, "NOT_FOUND", f"Method {method} not found."), 404)
        if not body.get("contents"):
            message = "* GenerateContentRequest.contents: contents is not specified\n"
            return self._reply(_error(400, "INVALID_ARGUMENT", message), 400)
        problem = _rich_problem(body) or gemini_signature_problem(
            body, self.signer, self.signed_calls
        )
        if problem:
            return self._reply(_error(400, "INVALID_ARGUMENT", problem), 400)
        fault = await self.slow_start(request, self.take_fault())
        if fault is not None:
            answer = self._fault_response(fault)
            if answer is not None:
                return answer
        prompt = "\n".join(
            str(part["text"])
            for content in body["contents"]
            if content.get("role", "user") == "user"
            for part in content.get("parts", [])
            if "text" in part
        )
        config = body.get("generationConfig") or {}
        generation = self.generate(prompt, config.get("maxOutputTokens"))
        results = _parts(body["contents"][-1], "functionResponse")
        if results:
            after = self.answer_after_tools(
                [json.dumps(r["functionResponse"].get("response")) for r in results]
            )
            generation = Generation(split_tokens(after), truncated=False)
        elif config.get("responseMimeType") == "application/json" and self.json_answer:
            generation = Generation(pieces(self.json_answer, self.argument_piece), truncated=False)
        calls = [] if results else self._calls_for(body)
        thinking = config.get("thinkingConfig") or {}
        thoughts = self.thoughts if thinking.get("includeThoughts") else ""
        blocked = fault is not None and fault.kind is FaultKind.CONTENT_FILTER
        if method == "streamGenerateContent":
            if request.query.get("alt") != "sse":
                message = "this fake only streams with alt=sse"
                return self._reply(_error(400, "INVALID_ARGUMENT", message), 400)
            if calls or thoughts:
                return await self._stream(
                    request, body, model, generation, fault, blocked, calls, thoughts
                )
            # (Subclasses in tests override ``_stream`` with its plain-text arguments.)
            return await self._stream(request, body, model, generation, fault, blocked)
        if blocked:
            return self._reply(self._blocked(body, model))
        parts: list[dict[str, Any]] = [{"text": thoughts, "thought": True}] if thoughts else []
        if calls:
            parts += [{"functionCall": {"name": n, "args": json.loads(a)}} for n, a in calls]
        else:
            parts.append({"text": "".join(generation.tokens)})
        if thinking:
            self._sign(parts)
        payload = self._chunk(body, model, parts, generation, final=True)
        reply = self._reply(payload)
        assert isinstance(reply.body, bytes)
        return await self.unary_fault(request, fault, reply.body) or reply

    def _sign(self, parts: list[dict[str, Any]]) -> None:
        """Sign a turn as Gemini 3 does: its first function call part, else its last text part
        (not a thought)."""
        for part in parts:
            if "functionCall" in part:
                call = part["functionCall"]
                key = call_key(call["name"], call["args"])
                self.signed_calls.add(key)
                part["thoughtSignature"] = self.signer.sign(key)
                return
        answer = [p for p in parts if "text" in p and not p.get("thought")]
        if answer:
            answer[-1]["thoughtSignature"] = self.signer.sign("text", str(answer[-1]["text"]))

    def _usage(self, body: dict[str, Any], generation: Generation | None) -> dict[str, Any]:
        texts = [
            str(part.get("text", ""))
            for content in [*body.get("contents", []), body.get("systemInstruction") or {}]
            for part in content.get("parts", [])
        ]
        prompt = count_words(texts)
        usage: dict[str, Any] = {"promptTokenCount": prompt}
        total = prompt
        if generation is not None:
            usage["candidatesTokenCount"] = len(generation.tokens)
            total += len(generation.tokens)
            if self.reasoning_tokens:
                usage["thoughtsTokenCount"] = self.reasoning_tokens
                total += self.reasoning_tokens
        if self.cached_input_tokens:
            usage["cachedContentTokenCount"] = min(self.cached_input_tokens, prompt)
        usage["totalTokenCount"] = total
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
        return usage

    def _calls_for(self, body: dict[str, Any]) -> list[tuple[str, str]]:
        """(name, args JSON text) of the function calls this request is answered with."""
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        if not body.get("tools") or calling.get("mode") == "NONE":
            return []
        allowed = calling.get("allowedFunctionNames")
        return [c for c in self.tool_calls if not allowed or c[0] in allowed]

    def _chunk(
        self,
        body: dict[str, Any],
        model: str,
        text: str | list[dict[str, Any]],
        generation: Generation,
        *,
        final: bool,
    ) -> dict[str, Any]:
        parts = [{"text": text}] if isinstance(text, str) else text
        candidate: dict[str, Any] = {
            "content": {"parts": parts, "role": "model"},
            "index": 0,
        }
        if final:
            natural = "MAX_TOKENS" if generation.truncated else "STOP"
            candidate["finishReason"] = self.finish_override or natural
        return {
            "candidates": [candidate],
            "usageMetadata": self._usage(body, generation if final else None),
            "modelVersion": model,
            "responseId": f"fake-response-{self.request_count}",
        }

    def _blocked(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        return {
            "promptFeedback": {
                "blockReason": "SAFETY",
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
                ],
            },
            "usageMetadata": self._usage(body, None),
            "modelVersion": model,
        }

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        model: str,
        generation: Generation,
        fault: Fault | None,
        blocked: bool,
        calls: list[tuple[str, str]] | None = None,
        thoughts: str = "",
    ) -> web.StreamResponse:
        response = await self.open_sse(request)
        # Each chunk's parts (a stream fault's ``after_tokens`` counts chunks).
        steps: list[list[dict[str, Any]]] = [
            [{"text": t, "thought": True}] for t in pieces(thoughts, 8) if thoughts
        ]
        if calls:
            steps += [[{"functionCall": {"name": n, "args": json.loads(a)}}] for n, a in calls]
        else:
            steps += [[{"text": t}] for t in generation.tokens]
        if "thinkingConfig" in (body.get("generationConfig") or {}):
            self._sign([p for step in steps for p in step])

        async def frame(payload: Any) -> None:
            # Google's SSE frontend separates events with CRLF CRLF.
            await self.send(request, response, f"data: {frame_json(payload)}\r\n\r\n".encode())

        async def emit() -> None:
            if blocked:
                return await frame(self._blocked(body, model))
            stop_at = self.fault_point(fault, len(steps))
            for index, parts in enumerate(steps):
                if fault is not None and index == stop_at:
                    return await self._fail(request, response, fault)
                await self.interlude(request, response, fault, index, b'data: {"candidates": [\n\n')
                await self.pause(request)
                last = index == len(steps) - 1 and stop_at != len(steps)
                await frame(self._chunk(body, model, parts, generation, final=last))
            if fault is not None and stop_at == len(steps):
                return await self._fail(request, response, fault)
            if not steps:
                await frame(self._chunk(body, model, "", generation, final=True))

        return await self.run_stream(request, response, emit)

    async def _fail(self, request: web.Request, response: web.StreamResponse, fault: Fault) -> None:
        if fault.kind is FaultKind.CUT_STREAM:
            self.cut(request)
        elif fault.kind is FaultKind.MALFORMED:
            await self.send(request, response, b'data: {"candidates": [{"content": \r\n\r\n')
        elif fault.kind is FaultKind.STREAM_ERROR:
            error = _error(500, "INTERNAL", "An internal error has occurred.")
            await self.send(request, response, f"data: {frame_json(error)}\r\n\r\n".encode())

    def _embed(self, model: str, method: str, body: dict[str, Any]) -> web.Response:
        def values(content: Any) -> list[float]:
            text = " ".join(str(p.get("text", "")) for p in (content or {}).get("parts", []))
            return fake_embedding(text, self.embedding_dims)

        if method == "embedContent":
            return self._reply({"embedding": {"values": values(body.get("content"))}})
        requests = body.get("requests") or []
        for i, item in enumerate(requests):
            if item.get("model") != f"models/{model}":
                message = (
                    f"* BatchEmbedContentsRequest.requests[{i}].model: the model must match the "
                    "model in the URL\n"
                )
                return self._reply(_error(400, "INVALID_ARGUMENT", message), 400)
        return self._reply({"embeddings": [{"values": values(r.get("content"))} for r in requests]})

    async def _models(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        start = int(request.query.get("pageToken") or 0)
        size = min(int(request.query.get("pageSize") or self.page_size), self.page_size)
        page = self.model_ids[start : start + size]
        payload: dict[str, Any] = {
            "models": [
                {
                    "name": f"models/{m}",
                    "version": "001",
                    "displayName": m,
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                }
                for m in page
            ]
        }
        if start + size < len(self.model_ids):
            payload["nextPageToken"] = str(start + size)
        return self._reply(payload)
