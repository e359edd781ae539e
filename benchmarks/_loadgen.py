"""Closed-loop load generator: C workers (uvloop), each calling one RPC back to back for a
warm-up and then a measured window, recording per-call latency (and, for streams, time to the
first text delta). Prints one JSON object on stdout.

Against a gRPC server (``--target``) the workers share one grpc.aio channel. With
``--direct-url`` they call an OpenAI-compatible upstream straight over HTTP instead (one pooled
aiohttp session): ``Generate`` is a ``"stream": false`` request, ``GenerateStream`` an SSE
stream read to ``data: [DONE]``, its first text being the first chunk with non-empty
``choices[0].delta.content``. That is the baseline Aurea's upstream point is measured against.

Run by ``bench_inference.py`` and ``bench_upstream.py`` as a separate process, so the client's
CPU is not the server's:

    python benchmarks/_loadgen.py --target 127.0.0.1:50051 --rpc Generate --concurrency 16
    python benchmarks/_loadgen.py --direct-url http://127.0.0.1:8000/v1 --rpc GenerateStream
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import uvloop

from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

RPCS = ("Generate", "GenerateStream")


@dataclass
class Tally:
    latencies_s: list[float] = field(default_factory=list)
    ttfd_s: list[float] = field(default_factory=list)
    events: int = 0  # stream messages received in the window
    errors: dict[str, int] = field(default_factory=dict)
    calls: int = 0  # every call started, warm-up included

    def error(self, exc: BaseException) -> None:
        if isinstance(exc, grpc.aio.AioRpcError):
            code = exc.code().name
        elif isinstance(exc, HttpStatusError):
            code = str(exc)
        else:
            code = type(exc).__name__
        self.errors[code] = self.errors.get(code, 0) + 1


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in [0, 100])."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def summary_ms(values_s: list[float], prefix: str = "") -> dict[str, float]:
    s = sorted(values_s)
    return {
        f"{prefix}p50_ms": round(percentile(s, 50) * 1e3, 3),
        f"{prefix}p90_ms": round(percentile(s, 90) * 1e3, 3),
        f"{prefix}p99_ms": round(percentile(s, 99) * 1e3, 3),
    }


class HttpStatusError(Exception):
    """The upstream answered a status other than 200 (tallied as ``HTTP_<status>``)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP_{status}")


class IncompleteStreamError(Exception):
    """The SSE body ended without ``data: [DONE]``."""


# One call: returns (perf_counter time of the first text delta or 0.0, events received).
Call = Callable[[], Awaitable[tuple[float, int]]]
CALL_ERRORS = (
    grpc.RpcError,
    aiohttp.ClientError,
    TimeoutError,
    HttpStatusError,
    IncompleteStreamError,
    ValueError,  # a malformed JSON reply or chunk
)


def grpc_calls(args: argparse.Namespace, channel: grpc.aio.Channel) -> Call:
    """Generate or GenerateStream through Aurea (or the floor)."""
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    now = time.perf_counter

    async def unary() -> tuple[float, int]:
        await stub.Generate(unary_req, timeout=args.timeout)
        return 0.0, 1

    async def stream() -> tuple[float, int]:
        first, n = 0.0, 0
        async for ev in stub.GenerateStream(stream_req, timeout=args.timeout):
            n += 1
            if not first and ev.WhichOneof("event") == "delta":
                first = now()
        return first, n

    unary_req = pb.GenerateRequest(
        prompt=args.prompt, model=args.model, temperature=args.temperature
    )
    stream_req = pb.GenerateStreamRequest(
        request=pb.GenerateRequest(
            prompt=args.prompt, model=args.model, temperature=args.temperature
        )
    )
    return unary if args.rpc == "Generate" else stream


