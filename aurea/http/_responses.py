"""What the HTTP door's routes share: JSON responses, the OpenAI- and Anthropic-shaped error
responses from the one status table, the too-large answer, and the caller's key name."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aurea.api.status import anthropic_error, openai_error, row_for
from aurea.edge import current_scope
from aurea.errors import AureaError
from aurea.http._anthropic_sse import HEADER_ANTHROPIC_REQUEST_ID
from aurea.http._render import HEADER_REQUEST_ID, dumps, error_headers

HEADER_CACHE = "x-aurea-cache"  # hit / miss: whether Aurea's response cache answered

# What a route's body returns: the response, and the error it ended with in-band (a stream
# that had begun), for the log line's status.
Served = tuple[web.StreamResponse, BaseException | None]


def _json_response(
    status: int, payload: Any, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=dumps(payload),
        content_type="application/json",
        headers={HEADER_REQUEST_ID: request_id, **(headers or {})},
    )


def error_response(exc: BaseException, request_id: str) -> web.Response:
    status, body = openai_error(exc, request_id)
    return _json_response(status, body, request_id, error_headers(exc))


def anthropic_error_response(exc: BaseException, request_id: str) -> web.Response:
    status, body = anthropic_error(exc, request_id)
    headers = {HEADER_ANTHROPIC_REQUEST_ID: request_id, **error_headers(exc)}
    return _json_response(status, body, request_id, headers)


def status_name(exc: BaseException) -> str:
    """The status the canonical log line names (the gRPC code's name, as for the gRPC door)."""
    if not isinstance(exc, AureaError):
        return "INTERNAL"
    return str(row_for(exc).grpc.name)


def _too_large(limit: int, request_id: str, anthropic: bool = False) -> web.Response:
    message = f"the request body is larger than this server accepts ({limit} bytes)"
    if anthropic:
        error = {"type": "request_too_large", "message": message}
        body: dict[str, Any] = {"type": "error", "error": error, "request_id": request_id}
        return _json_response(413, body, request_id, {HEADER_ANTHROPIC_REQUEST_ID: request_id})
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "request_too_large",
        }
    }
    return _json_response(413, body, request_id)


class _TooLarge(Exception):
    pass


_STREAMING = web.RequestKey("aurea_streaming", bool)  # set once a stream's response may have begun


def _principal() -> str:
    """The API key's name the edge admitted this call with ("" in open mode)."""
    scope = current_scope.get()
    return scope.principal if scope is not None else ""
