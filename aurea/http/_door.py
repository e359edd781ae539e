"""The HTTP door, OpenAI-compatible (``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``)
and Anthropic-compatible (``/v1/messages``, ``/v1/messages/count_tokens``, with Anthropic's error
bodies): an aiohttp app over the same edge and inference core as the gRPC server, so every
door shares keys, scopes, request ids, draining, in-flight counting, the canonical log line,
routing, guards and every actor's state.

Each route is one edge operation (``"POST /v1/chat/completions"``, listed as a user operation
in ``aurea.edge._scopes``). Every exit path ends with a status: an AureaError through the one
error table (HTTP status, OpenAI ``type``/``code``, ``Retry-After``), anything else 500 with a
generic message and an ``rpc_bug`` log line, a client that left as ``CANCELLED``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from aurea.api.status import ANTHROPIC_TYPES
from aurea.cache import CachedInference, cache_outcome
from aurea.config import HttpSettings
from aurea.edge import REVOKED, Edge, log_bug, revoked_now
from aurea.errors import (
    InvalidRequest,
    Overloaded,
    Unauthenticated,
    UnknownModel,
)
from aurea.http._anthropic_routes import AnthropicRoutes
from aurea.http._chat import parse_chat
from aurea.http._embed import encode_vector, parse_embed
from aurea.http._render import (
    HEADER_COST,
    HEADER_MODEL,
    HEADER_PROVIDER,
    completion,
    dumps,
    embeddings,
    model_entry,
)
from aurea.http._responses import (
    _STREAMING,
    HEADER_CACHE,
    Served,
    _json_response,
    _principal,
    _too_large,
    _TooLarge,
    anthropic_error_response,
    error_response,
    status_name,
)
from aurea.http._sse import SseStream, broken_answer
from aurea.routing import RouterView
from aurea.runtime.context import request_id_var

__all__ = ["ROUTES", "HttpDoor"]

log = structlog.get_logger("aurea.http")

Serve = Callable[[web.Request, float], Awaitable[Served]]
# How a route answers an error: OpenAI's shape, or Anthropic's on the Messages routes.
Errors = Callable[[BaseException, str], web.Response]

ROUTES = (
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
)
ANTHROPIC_PATHS = frozenset({"/v1/messages", "/v1/messages/count_tokens"})


class HttpDoor(AnthropicRoutes):
    """``start(host, port)`` serves the door; ``stop()`` closes it (after the server drained)."""

    def __init__(
        self,
        *,
        settings: HttpSettings,
        edge: Edge,
        inference: CachedInference,  # the core behind the response cache, as over gRPC
        view: RouterView,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._edge = edge
        self._inference = inference
        self._view = view
        self._wall = wall_clock
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.active = 0  # requests being served now (bounded by max_concurrent_requests)
        self.app = self._build_app()

    def _build_app(self) -> web.Application:
        # One byte over the limit so aiohttp's own check never fires first: the door answers
        # 413 in OpenAI's shape itself.
        app = web.Application(client_max_size=self._settings.max_body_bytes + 1)
        serve: dict[str, Serve] = {
            "/v1/chat/completions": self._chat,
            "/v1/embeddings": self._embeddings,
            "/v1/models": self._models,
            "/v1/models/{model}": self._model,
            "/v1/messages": self._messages,
            "/v1/messages/count_tokens": self._count_tokens,
        }
        for method, path in ROUTES:
            errors = anthropic_error_response if path in ANTHROPIC_PATHS else error_response
            handler = self._handler(f"{method} {path}", serve[path], errors)
            app.router.add_route(method, path, handler)
        app.middlewares.append(_unrouted)
        return app

    # -- lifecycle -----------------------------------------------------------------------
    async def start(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
    ) -> int:
        """Listen on ``host:port`` (0: a free port), over TLS with ``ssl_context``; returns the
        bound port. Raises OSError when the address cannot be bound. Idempotent."""
        if self._runner is not None:
            return self.port
        # handler_cancellation: a client that disconnects cancels its call (and the upstream
        # request) instead of leaving it to run to the end for nobody.
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=0.5,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Close the listener and any connection still open (idempotent). The server drains
        calls through the shared tracker before it calls this."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- the edge around every route -----------------------------------------------------
    def _handler(
        self, operation: str, serve: Serve, errors: Errors = error_response
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        edge = self._edge
        cap = self._settings.max_concurrent_requests

        async def handle(request: web.Request) -> web.StreamResponse:
            started = edge.clock()
            status = "OK"
            http_status = 0
            self.active += 1
            try:
                edge.open_call(operation, request.headers, None, transport="http")
                structlog.contextvars.bind_contextvars(rpc=operation)
                if self.active > cap:  # grpc's maximum_concurrent_rpcs, for this door
                    raise Overloaded(
                        f"the HTTP door is serving its most requests at once ({cap})",
                        retry_after_s=1.0,
                    )
                response, failed = await serve(request, started)
                http_status = response.status
                if failed is not None:
                    status = status_name(failed)
                    if status == "INTERNAL":
                        log_bug(failed)
                return response
            except asyncio.CancelledError:
                if not revoked_now():
                    status, http_status = "CANCELLED", 499  # nginx's "client closed request"
                    raise
                # The edge ended the call: its key was disabled or rotated out.
                status, http_status = "UNAUTHENTICATED", 401
                if request.get(_STREAMING):
                    raise  # the stream's 200 is out: only closing it is left
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                return errors(Unauthenticated(REVOKED), request_id_var.get())
            except _TooLarge:
                status, http_status = "INVALID_ARGUMENT", 413
                limit = self._settings.max_body_bytes
                anthropic = errors is anthropic_error_response
                return _too_large(limit, request_id_var.get(), anthropic)
            except Exception as exc:
                status = status_name(exc)
                if status == "INTERNAL":
                    log_bug(exc)
                response = errors(exc, request_id_var.get())
                http_status = response.status
                return response
            finally:
                self.active -= 1
                structlog.contextvars.bind_contextvars(rpc=operation, http_status=http_status)
                edge.finish_call(status, started)

        return handle

    async def _body(self, request: web.Request) -> Any:
        limit = self._settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _TooLarge
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _TooLarge from None
        if len(raw) > limit:
            raise _TooLarge
        if not raw:
            raise InvalidRequest("the request body is empty; send a JSON object")
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            # ValueError covers bad JSON, bad UTF-8 and integers too long to parse.
            raise InvalidRequest(f"the request body is not valid JSON: {str(exc)[:200]}") from None

    # -- routes ----------------------------------------------------------------------------
    async def _chat(self, request: web.Request, started: float) -> Served:
        body = await self._body(request)
        rid = request_id_var.get()
        req = parse_chat(body, request.headers, rid, started, _principal())
        created = int(self._wall())
        if req.stream:
            self._edge.begin_stream()  # counted against the key's most open streams
            request[_STREAMING] = True
            stream = SseStream(request, rid, created, req.include_usage)
            failed = await stream.run(self._inference, req.call)
            assert stream.response is not None
            return stream.response, failed
        final = await self._inference.generate(req.call)
        broken = broken_answer(final)
        if broken is not None:
            raise broken
        headers = {
            HEADER_COST: str(final.cost_nanos),
            HEADER_MODEL: final.model,
            HEADER_PROVIDER: final.provider,
            HEADER_CACHE: "hit" if cache_outcome().hit else "miss",
        }
        return _json_response(200, completion(final, rid, created), rid, headers), None

    async def _embeddings(self, request: web.Request, started: float) -> Served:
        body = await self._body(request)
        rid = request_id_var.get()
        req = parse_embed(body, request.headers, rid, started, _principal())
        result = await self._inference.embed(req.call)
        vectors = [encode_vector(v, req.base64) for v in result.vectors]
        headers = {
            HEADER_COST: str(result.cost_nanos),
            HEADER_MODEL: result.model,
            HEADER_PROVIDER: result.provider,
            HEADER_CACHE: "hit" if cache_outcome().hit else "miss",
        }
        return _json_response(200, embeddings(result, vectors), rid, headers), None

    def _key_allows(self, name: str) -> bool:
        """Whether the calling key's model list (if it has one) lets it use ``name``."""
        key = self._edge.keys.get(_principal())
        if key is None or not key.models or name in key.models:
            return True
        groups = self._view.table.groups
        return any(c.model.name == name for g in key.models for c in groups.get(g, ()))

    async def _models(self, request: web.Request, started: float) -> Served:
        table = self._view.table
        data = [
            model_entry(m.name, m.provider, m.kind)
            for m in table.permitted_models()
            if self._key_allows(m.name)
        ]
        rid = request_id_var.get()
        return _json_response(200, {"object": "list", "data": data}, rid), None

    async def _model(self, request: web.Request, started: float) -> Served:
        name = request.match_info["model"]
        table = self._view.table
        spec = table.models.get(name)
        if spec is None or not table.permitted(name) or not self._key_allows(name):
            shown = name if len(name) <= 80 else f"{name[:80]}..."
            raise UnknownModel(f"model {shown!r} is not in this server's catalog", "model")
        rid = request_id_var.get()
        return _json_response(200, model_entry(spec.name, spec.provider, spec.kind), rid), None


@web.middleware
async def _unrouted(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown paths and wrong methods answer in OpenAI's error shape, not aiohttp's text."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status not in (404, 405):
            raise
        message = f"Invalid URL ({request.method} {request.path})"
        if exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        body = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": "unknown_url" if exc.status == 404 else "method_not_allowed",
            }
        }
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        if request.path in ANTHROPIC_PATHS:
            kind = ANTHROPIC_TYPES.get(exc.status, "invalid_request_error")
            error = {"type": kind, "message": message}
            return web.Response(
                status=exc.status,
                body=dumps({"type": "error", "error": error}),
                content_type="application/json",
                headers=headers,
            )
        return web.Response(
            status=exc.status, body=dumps(body), content_type="application/json", headers=headers
        )
