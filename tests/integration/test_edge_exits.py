"""Every way a call can end, through the real interceptor on a real grpc.aio server: the client
always gets a status (never a hung call), and exactly one ``rpc_finished`` line records the
status the client received. Unary handlers, async-generator streams and coroutine streams that
write with ``context.write`` are all covered."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc._cython import cygrpc
from grpc_status import rpc_status
from structlog.testing import capture_logs

from aurea.api.interceptors import AureaInterceptor
from aurea.config import ApiKey, hash_key
from aurea.edge import Edge, current_scope
from aurea.errors import NotFound, Overloaded, ProviderServerError
from aurea.telemetry.logging import context_processors

pytestmark = pytest.mark.integration

USER = "user-key-0123456789"
CALL_TIMEOUT_S = 10.0  # a bound that turns a hang into a failure, not a performance claim


class Panic(BaseException):
    """Like pyo3's PanicException: a BaseException that is not an Exception."""


async def stray_cancel() -> None:
    """Await a future someone else cancelled: a CancelledError while our task is not cancelled."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.cancel()
    await fut


async def act(what: bytes, context: grpc.aio.ServicerContext) -> None:
    match what:
        case b"aurea":
            raise NotFound("no such thing")
        case b"value":
            raise ValueError("secret detail")
        case b"panic":
            raise Panic("called `Option::unwrap()` on a `None` value")
        case b"hang":
            await asyncio.sleep(3600)
        case b"abort":
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "the servicer's own status")
        case b"stray":
            await stray_cancel()
        case b"inf":
            raise Overloaded("mailbox full", retry_after_s=math.inf)
        case b"huge":
            raise ProviderServerError("x" * 100_000, provider="p", status=500)
        case b"gone":  # what a servicer's writer raises when grpc says the client has gone
            raise asyncio.CancelledError("the client went away") from cygrpc.ExecuteBatchError()


async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await act(request, context)
    scope = current_scope.get()
    return f"ok {scope.request_id if scope else '-'}".encode()


async def generator_stream(
    request: bytes, context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    yield b"first"
    await act(request, context)
    yield b"second"


async def writer_stream(request: bytes, context: grpc.aio.ServicerContext) -> None:
    await context.write(b"first")
    await act(request, context)
    await context.write(b"second")


HANDLERS = {
    "aurea.v1.InferenceService": {
        "Generate": grpc.unary_unary_rpc_method_handler(unary),
        "GenerateStream": grpc.unary_stream_rpc_method_handler(generator_stream),
    },
    "aurea.v1.AdminService": {"WatchEvents": grpc.unary_stream_rpc_method_handler(writer_stream)},
    # An RPC nobody classified: admin-only (fail closed).
    "aurea.v1.FutureService": {"NewRpc": grpc.unary_unary_rpc_method_handler(unary)},
}


async def poll(predicate: Callable[[], bool]) -> bool:
    """Wait (bounded) until ``predicate()`` holds; return whether it did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CALL_TIMEOUT_S
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@dataclass
class Rig:
    edge: Edge
    channel: grpc.aio.Channel
    logs: list[dict[str, Any]]

    async def finished(self, rid: str) -> dict[str, Any]:
        """The one ``rpc_finished`` line of call ``rid`` (waits for the server to write it)."""
        assert await poll(lambda: not self.edge.tracker.in_flight and bool(self.lines(rid)))
        lines = self.lines(rid)
        assert len(lines) == 1, lines
        return lines[0]

    def lines(self, rid: str, event: str = "rpc_finished") -> list[dict[str, Any]]:
        return [e for e in self.logs if e["event"] == event and e.get("request_id") == rid]


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    edge = Edge(keys=[ApiKey(name="u", sha256=hash_key(USER), scopes=frozenset({"user"}))])
    server = grpc.aio.server(interceptors=[AureaInterceptor(edge)])
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(s, h) for s, h in HANDLERS.items()]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        with capture_logs(processors=context_processors()) as logs:
            yield Rig(edge, channel, logs)
    finally:
        await channel.close()
        await server.stop(0)


def md(rid: str) -> tuple[tuple[str, str], ...]:
    return (("x-request-id", rid), ("x-api-key", USER))


