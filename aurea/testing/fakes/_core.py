"""What every fake upstream shares: lifecycle on 127.0.0.1, request recording, the fault queue,
scripted replies (a hostile upstream's exact bytes), deterministic replies, and token-by-token
streaming that notices when the client goes away."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

from aurea.testing.fakes._faults import (
    _INTERLUDES,
    _STREAM_FAULTS,
    Fault,
    FaultKind,
    Scripted,
    StreamAborted,
)
from aurea.testing.fakes._replies import (
    Generation,
    continue_after,
    count_words,
    echo_reply,
    pieces,
    split_tokens,
)

__all__ = [
    "FakeServer",
    "Fault",
    "FaultKind",
    "Generation",
    "RecordedRequest",
    "Scripted",
    "StreamAborted",
    "continue_after",
    "count_words",
    "echo_reply",
    "frame_json",
    "json_response",
    "pieces",
    "split_tokens",
]


_LONGEST_HOLD_S = 3600.0  # SILENT: "forever", within reason


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON when it was JSON, else the raw bytes
    at: float = 0.0  # when it arrived (the event loop's monotonic clock)


class FakeServer:
    """Base of every fake: start it (``async with`` or ``start()``), point an adapter at
    ``base_url``, inject ``faults``, and inspect ``requests`` / ``aborted_streams`` afterwards.

    Knobs shared by all fakes: ``api_key`` (what the fake accepts), ``token_delay_s`` (sleep
    between streamed tokens), ``reply`` (prompt -> reply text), ``cached_input_tokens`` and
    ``reasoning_tokens`` (reported in usage), ``finish_override`` (a provider-native finish
    reason to report instead of the natural one), ``always`` (a fault for every request while
    the queue is empty: an upstream down for good), ``honour_prefill`` (continue a trailing
    assistant message instead of answering anew) and ``reject_prefill`` (refuse one with a 400,
    as models without prefill support do). ``requests`` are timestamped (``at``).

    Rich generation: ``tool_calls`` (tool name, arguments JSON text) is what the model calls
    when a request offers tools and does not end with tool results; its arguments are streamed
    in pieces of ``argument_piece`` characters (a stream fault's ``after_tokens`` then counts
    pieces). A request that ends with tool results is answered ``answer_after_tools(results)``.
    ``thoughts`` is reasoning streamed before the answer, in each vendor's format, when the
    request asks for reasoning (OpenAI-compatible servers: always). ``json_answer`` is the
    answer (JSON text, streamed in ``argument_piece`` pieces) to a request for JSON output.
    """

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        token_delay_s: float = 0.0,
        reply: Callable[[str], str] = echo_reply,
    ) -> None:
        self.api_key = api_key
        self.token_delay_s = token_delay_s
        self.reply = reply
        self.cached_input_tokens = 0
        self.reasoning_tokens = 0
        self.finish_override: str | None = None
        self.always: Fault | None = None
        self.honour_prefill = False
        self.reject_prefill = False
        self.tool_calls: list[tuple[str, str]] = []
        self.argument_piece = 5
        self.answer_after_tools: Callable[[list[str]], str] = lambda results: (
            "Tool results: " + " | ".join(results)
        )
        self.thoughts = ""
        # The JSON text the model answers with when the request asks for JSON (None: the
        # usual reply, whatever the schema).
        self.json_answer: str | None = None
        self.faults: collections.deque[Fault] = collections.deque()
        self.scripted: collections.deque[Scripted] = collections.deque()
        self.requests: list[RecordedRequest] = []
        self.aborted_streams = 0
        self.completed_streams = 0
        self.active_streams = 0  # streams being written right now
        self.max_active_streams = 0  # the most that were ever written at once
        self.stream_aborted = asyncio.Event()  # set when a client disconnects mid-stream
        self._runner: web.AppRunner | None = None
        self._origin = ""

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> str:
        """Listen on 127.0.0.1 (a free port) and return ``base_url`` (idempotent)."""
        if self._runner is None:
            app = web.Application()
            self.add_routes(app)
            app.middlewares.append(self._record)
            # Handlers still running at stop() (a slow stream nobody reads) are cut after 0.5 s.
            runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self._origin = f"http://{host}:{port}"
            self._runner = runner
        return self.base_url

    async def stop(self) -> None:
        """Stop listening and drop open connections (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self._origin

    @property
    def base_url(self) -> str:
        """What to put in ``ProviderSpec.base_url`` (subclasses add their API prefix)."""
        return self._origin

    # -- inspection ----------------------------------------------------------------------------
    @property
    def request_count(self) -> int:
        return len(self.requests)

    def attempts(self, path: str = "") -> list[RecordedRequest]:
        """The requests whose path contains ``path``, in arrival order (each with ``at``)."""
        return [r for r in self.requests if path in r.path]

    @property
    def last_request(self) -> RecordedRequest | None:
        return self.requests[-1] if self.requests else None

    @property
    def last_request_body(self) -> Any:
        return self.requests[-1].body if self.requests else None

    def script(self, *replies: Scripted) -> None:
        """Queue verbatim replies; each is sent to the next request matching its ``path``."""
        self.scripted.extend(replies)

    def inject(self, *faults: Fault | FaultKind) -> None:
        """Queue faults; each following request consumes one."""
        for fault in faults:
            self.faults.append(fault if isinstance(fault, Fault) else Fault(fault))

    # -- for subclasses ------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def take_fault(self) -> Fault | None:
        return self.faults.popleft() if self.faults else self.always

    def generate(self, prompt: str, max_tokens: int | None, prefill: str = "") -> Generation:
        tokens = split_tokens(self.reply(prompt))
        if prefill and self.honour_prefill:
            tokens = continue_after(tokens, prefill)
        if max_tokens is not None and len(tokens) > max_tokens:
            return Generation(tokens[: max(max_tokens, 0)], truncated=True)
        return Generation(tokens, truncated=False)

    async def slow_start(self, request: web.Request, fault: Fault | None) -> Fault | None:
        """Apply SLOW_FIRST_BYTE (then forget it); return the fault still to apply, if any."""
        if fault is not None and fault.kind is FaultKind.SLOW_FIRST_BYTE:
            loop = asyncio.get_running_loop()
            until = loop.time() + fault.delay_s
            while loop.time() < until:  # stop waiting as soon as the client gave up
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                await asyncio.sleep(min(0.01, max(until - loop.time(), 0)))
            return None
        return fault

    async def hold(self, request: web.Request, seconds: float) -> None:
        """Stay silent for ``seconds``; StreamAborted as soon as the client has gone."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while loop.time() < until:
            transport = request.transport
            if transport is None or transport.is_closing():
                raise StreamAborted
            await asyncio.sleep(min(0.01, max(until - loop.time(), 0)))

    async def interlude(
        self,
        request: web.Request,
        response: web.StreamResponse,
        fault: Fault | None,
        index: int,
        malformed: bytes,
    ) -> None:
        """Before token ``index``: the faults after which a stream goes on (SLOW_FIRST_TOKEN,
        STALL, MALFORMED_CHUNK, whose broken frame is ``malformed``)."""
        if fault is None or fault.kind not in _INTERLUDES:
            return
        at = 0 if fault.kind is FaultKind.SLOW_FIRST_TOKEN else fault.after_tokens
        if index != at:
            return
        if fault.kind is FaultKind.MALFORMED_CHUNK:
            await self.send(request, response, malformed)
        else:
            await self.hold(request, fault.delay_s)

    async def open_sse(self, request: web.Request, **headers: str) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **headers,
            },
        )
        await response.prepare(request)
        return response

    async def send(self, request: web.Request, response: web.StreamResponse, data: bytes) -> None:
        """Write one frame; StreamAborted when the client has gone away."""
        transport = request.transport
        if transport is None or transport.is_closing():
            raise StreamAborted
        try:
            await response.write(data)
        except (ConnectionResetError, ConnectionError) as exc:
            raise StreamAborted from exc

    async def pause(self, request: web.Request) -> None:
        """The per-token delay; StreamAborted as soon as the client disconnects."""
        if self.token_delay_s <= 0:
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(self.token_delay_s)
        transport = request.transport
        if transport is None or transport.is_closing():
            raise StreamAborted

    @staticmethod
    def fault_point(fault: Fault | None, n_tokens: int) -> int | None:
        """Index of the token before which a stream fault fires (``n_tokens`` = after the last)."""
        if fault is None or fault.kind not in _STREAM_FAULTS:
            return None
        return min(max(fault.after_tokens, 0), n_tokens)

    async def unary_fault(
        self, request: web.Request, fault: Fault | None, body: bytes
    ) -> web.StreamResponse | None:
        """Stream faults on a non-streaming call: CUT_STREAM drops the connection half-way through
        the body; MALFORMED / EARLY_EOF send a truncated (invalid) JSON body."""
        if fault is None:
            return None
        if fault.kind is FaultKind.CUT_STREAM:
            response = web.StreamResponse(
                status=200,
                headers={"Content-Type": "application/json", "Content-Length": str(len(body))},
            )
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            self.cut(request)
            return response
        if fault.kind in (FaultKind.MALFORMED, FaultKind.EARLY_EOF):
            return web.Response(
                status=200, body=body[: len(body) // 2], content_type="application/json"
            )
        return None

    def cut(self, request: web.Request) -> None:
        """Close the connection mid-body: the client sees a truncated chunked stream."""
        if request.transport is not None:
            request.transport.close()

    async def run_stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        body: Callable[[], Awaitable[None]],
    ) -> web.StreamResponse:
        """Run a stream body, counting a client disconnect as an abort."""
        self.active_streams += 1
        self.max_active_streams = max(self.max_active_streams, self.active_streams)
        try:
            await body()
        except StreamAborted:
            self.aborted_streams += 1
            self.stream_aborted.set()
            return response
        finally:
            self.active_streams -= 1
        self.completed_streams += 1
        if request.transport is not None and not request.transport.is_closing():
            await response.write_eof()
        return response

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        at = asyncio.get_running_loop().time()
        raw = await request.read()
        body: Any = raw
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=body,
                at=at,
            )
        )
        head = self.faults[0] if self.faults else self.always
        if head is not None and head.kind in (FaultKind.SILENT, FaultKind.RESET):
            self.take_fault()
            return await self._silence_or_reset(request, head)
        for scripted in self.scripted:
            if scripted.path in request.path:
                self.scripted.remove(scripted)
                return await scripted.serve(request)
        return await handler(request)

    async def _silence_or_reset(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind is FaultKind.SILENT:
            with contextlib.suppress(StreamAborted):
                await self.hold(request, _LONGEST_HOLD_S)
        transport = request.transport
        if transport is not None and not transport.is_closing():
            sock = transport.get_extra_info("socket")
            if fault.kind is FaultKind.RESET and sock is not None:
                # Linger 0: close() sends a TCP RST instead of a FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return web.Response(status=500)


def json_response(
    payload: Any,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    indent: int | None = None,
) -> web.Response:
    """A JSON reply (UTF-8; ``indent`` for APIs that pretty-print, as OpenAI does for errors)."""
    return web.Response(
        status=status,
        body=json.dumps(payload, indent=indent).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def frame_json(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))