def direct_calls(args: argparse.Namespace, session: aiohttp.ClientSession) -> Call:
    """The same request straight to an OpenAI-compatible upstream: the JSON body for
    ``Generate``, the SSE stream read to ``data: [DONE]`` and EOF for ``GenerateStream``."""
    url = f"{args.direct_url.rstrip('/')}/chat/completions"
    headers = {"Content-Type": "application/json"}
    if args.api_key_env:
        headers["Authorization"] = f"Bearer {os.environ.get(args.api_key_env, '')}"
    body: dict[str, Any] = {
        "model": args.upstream_model,
        "messages": [{"role": "user", "content": args.prompt}],
    }
    unary_body = json.dumps({**body, "stream": False}).encode()
    stream_body = json.dumps(
        {**body, "stream": True, "stream_options": {"include_usage": True}}
    ).encode()
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    now = time.perf_counter

    async def unary() -> tuple[float, int]:
        async with session.post(url, data=unary_body, headers=headers, timeout=timeout) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise HttpStatusError(resp.status)
        try:
            text = json.loads(raw)["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError("the reply has no choices[0].message.content") from exc
        if not isinstance(text, str):
            raise ValueError("the reply's content is not text")
        return 0.0, 1

    async def stream() -> tuple[float, int]:
        first, n, done = 0.0, 0, False
        async with session.post(url, data=stream_body, headers=headers, timeout=timeout) as resp:
            if resp.status != 200:
                raise HttpStatusError(resp.status)
            # Read to EOF, not just to [DONE], so the connection goes back to the pool.
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue  # the blank line that ends each event
                data = line[6:].rstrip(b"\r\n")
                if data == b"[DONE]":
                    done = True
                    continue
                chunk = json.loads(data)
                n += 1
                if not first:
                    for choice in chunk.get("choices") or ():
                        if (choice.get("delta") or {}).get("content"):
                            first = now()
        if not done:
            raise IncompleteStreamError("the stream ended before data: [DONE]")
        return first, n

    return unary if args.rpc == "Generate" else stream


async def run(args: argparse.Namespace) -> dict[str, object]:
    tally = Tally()
    async with contextlib.AsyncExitStack() as stack:
        if args.direct_url:
            connector = aiohttp.TCPConnector(limit=max(1, args.concurrency))
            session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
            call = direct_calls(args, session)
        else:
            channel = grpc.aio.insecure_channel(args.target)
            stack.push_async_callback(channel.close)
            await asyncio.wait_for(channel.channel_ready(), timeout=10)
            call = grpc_calls(args, channel)
        return await measure(args, call, tally)


async def measure(args: argparse.Namespace, call: Call, tally: Tally) -> dict[str, object]:
    """C closed-loop workers running ``call`` back to back; bounded in calls and in time."""
    now = time.perf_counter
    t_start = now()
    t_measure = t_start + args.warmup
    t_end = t_measure + args.duration
    per_worker = max(1, args.max_calls // args.concurrency)

    async def worker() -> None:
        for _ in range(per_worker):
            t0 = now()
            if t0 >= t_end:
                return
            tally.calls += 1
            try:
                first, n = await call()
            except CALL_ERRORS as exc:
                tally.error(exc)
                continue
            t1 = now()
            if t0 >= t_measure and t1 <= t_end:
                tally.latencies_s.append(t1 - t0)
                tally.events += n
                if first:
                    tally.ttfd_s.append(first - t0)

    cpu0 = 0.0

    async def cpu_mark() -> None:
        nonlocal cpu0
        await asyncio.sleep(max(0.0, t_measure - now()))
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = ru.ru_utime + ru.ru_stime

    mark = asyncio.ensure_future(cpu_mark())
    bound_s = args.warmup + args.duration + args.timeout + 5
    try:
        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(args.concurrency))), timeout=bound_s
        )
    finally:
        await mark
        ru = resource.getrusage(resource.RUSAGE_SELF)
    # Calls in flight at t_end finish after it; the window still counts only calls inside it.
    n = len(tally.latencies_s)
    out: dict[str, object] = {
        "rpc": args.rpc,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "calls": n,
        "calls_total": tally.calls,
        "rps": round(n / args.duration, 1),
        **summary_ms(tally.latencies_s),
        "errors": tally.errors,
        "client_cpu_ms_per_call": round((ru.ru_utime + ru.ru_stime - cpu0) * 1e3 / max(n, 1), 3),
        "client_cpu_s_total": round(ru.ru_utime + ru.ru_stime, 3),
    }
    if args.rpc == "GenerateStream":
        out.update(summary_ms(tally.ttfd_s, "ttfd_"))
        out["events_per_stream"] = round(tally.events / max(n, 1), 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target", default="", help="gRPC host:port (127.0.0.1 only)")
    p.add_argument("--model", default="", help="the request's model (default: the server's)")
    p.add_argument(
        "--direct-url",
        default="",
        help="call this OpenAI-compatible base URL (http://127.0.0.1:PORT/v1) over HTTP instead",
    )
    p.add_argument("--upstream-model", default="fake", help="model sent with --direct-url")
    p.add_argument("--api-key-env", default="", help="Bearer key variable for --direct-url")
    p.add_argument("--rpc", choices=RPCS, required=True)
    p.add_argument("--concurrency", type=int, default=1, help="closed-loop workers")
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    p.add_argument("--max-calls", type=int, default=2_000_000, help="cap on calls, all workers")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call deadline in seconds")
    p.add_argument("--prompt", default="Benchmark prompt: say something steady.")
    p.add_argument(
        "--temperature", type=float, default=None, help="gRPC only (0 makes calls cacheable)"
    )
    args = p.parse_args()
    if bool(args.target) == bool(args.direct_url):
        p.error("give exactly one of --target and --direct-url")
    if args.target and not args.target.startswith(("127.0.0.1:", "localhost:")):
        p.error("the load generator only targets 127.0.0.1")
    if args.direct_url and not args.direct_url.startswith("http://127.0.0.1:"):
        p.error("--direct-url must be http://127.0.0.1:PORT/...")
    result = uvloop.run(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
