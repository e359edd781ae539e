"""The gRPC adapter over the transport-neutral edge (``aurea.edge``): every ``aurea.v1`` call
is admitted by ``Edge.open_call``, answered with an ``x-request-id``, mapped through the one error
table when it fails, and closed by ``Edge.finish_call`` with the status the client received.

Every exit path ends the call with a status: an error that is not an AureaError, whatever its
class (even a BaseException such as a pyo3 PanicException), is INTERNAL plus an ``rpc_bug`` log
line, never a hung call. Health and reflection calls pass untouched, so load balancers and
grpcurl always work.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc._cython import cygrpc

from aurea.api.status import Status, internal_status, to_status, with_metadata
from aurea.config import ApiKey, Settings
from aurea.edge import REVOKED, CallTracker, Edge, log_bug, revoked_now
from aurea.errors import AureaError, InvalidRequest, Unauthenticated
from aurea.runtime.context import request_id_var
from aurea.security import limit_text

__all__ = ["AureaInterceptor", "CallTracker", "request_id_var", "server_kwargs"]

_RID = "x-request-id"

# What ``context.write`` raises when the client has gone (cancelled, or disconnected) before
# grpc cancels the handler's task. Servicers that write themselves may re-raise it as a
# CancelledError ``from`` it (aurea.inference.CallerGone); either way it is the caller leaving.
WRITE_FAILED: tuple[type[BaseException], ...] = tuple(
    c
    for c in (getattr(cygrpc, "ExecuteBatchError", None), getattr(cygrpc, "UsageError", None))
    if isinstance(c, type)
)
Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class _Undecodable:
    """Stands in for a request whose bytes did not decode (or were too many), so the wrapper
    can answer INVALID_ARGUMENT instead of grpc's UNKNOWN."""

    __slots__ = ("error", "size")

    def __init__(self, error: Exception | None, size: int = 0) -> None:
        self.error = error
        self.size = size  # > 0: the message was larger than [input] max_request_bytes


def _tolerant(
    deserializer: Callable[[bytes], Any] | None, max_bytes: int
) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    des = deserializer

    def decode(data: bytes) -> Any:
        if len(data) > max_bytes:  # not even parsed: a huge message costs no decoding
            return _Undecodable(None, len(data))
        try:
            return des(data)
        except Exception as exc:
            return _Undecodable(exc)

    return decode


def _check_decoded(request: Any) -> None:
    if isinstance(request, _Undecodable):
        if request.error is None:
            raise InvalidRequest.field(
                "request",
                f"the request message is {request.size} bytes, larger than this server "
                f"accepts {limit_text('max_request_bytes')}",
            )
        raise InvalidRequest(
            "the request message could not be decoded as the RPC's protobuf type "
            f"({type(request.error).__name__}); check the client's generated code and that "
            "strings are valid UTF-8"
        )


