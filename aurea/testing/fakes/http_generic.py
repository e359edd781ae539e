"""A fake "custom JSON model endpoint" for the generic HTTP adapter (``kind = "http"``).

``POST /generate`` answers ``{"output": {"text"}, "usage": {"prompt_tokens",
"completion_tokens"}, "finish": ...}``; ``POST /generate/stream`` sends SSE ``data:`` events
``{"delta": {"text"}}``, then ``{"usage": {...}, "finish": ...}`` and ``data: [DONE]``; errors are
``{"error": {"message", "code"}}``. The key is checked in the ``X-Api-Key`` header. The prompt is
read from a ``messages`` list (user contents) or a ``prompt`` string in the body.
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

__all__ = ["FakeHTTPModel"]


class FakeHTTPModel(FakeServer):
    """A generic JSON text-generation endpoint; ``base_url`` is the origin.

    ``echo_auth_in_errors``: error messages quote the key the client sent (as some badly behaved
    servers do), to prove that adapters scrub it. ``echo_request_in_errors``: they also quote the
    ``Authorization`` header and the URL with its query string.
    """

    def __init__(self, *, api_key: str = "generic-key", **kwargs: Any) -> None:
        super().__init__(api_key=api_key, **kwargs)
        self.echo_auth_in_errors = False
        self.echo_request_in_errors = False

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/generate", self._generate)
        app.router.add_post("/generate/stream", self._generate)

    def _error(
        self, request: web.Request, status: int, message: str, **headers: str
    ) -> web.Response:
        if self.echo_auth_in_errors:
            message = f"{message} (key {request.headers.get('X-Api-Key', '')})"
        if self.echo_request_in_errors:
            auth = request.headers.get("Authorization", "")
            message = f"{message} (authorization {auth}, url {request.url})"
        return json_response(
            {"error": {"message": message, "code": status}}, status=status, headers=headers
        )

    def _fault_response(self, request: web.Request, fault: Fault) -> web.Response | None:
        kind = fault.kind
        if kind is FaultKind.UNAUTHORIZED:
            return self._error(request, 401, "invalid api key")
        if kind is FaultKind.RATE_LIMIT:
            return self._error(
                request, 429, "too many requests", **{"Retry-After": fault.retry_after}
            )
        if kind is FaultKind.SERVER_ERROR:
            return self._error(request, 500, "internal error")
        if kind is FaultKind.OVERLOADED:
            return self._error(request, 503, "model overloaded")
        if kind is FaultKind.CONTEXT_LENGTH:
            return self._error(request, 400, "input exceeds the model's context length")
        if kind is FaultKind.CONTENT_FILTER:
            return self._error(request, 400, "request blocked by the content filter")
        return None

    @staticmethod
    def _prompt(body: Any) -> tuple[str, list[str]]:
        if isinstance(body, dict) and isinstance(body.get("messages"), list):
            texts = [str(m.get("content", "")) for m in body["messages"]]
            users = [str(m.get("content", "")) for m in body["messages"] if m.get("role") == "user"]
            return "\n".join(users), texts
        if isinstance(body, dict) and isinstance(body.get("prompt"), str):
            return body["prompt"], [body["prompt"]]
        return "", []

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-Api-Key") != self.api_key:
            return self._error(request, 401, "invalid api key")
        body = await request.json()
        fault = await self.slow_start(request, self.take_fault())
        if fault is not None:
            answer = self._fault_response(request, fault)
            if answer is not None:
                return answer
        prompt, texts = self._prompt(body)
        max_tokens = body.get("max_tokens") if isinstance(body, dict) else None
        generation = self.generate(prompt, max_tokens if isinstance(max_tokens, int) else None)
        usage = {"prompt_tokens": count_words(texts), "completion_tokens": len(generation.tokens)}
        finish = self.finish_override or ("length" if generation.truncated else "stop")
        if request.path.endswith("/stream"):
            return await self._stream(request, generation, usage, finish, fault)
        reply = json_response(
            {"output": {"text": "".join(generation.tokens)}, "usage": usage, "finish": finish}
        )
        assert isinstance(reply.body, bytes)
        return await self.unary_fault(request, fault, reply.body) or reply

    async def _stream(
        self,
        request: web.Request,
        generation: Generation,
        usage: dict[str, int],
        finish: str,
        fault: Fault | None,
    ) -> web.StreamResponse:
        response = await self.open_sse(request)

        async def data(payload: Any) -> None:
            await self.send(request, response, f"data: {frame_json(payload)}\n\n".encode())

        async def fail(fault: Fault) -> None:
            if fault.kind is FaultKind.CUT_STREAM:
                self.cut(request)
            elif fault.kind is FaultKind.MALFORMED:
                await self.send(request, response, b'data: {"delta": \n\n')
            elif fault.kind is FaultKind.STREAM_ERROR:
                await data({"error": {"message": "worker crashed", "code": 500}})

        async def emit() -> None:
            stop_at = self.fault_point(fault, len(generation.tokens))
            for index, token in enumerate(generation.tokens):
                if fault is not None and index == stop_at:
                    return await fail(fault)
                await self.interlude(request, response, fault, index, b'data: {"delta": \n\n')
                await self.pause(request)
                await data({"delta": {"text": token}})
            if fault is not None and stop_at == len(generation.tokens):
                return await fail(fault)
            await data({"usage": usage, "finish": finish})
            await self.send(request, response, b"data: [DONE]\n\n")

        return await self.run_stream(request, response, emit)
