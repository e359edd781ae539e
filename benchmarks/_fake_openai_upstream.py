"""A fake OpenAI Chat Completions upstream for the benchmarks, in its own process on 127.0.0.1.

``POST /v1/chat/completions`` answers in OpenAI's wire format: with ``"stream": true`` a
``text/event-stream`` body (chunked transfer encoding, one HTTP chunk per event, as OpenAI's
edge flushes them) of ``data: {json}\\n\\n`` events: a role chunk, ``--chunks`` content chunks
(``choices[0].delta.content``), a chunk with ``finish_reason: "stop"`` (``"length"`` when
``max_tokens`` cut the answer), the usage chunk with empty ``choices`` when
``stream_options.include_usage`` is set, then ``data: [DONE]``. With ``"stream": false`` it
answers one ``chat.completion`` JSON object. Bearer auth is checked when ``--api-key-env`` names
a set variable; errors use OpenAI's ``{"error": {...}}`` body. ``GET /v1/models`` lists the one
model; ``GET /_bench/stats`` reports how many chat requests it served (and how many failed),
so the benchmark can see retries it would otherwise miss.

It is a raw ``asyncio.Protocol`` on uvloop rather than an aiohttp app, on purpose: it shares two
cores with Aurea and the load generator, so it must cost as little CPU per call as possible
(about a tenth of an aiohttp handler). It parses the request line, headers and a
``Content-Length`` body (keep-alive, HTTP/1.1; a chunked request body gets 411) and answers
from bytes encoded once per distinct request body. Both sides of the comparison (the direct
client and Aurea) pay for the same upstream, so its cost cancels out of "added" figures.

Run by ``bench_upstream.py``; prints ``READY <port>`` on stdout once listening and stops on
SIGTERM or SIGINT:

    python benchmarks/_fake_openai_upstream.py --chunks 32 --api-key-env BENCH_UPSTREAM_KEY
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import Any, cast

import uvloop

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_CACHED_BODIES = 256  # distinct request bodies whose answers are kept encoded
CREATED = 1_700_000_000
FINGERPRINT = "fp_bench0001"
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
}


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def error_body(message: str, type_: str, code: str | None = None) -> bytes:
    return dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def json_reply(status: int, body: bytes, *, close: bool = False) -> bytes:
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Connection", "close" if close else "keep-alive"),
    ]
    return head(status, headers) + body


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Answers:
    """The encoded answer for each distinct request body (bounded; the benchmark sends few)."""

    def __init__(self, chunks: int) -> None:
        self.tokens = [("Steady" if i == 0 else f" token{i}") for i in range(chunks)]
        self._cache: dict[bytes, tuple[bool, list[bytes]]] = {}
        self._serial = 0

    def get(self, body: bytes) -> tuple[bool, list[bytes]]:
        """(streaming, the bytes to write in order) for a chat request body; raises ValueError."""
        hit = self._cache.get(body)
        if hit is None:
            hit = self._build(json.loads(body))
            if len(self._cache) >= MAX_CACHED_BODIES:
                self._cache.clear()
            self._cache[body] = hit
        return hit

    def _build(self, req: Any) -> tuple[bool, list[bytes]]:
        if not isinstance(req, dict) or not req.get("model"):
            raise ValueError("you must provide a model parameter")
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty array")
        self._serial += 1
        model = str(req["model"])
        limit = req.get("max_completion_tokens", req.get("max_tokens"))
        n = len(self.tokens) if not isinstance(limit, int) else max(0, min(limit, len(self.tokens)))
        tokens = self.tokens[:n]
        finish = "stop" if n == len(self.tokens) else "length"
        prompt_tokens = sum(len(str(m.get("content", "")).split()) + 4 for m in messages) + 3
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": n,
            "total_tokens": prompt_tokens + n,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        ident = f"chatcmpl-bench{self._serial:06d}"
        if not req.get("stream"):
            body = dumps(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": CREATED,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": "".join(tokens),
                                "refusal": None,
                                "annotations": [],
                            },
                            "logprobs": None,
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                    "service_tier": "default",
                    "system_fingerprint": FINGERPRINT,
                }
            )
            return False, [json_reply(200, body)]
        options = req.get("stream_options") or {}
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

        def event(choices: list[Any], usage_value: Any = None) -> bytes:
            chunk: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": FINGERPRINT,
                "choices": choices,
            }
            if include_usage:  # OpenAI sends "usage": null on every chunk but the last
                chunk["usage"] = usage_value
            return http_chunk(b"data: " + dumps(chunk) + b"\n\n")

        def choice(delta: dict[str, Any], finish_reason: str | None) -> list[Any]:
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

        sse_head = head(
            200,
            [
                ("Content-Type", "text/event-stream; charset=utf-8"),
                ("Transfer-Encoding", "chunked"),
                ("Cache-Control", "no-cache"),
                ("Connection", "keep-alive"),
            ],
        )
        out = [
            sse_head + event(choice({"role": "assistant", "content": "", "refusal": None}, None))
        ]
        out += [event(choice({"content": t}, None)) for t in tokens]
        out.append(event(choice({}, finish)))
        if include_usage:
            out.append(event([], usage))
        out.append(http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        return True, out


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.started = time.monotonic()


class Upstream(asyncio.Protocol):
    """One connection: parse requests one at a time and write their answers."""

    def __init__(self, answers: Answers, stats: Stats, api_key: str | None, delay_s: float) -> None:
        self._answers = answers
        self._stats = stats
        self._auth = f"Bearer {api_key}".encode() if api_key else None
        self._delay_s = delay_s
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy: asyncio.Task[None] | None = None  # a paced stream still being written

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, but has its methods.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._busy is not None:
            self._busy.cancel()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._busy is None:
            self._drain()

    def _drain(self) -> None:
        """Answer every complete request in the buffer, in order (pipelining is allowed)."""
        while self._transport is not None and self._busy is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD_BYTES:
                    self._fail(431, "request head too large")
                return
            lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self._fail(400, "malformed request line")
                return
            method, target, _version = parts
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    self._fail(400, "malformed header line")
                    return
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._fail(411, "send the body with Content-Length")
                return
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._fail(400, "bad Content-Length")
                return
            if length < 0 or length > MAX_BODY_BYTES:
                self._fail(413, "request body too large")
                return
            if len(self._buf) < end + 4 + length:
                return  # the body is still arriving
            body = bytes(self._buf[end + 4 : end + 4 + length])
            del self._buf[: end + 4 + length]
            close = headers.get("connection", "").lower() == "close"
            self._answer(method, target.split("?", 1)[0], headers, body, close)
            if close and self._transport is not None:
                self._transport.close()

    def _fail(self, status: int, message: str) -> None:
        """A request this server cannot parse: answer and close the connection."""
        self._stats.errors += 1
        if self._transport is not None:
            self._transport.write(
                json_reply(status, error_body(message, "invalid_request_error"), close=True)
            )
            self._transport.close()
        self._buf.clear()

    def _send_error(self, status: int, message: str, type_: str, code: str | None = None) -> None:
        self._stats.errors += 1
        assert self._transport is not None
        self._transport.write(json_reply(status, error_body(message, type_, code)))

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes, close: bool
    ) -> None:
        assert self._transport is not None
        if path == "/_bench/stats" and method == "GET":
            stats = {"requests": self._stats.requests, "errors": self._stats.errors}
            self._transport.write(json_reply(200, dumps(stats)))
            return
        if self._auth is not None and headers.get("authorization", "").encode() != self._auth:
            self._send_error(401, "Incorrect API key provided.", "invalid_request_error")
            return
        if path == "/v1/models" and method == "GET":
            model = {"id": "fake", "object": "model", "created": CREATED, "owned_by": "bench"}
            self._transport.write(json_reply(200, dumps({"object": "list", "data": [model]})))
            return
        if path != "/v1/chat/completions":
            self._send_error(404, f"Unknown request URL: {method} {path}.", "invalid_request_error")
            return
        if method != "POST":
            self._send_error(405, f"Method {method} not allowed.", "invalid_request_error")
            return
        self._stats.requests += 1
        try:
            streaming, frames = self._answers.get(body)
        except (ValueError, UnicodeDecodeError) as exc:
            self._send_error(400, str(exc)[:200], "invalid_request_error")
            return
        if not streaming or self._delay_s <= 0:
            for frame in frames:  # one write per event: the client sees them as sent
                self._transport.write(frame)
            return
        self._busy = asyncio.get_running_loop().create_task(self._paced(frames, close))

    async def _paced(self, frames: list[bytes], close: bool) -> None:
        """Write a stream with ``delay_s`` between its events (a model's token pace)."""
        try:
            for i, frame in enumerate(frames):
                if 0 < i < len(frames) - 1:
                    await asyncio.sleep(self._delay_s)
                if self._transport is None:
                    return
                self._transport.write(frame)
        finally:
            self._busy = None
        if close and self._transport is not None:
            self._transport.close()
        elif self._buf:
            self._drain()


async def serve(port: int, chunks: int, api_key: str | None, delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    answers, stats = Answers(chunks), Stats()

    def factory() -> Upstream:
        return Upstream(answers, stats, api_key, delay_s)

    server = await loop.create_server(factory, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()

    def watch_parent() -> None:
        # Reparented means the benchmark died without stopping us (kill -9): stop too.
        if os.getppid() != parent:
            stop.set()
        else:
            loop.call_later(1.0, watch_parent)

    loop.call_later(1.0, watch_parent)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        server.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free)")
    p.add_argument("--chunks", type=int, default=32, help="content chunks per answer (32)")
    p.add_argument(
        "--chunk-delay-ms",
        type=float,
        default=0.0,
        help="pause between stream events after the first, like a model's pace (0)",
    )
    p.add_argument(
        "--api-key-env",
        default="",
        help="require 'Authorization: Bearer $VAR' when this variable is set (default: no auth)",
    )
    args = p.parse_args(argv)
    if not 1 <= args.chunks <= 100_000:
        p.error("--chunks must be in [1, 100000]")
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    uvloop.run(serve(args.port, args.chunks, api_key or None, args.chunk_delay_ms / 1e3))


if __name__ == "__main__":
    main()
