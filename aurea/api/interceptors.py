"""The server interceptor every ``aurea.v1`` call passes through: request id, API-key auth with
scopes, draining, the error-to-status mapping and one canonical ``rpc_finished`` log line.

Health and reflection calls pass untouched, so load balancers and grpcurl always work.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
import structlog

from aurea.api.status import code_for, internal_status, to_status, with_metadata
from aurea.config import ApiKey, hash_key
from aurea.errors import (
    AureaError,
    InvalidRequest,
    PermissionDenied,
    ShuttingDown,
    Unauthenticated,
)

log = structlog.get_logger("aurea.api")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# RPCs that need the admin scope; every other aurea.v1 RPC needs `user` (admin includes user).
ADMIN_METHODS = frozenset({
    "/aurea.v1.RouterService/OptimizeWeights",
    "/aurea.v1.RouterService/SetWeights",
    "/aurea.v1.LedgerService/SetBudget",
    "/aurea.v1.TaskService/ScalePool",
    "/aurea.v1.InfrastructureService/Provision",
    "/aurea.v1.InfrastructureService/Execute",
    "/aurea.v1.InfrastructureService/Release",
    "/aurea.v1.InfrastructureService/Scale",
    "/aurea.v1.InfrastructureService/Cleanup",
    "/aurea.v1.AdminService/ClearCache",
    "/aurea.v1.AdminService/SetModelLimits",
})  # fmt: skip


class _Undecodable:
    """Stands in for a request whose bytes did not decode, so the wrapper can answer
    INVALID_ARGUMENT instead of grpc's UNKNOWN."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    des = deserializer

    def decode(data: bytes) -> Any:
        try:
            return des(data)
        except Exception as exc:
            return _Undecodable(exc)

    return decode


def _check_decoded(request: Any) -> None:
    if isinstance(request, _Undecodable):
        raise InvalidRequest(
            "the request message could not be decoded as the RPC's protobuf type "
            f"({type(request.error).__name__}); check the client's generated code and that "
            "strings are valid UTF-8"
        )


# Calls still answered while draining, so operators can watch the drain.
DRAIN_EXEMPT = frozenset({"/aurea.v1.AdminService/GetInfo"})


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable() and " " not in value


class CallTracker:
    """Counts in-flight aurea.v1 calls so a drain can wait for them."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class AureaInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, *, keys: Iterable[ApiKey], tracker: CallTracker) -> None:
        self._keys: Mapping[str, ApiKey] = {k.sha256: k for k in keys}
        self._tracker = tracker
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def _authorize(self, method: str, metadata: Mapping[str, str]) -> str:
        """The key's name, or "" in open mode; raises Unauthenticated / PermissionDenied."""
        if not self._keys:
            return ""
        raw = metadata.get("x-api-key", "")
        auth = metadata.get("authorization", "")
        if not raw and auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization metadata must be 'Bearer <API key>'")
            raw = token.strip()
        if not raw:
            raise Unauthenticated(
                "this server needs an API key: send 'authorization: Bearer KEY' or 'x-api-key: KEY'"
            )
        key = self._keys.get(hash_key(raw))
        if key is None:
            raise Unauthenticated("the API key is not valid")
        needed = "admin" if method in ADMIN_METHODS else "user"
        if needed not in key.scopes and not (needed == "user" and "admin" in key.scopes):
            rpc = method.rsplit("/", 1)[-1]
            raise PermissionDenied(
                f"{rpc} needs the '{needed}' scope; this key has {', '.join(sorted(key.scopes))}"
            )
        return key.name

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        cached = self._handlers.get(method)
        if cached is not None:
            return cached
        handler = await continuation(details)
        if handler is None or not method.startswith("/aurea.v1."):
            return handler
        # A method's handler never changes, so its wrapper is built once and reused.
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        else:
            return handler  # aurea.v1 has no client-streaming RPCs
        self._handlers[method] = wrapped
        return wrapped

    @staticmethod
    def _request_id(method: str, meta: Mapping[str, str]) -> str:
        rid = meta.get("x-request-id", "")
        if not _valid_request_id(rid):
            rid = os.urandom(16).hex()
        request_id_var.set(rid)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid, rpc=method.rsplit("/", 1)[-1])
        return rid

    def _admit(self, method: str, meta: Mapping[str, str]) -> None:
        if self._tracker.draining and method not in DRAIN_EXEMPT:
            raise ShuttingDown(
                "the server is draining for shutdown; retry on another replica", retry_after_s=1.0
            )
        key = self._authorize(method, meta)
        if key:
            structlog.contextvars.bind_contextvars(api_key=key)

    async def _fail(self, context: grpc.aio.ServicerContext, rid: str, exc: BaseException) -> str:
        if isinstance(exc, AureaError):
            status = to_status(exc)
            code = code_for(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.error("rpc_bug", error=repr(exc), exc_info=exc)
                status = internal_status(rid)
        else:
            log.error("rpc_bug", error=repr(exc), exc_info=exc)
            status = internal_status(rid)
            code = grpc.StatusCode.INTERNAL
        await context.abort_with_status(with_metadata(status, ("x-request-id", rid)))
        return str(code.name)  # pragma: no cover - abort raises

    def _finish(self, t0: float, code: str) -> None:
        self._tracker.leave()
        log.info("rpc_finished", status=code, latency_ms=round((time.perf_counter() - t0) * 1e3, 3))

    def _wrap_unary(
        self, method: str, behavior: Callable[..., Awaitable[Any]]
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            t0 = time.perf_counter()
            self._tracker.enter()
            meta = _metadata(context)
            code, rid = "OK", self._request_id(method, meta)
            try:
                context.set_trailing_metadata((("x-request-id", rid),))
                self._admit(method, meta)
                _check_decoded(request)
                return await behavior(request, context)
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except grpc.aio.AbortError:
                code = context.code().name if context.code() else "ABORTED"
                raise
            except Exception as exc:
                code = code_for(exc).name if isinstance(exc, AureaError) else "INTERNAL"
                await self._fail(context, rid, exc)
            finally:
                self._finish(t0, code)

        return unary

    def _wrap_stream(
        self, method: str, behavior: Callable[..., AsyncIterator[Any]]
    ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            t0 = time.perf_counter()
            self._tracker.enter()
            meta = _metadata(context)
            code, rid = "OK", self._request_id(method, meta)
            try:
                self._admit(method, meta)
                _check_decoded(request)
                await context.send_initial_metadata((("x-request-id", rid),))
                async for item in behavior(request, context):
                    yield item
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except grpc.aio.AbortError:
                code = context.code().name if context.code() else "ABORTED"
                raise
            except Exception as exc:
                code = code_for(exc).name if isinstance(exc, AureaError) else "INTERNAL"
                await self._fail(context, rid, exc)
            finally:
                self._finish(t0, code)

        return stream