def _headers(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


def _deadline(edge: Edge, context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else edge.clock() + remaining


def _cancelled(context: grpc.aio.ServicerContext) -> str:
    """What a client whose call was cancelled under us received."""
    remaining = context.time_remaining()
    return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"


def _failure(exc: BaseException) -> grpc.Status:
    """The status for a failed call, with the request id; logs ``rpc_bug`` if it is a bug.
    Never raises: if even the error table fails on ``exc``, that is INTERNAL too."""
    rid = request_id_var.get()
    status: grpc.Status | None = None
    if isinstance(exc, AureaError):
        try:
            status = to_status(exc)
        except Exception as table_bug:
            log_bug(table_bug)
        else:
            if status.code is grpc.StatusCode.INTERNAL:
                status = None
    if status is None:
        log_bug(exc)
        status = internal_status(rid)
    return with_metadata(status, (_RID, rid))


def _outcome(
    exc: BaseException, context: grpc.aio.ServicerContext
) -> tuple[str, grpc.Status | None]:
    """The status name the client receives for a call that ended by ``exc``, and the status to
    abort with (None: grpc already knows what the client gets; let ``exc`` propagate)."""
    if isinstance(exc, grpc.aio.AbortError):  # the servicer aborted with its own status
        code = context.code()
        return (code.name if code is not None else "UNKNOWN"), None
    if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
        return _cancelled(context), None
    if isinstance(exc, WRITE_FAILED) or (
        isinstance(exc, asyncio.CancelledError) and isinstance(exc.__cause__, WRITE_FAILED)
    ):
        # The client has gone, but grpc has not cancelled this task (yet): end the call with
        # a status all the same, so a client that is somehow still there is not left hanging.
        code = _cancelled(context)
        rid = request_id_var.get()
        gone = Status(grpc.StatusCode[code], "the client went away", ((_RID, rid),))
        return code, gone
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "UNAVAILABLE", None  # the process is going down; the client loses the channel
    status = _failure(exc)
    return str(status.code.name), status


async def _abort(context: grpc.aio.ServicerContext, status: grpc.Status) -> None:
    """End the call with ``status`` (raises grpc's AbortError); if the stream is already gone
    grpc raises its write error instead, and there is nobody left to tell."""
    with contextlib.suppress(*WRITE_FAILED):
        await context.abort_with_status(status)


def _unrevoked(exc: BaseException) -> BaseException:
    """A call the edge cancelled because its key was disabled or rotated out ends
    UNAUTHENTICATED, not CANCELLED: the task takes back the edge's cancel to send that."""
    if isinstance(exc, asyncio.CancelledError) and revoked_now():
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return Unauthenticated(REVOKED)
    return exc


def _being_cancelled() -> bool:
    """A CancelledError means the client left (cancel or deadline) if this task is being
    cancelled (or a write to the client failed); one that escaped from awaiting someone else's
    cancelled task is a bug, and the client gets a status (INTERNAL) instead of a dropped call."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


class AureaInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each ``aurea.v1`` method's handler once (a method's handler never changes)."""

    def __init__(
        self,
        edge: Edge | None = None,
        *,
        keys: Iterable[ApiKey] = (),
        tracker: CallTracker | None = None,
    ) -> None:
        self.edge = edge if edge is not None else Edge(keys=keys, tracker=tracker)
        self._max_bytes = self.edge.limits.max_request_bytes
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

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
        operation = method[1:]
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(operation, handler.unary_unary),
                request_deserializer=_tolerant(handler.request_deserializer, self._max_bytes),
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(operation, handler.unary_stream),
                request_deserializer=_tolerant(handler.request_deserializer, self._max_bytes),
                response_serializer=handler.response_serializer,
            )
        else:
            return handler  # aurea.v1 has no client-streaming RPCs
        self._handlers[method] = wrapped
        return wrapped

    def _wrap_unary(self, operation: str, behavior: Handler) -> Handler:
        edge = self.edge

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = edge.clock()
            code = "OK"
            try:
                edge.open_call(operation, _headers(context), _deadline(edge, context))
                context.set_trailing_metadata(((_RID, request_id_var.get()),))
                _check_decoded(request)
                return await behavior(request, context)
            except BaseException as exc:
                code, status = _outcome(_unrevoked(exc), context)
                if status is None:
                    raise
                await _abort(context, status)
            finally:
                edge.finish_call(code, started)

        return unary

    def _wrap_stream(self, operation: str, behavior: Callable[..., Any]) -> Handler:
        # Servicers may be async generators (yield messages) or coroutines that write them with
        # ``context.write``; the wrapper is a coroutine either way, so no generator layer is
        # added. Decided once per method, not per call.
        is_generator = inspect.isasyncgenfunction(behavior)
        edge = self.edge

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> None:
            started = edge.clock()
            code = "OK"
            try:
                edge.open_call(operation, _headers(context), _deadline(edge, context))
                await context.send_initial_metadata(((_RID, request_id_var.get()),))
                _check_decoded(request)
                edge.begin_stream()  # counted against the key's most open streams
                if is_generator:
                    async with contextlib.aclosing(behavior(request, context)) as messages:
                        async for message in messages:
                            await context.write(message)
                else:
                    await behavior(request, context)
            except BaseException as exc:
                code, status = _outcome(_unrevoked(exc), context)
                if status is None:
                    raise
                await _abort(context, status)
            finally:
                edge.finish_call(code, started)

        return stream


def server_kwargs(settings: Settings, edge: Edge) -> dict[str, Any]:
    """Keyword arguments for ``grpc.aio.server(...)``: the interceptor over ``edge``, the socket
    options, and the cap on RPCs served at once (more are refused RESOURCE_EXHAUSTED by grpc
    itself, before any handler runs)."""
    s = settings.server
    # grpc itself refuses (RESOURCE_EXHAUSTED) only messages over twice the limit; between the
    # two the interceptor refuses INVALID_ARGUMENT naming the limit, without decoding.
    receive_max = min(2 * settings.input.max_request_bytes, 2**31 - 1)
    return {
        "interceptors": [AureaInterceptor(edge)],
        "options": [
            ("grpc.so_reuseport", 1 if s.reuse_port else 0),
            ("grpc.max_receive_message_length", receive_max),
        ],
        "maximum_concurrent_rpcs": s.max_concurrent_rpcs,
    }
