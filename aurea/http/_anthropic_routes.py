"""The Anthropic Messages routes of the HTTP door (``POST /v1/messages``, and its
``count_tokens``): parse the body, run the call through the same inference as every route,
answer in Anthropic's shapes (``_anthropic_sse`` renders them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from aurea.cache import CachedInference, cache_outcome
from aurea.edge import Edge
from aurea.errors import UnknownModel, UnsupportedFeature
from aurea.http._anthropic import parse_messages
from aurea.http._anthropic_options import anthropic_fields
from aurea.http._anthropic_sse import HEADER_ANTHROPIC_REQUEST_ID, AnthropicStream, message
from aurea.http._render import HEADER_COST, HEADER_MODEL, HEADER_PROVIDER
from aurea.http._responses import _STREAMING, HEADER_CACHE, Served, _json_response, _principal
from aurea.http._sse import broken_answer
from aurea.providers._tokens import estimate_messages_tokens, extra_tokens
from aurea.routing import RouterView
from aurea.runtime.context import request_id_var


class AnthropicRoutes:
    """``HttpDoor``'s Anthropic routes (it sets these attributes and methods)."""

    _edge: Edge
    _inference: CachedInference
    _view: RouterView

    if TYPE_CHECKING:

        async def _body(self, request: web.Request) -> Any: ...

        def _key_allows(self, name: str) -> bool: ...

    async def _messages(self, request: web.Request, started: float) -> Served:
        try:
            return await self._messages_call(request, started)
        except UnsupportedFeature as exc:  # raised before anything was sent
            raise anthropic_fields(exc) from None

    async def _messages_call(self, request: web.Request, started: float) -> Served:
        body = await self._body(request)
        rid = request_id_var.get()
        req = parse_messages(body, request.headers, rid, started, _principal())
        if req.stream:
            self._edge.begin_stream()  # counted against the key's most open streams
            request[_STREAMING] = True
            stream = AnthropicStream(request, rid)
            failed = await stream.run(self._inference, req.call)
            assert stream.response is not None
            return stream.response, failed
        final = await self._inference.generate(req.call)
        broken = broken_answer(final)
        if broken is not None:
            raise broken
        headers = {
            HEADER_ANTHROPIC_REQUEST_ID: rid,
            HEADER_COST: str(final.cost_nanos),
            HEADER_MODEL: final.model,
            HEADER_PROVIDER: final.provider,
            HEADER_CACHE: "hit" if cache_outcome().hit else "miss",
        }
        return _json_response(200, message(final, rid), rid, headers), None

    async def _count_tokens(self, request: web.Request, started: float) -> Served:
        """Aurea's estimate of the prompt's tokens (its tokenizer for the model, the same count
        the limiter admits by), for a catalog model the caller may use."""
        body = await self._body(request)
        rid = request_id_var.get()
        if isinstance(body, dict) and "max_tokens" not in body:
            body = {**body, "max_tokens": 1}  # not part of a count_tokens body
        req = parse_messages(body, request.headers, rid, started, _principal())
        name = req.call.model
        table = self._view.table
        group = table.groups.get(name)
        if group:  # a route group counts with its first model's tokenizer
            name = group[0].model.name
        spec = table.models.get(name)
        if spec is None or not table.permitted(name) or not self._key_allows(name):
            shown = name if len(name) <= 80 else f"{name[:80]}..."
            raise UnknownModel(f"model {shown!r} is not in this server's catalog", "model")
        count = estimate_messages_tokens(req.call.messages, spec.upstream)
        count += extra_tokens(req.call.tools, None, spec.upstream)
        headers = {HEADER_ANTHROPIC_REQUEST_ID: rid}
        return _json_response(200, {"input_tokens": count}, rid, headers), None