async def call_unary(rig: Rig, what: bytes, rid: str, deadline_s: float = CALL_TIMEOUT_S) -> Any:
    method = rig.channel.unary_unary("/aurea.v1.InferenceService/Generate")
    try:
        return await method(what, metadata=md(rid), timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        return exc


UNARY_CASES = [
    (b"ok", grpc.StatusCode.OK, False),
    (b"aurea", grpc.StatusCode.NOT_FOUND, False),
    (b"value", grpc.StatusCode.INTERNAL, True),
    (b"panic", grpc.StatusCode.INTERNAL, True),
    (b"stray", grpc.StatusCode.INTERNAL, True),
    (b"abort", grpc.StatusCode.ALREADY_EXISTS, False),
    (b"inf", grpc.StatusCode.UNAVAILABLE, False),
    (b"huge", grpc.StatusCode.UNAVAILABLE, False),
]


@pytest.mark.parametrize(
    ("what", "code", "bug"), UNARY_CASES, ids=[c[0].decode() for c in UNARY_CASES]
)
async def test_unary_exit_paths(rig: Rig, what: bytes, code: grpc.StatusCode, bug: bool) -> None:
    rid = f"unary-{what.decode()}"
    result = await call_unary(rig, what, rid)
    got = result.code() if isinstance(result, grpc.aio.AioRpcError) else grpc.StatusCode.OK
    assert got == code, result
    line = await rig.finished(rid)
    assert line["status"] == code.name
    assert bool(rig.lines(rid, "rpc_bug")) == bug
    if got is grpc.StatusCode.OK:
        assert result == f"ok {rid}".encode()  # the servicer saw its call's scope
        return
    trailing = dict(result.trailing_metadata() or ())
    assert trailing.get("x-request-id") == rid
    if bug:
        assert "secret" not in result.details() and rid in result.details()


async def test_a_garbage_retry_hint_reaches_the_client_clamped(rig: Rig) -> None:
    result = await call_unary(rig, b"inf", "retry-inf")
    status = rpc_status.from_call(result)
    assert status is not None
    hints = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    retry = error_details_pb2.RetryInfo()
    hints[0].Unpack(retry)
    assert retry.retry_delay.ToSeconds() == 3600


async def test_a_huge_upstream_error_reaches_the_client_bounded(rig: Rig) -> None:
    result = await call_unary(rig, b"huge", "huge-1")
    assert result.code() is grpc.StatusCode.UNAVAILABLE  # not RESOURCE_EXHAUSTED "Stream removed"
    assert result.details().startswith("xxxx") and "more characters" in result.details()
    assert len(result.details()) <= 1024


async def test_a_client_deadline_is_logged_as_deadline_exceeded(rig: Rig) -> None:
    result = await call_unary(rig, b"hang", "deadline-1", deadline_s=0.2)
    assert result.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert (await rig.finished("deadline-1"))["status"] == "DEADLINE_EXCEEDED"


async def test_a_client_cancel_is_logged_as_cancelled(rig: Rig) -> None:
    call = rig.channel.unary_unary("/aurea.v1.InferenceService/Generate")(
        b"hang", metadata=md("cancel-1"), timeout=CALL_TIMEOUT_S
    )
    assert await poll(lambda: rig.edge.tracker.in_flight == 1)
    call.cancel()
    assert (await rig.finished("cancel-1"))["status"] == "CANCELLED"


async def test_an_unclassified_rpc_is_admin_only(rig: Rig) -> None:
    method = rig.channel.unary_unary("/aurea.v1.FutureService/NewRpc")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await method(b"ok", metadata=md("future-1"), timeout=CALL_TIMEOUT_S)
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "admin" in (info.value.details() or "")
    assert (await rig.finished("future-1"))["status"] == "PERMISSION_DENIED"


STREAMS = {
    "generator": "/aurea.v1.InferenceService/GenerateStream",
    "writer": "/aurea.v1.AdminService/WatchEvents",
}
STREAM_CASES = [
    (b"ok", grpc.StatusCode.OK, False),
    (b"aurea", grpc.StatusCode.NOT_FOUND, False),
    (b"value", grpc.StatusCode.INTERNAL, True),
    (b"panic", grpc.StatusCode.INTERNAL, True),
    (b"stray", grpc.StatusCode.INTERNAL, True),
    (b"abort", grpc.StatusCode.ALREADY_EXISTS, False),
    (b"huge", grpc.StatusCode.UNAVAILABLE, False),
    (b"gone", grpc.StatusCode.CANCELLED, False),
]


@pytest.mark.parametrize("shape", sorted(STREAMS))
@pytest.mark.parametrize(
    ("what", "code", "bug"), STREAM_CASES, ids=[c[0].decode() for c in STREAM_CASES]
)
async def test_stream_exit_paths(
    rig: Rig, shape: str, what: bytes, code: grpc.StatusCode, bug: bool
) -> None:
    rid = f"{shape}-{what.decode()}"
    call = rig.channel.unary_stream(STREAMS[shape])(what, metadata=md(rid), timeout=CALL_TIMEOUT_S)
    got: list[bytes] = []
    try:
        async for message in call:
            got.append(message)
        status = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as exc:
        status = exc.code()
    assert status == code
    assert got == ([b"first", b"second"] if code is grpc.StatusCode.OK else [b"first"])
    assert dict(await call.initial_metadata())["x-request-id"] == rid
    assert (await rig.finished(rid))["status"] == code.name
    assert bool(rig.lines(rid, "rpc_bug")) == bug


@pytest.mark.parametrize("shape", sorted(STREAMS))
async def test_a_stream_cancelled_mid_way_is_logged_as_cancelled(rig: Rig, shape: str) -> None:
    rid = f"{shape}-cancel"
    call = rig.channel.unary_stream(STREAMS[shape])(
        b"hang", metadata=md(rid), timeout=CALL_TIMEOUT_S
    )
    assert await call.read() == b"first"
    call.cancel()
    assert (await rig.finished(rid))["status"] == "CANCELLED"


@pytest.mark.parametrize("shape", sorted(STREAMS))
async def test_a_stream_past_its_deadline_is_logged_as_deadline_exceeded(
    rig: Rig, shape: str
) -> None:
    rid = f"{shape}-deadline"
    call = rig.channel.unary_stream(STREAMS[shape])(b"hang", metadata=md(rid), timeout=0.5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert (await rig.finished(rid))["status"] == "DEADLINE_EXCEEDED"


async def test_a_generator_stream_is_closed_when_the_client_leaves(rig: Rig) -> None:
    """The servicer's generator runs its cleanup (``finally``) when the client cancels."""
    closed = asyncio.Event()

    async def watched(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await asyncio.sleep(3600)
        finally:
            closed.set()

    interceptor = rig.edge  # the rig's edge; build a second server for this servicer
    server = grpc.aio.server(interceptors=[AureaInterceptor(interceptor)])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "aurea.v1.InferenceService",
                {"GenerateStream": grpc.unary_stream_rpc_method_handler(watched)},
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_stream("/aurea.v1.InferenceService/GenerateStream")(
                b"", metadata=md("closed-1"), timeout=CALL_TIMEOUT_S
            )
            assert await call.read() == b"first"
            call.cancel()
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await closed.wait()
        assert (await rig.finished("closed-1"))["status"] == "CANCELLED"
    finally:
        await server.stop(0)
