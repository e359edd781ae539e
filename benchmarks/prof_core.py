"""Per-call cost of Aurea's pipeline, in process: where a call's time goes.

Builds ``AureaServer`` from the same configuration ``bench_inference.py`` serves (the simulated
provider at zero delay, 32 tokens), with the default settings or the lean ones, and times
sequential calls at three depths:

- ``core``: ``CachedInference.generate`` / ``.stream`` (the cache wrapper, routing, guards,
  the provider, the call record's sinks), no transport;
- ``grpc``: the whole gRPC path (interceptor, edge, servicer, conversion) through an
  in-process ``grpc.aio`` channel, client included;
- ``floor``: the same channel to a bare ``grpc.aio`` servicer answering pre-built messages in
  the same process, so ``grpc`` minus ``floor`` is what Aurea adds to a gRPC hop.

Each figure is the median of per-call ``perf_counter_ns`` over the sample (after a warm-up),
with the collector paused, as ``bench_guards.py`` does, and the process CPU per call; with
``--concurrency N``, N callers share the loop and the first figure is elapsed time per call.
``--profile core|grpc|floor`` prints a cProfile table of that depth instead (the main thread
only: the SQLite store thread's work shows as CPU, not in the table).

```sh
python benchmarks/prof_core.py                    # defaults and lean, unary and stream
python benchmarks/prof_core.py --config lean --profile core --rpc Generate
```
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

LEAN = {
    "AUREA_LEDGER_STORE": "memory",
    "AUREA_ROUTING_STATS_STORE": "memory",
    "AUREA_TELEMETRY_METRICS_ENABLED": "false",
    "AUREA_CACHE_ENABLED": "false",
}
PROMPT = "Say something about benchmarks."


def settings_for(config: str) -> Any:
    import tomllib

    import bench_inference

    from aurea.config import build_settings

    raw = tomllib.loads(bench_inference.aurea_config(0, "warning"))
    env = {k: v for k, v in os.environ.items() if k.startswith("AUREA_")}
    if config == "lean":
        env.update(LEAN)
    return build_settings(raw, env)


@contextlib.asynccontextmanager
async def started(config: str) -> AsyncIterator[Any]:
    from aurea.server import AureaServer
    from aurea.telemetry.logging import configure

    settings = settings_for(config)
    configure(settings.log.level, settings.log.format, settings.log.redact_pii, stdlib=True)
    with tempfile.TemporaryDirectory() as state:
        os.environ["AUREA_STATE_DIR"] = state
        srv = AureaServer(settings)
        await srv.start()
        try:
            yield srv
        finally:
            await srv.stop(grace_s=0)


async def timed(
    fn: Callable[[], Awaitable[Any]], calls: int, warmup: int, concurrency: int = 1
) -> tuple[float, float]:
    """(median µs per call, process CPU µs per call); at concurrency > 1 the first figure is
    elapsed time over calls (the inverse of throughput)."""
    for _ in range(warmup):
        await fn()
    gc.collect()
    gc.disable()
    out = []
    c0 = time.process_time_ns()
    try:
        if concurrency == 1:
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                await fn()
                out.append(time.perf_counter_ns() - t0)
            wall = statistics.median(out) / 1e3
        else:

            async def worker(n: int) -> None:
                for _ in range(n):
                    await fn()

            t0 = time.perf_counter_ns()
            async with asyncio.TaskGroup() as tg:
                for _ in range(concurrency):
                    tg.create_task(worker(calls // concurrency))
            wall = (time.perf_counter_ns() - t0) / 1e3 / (calls // concurrency * concurrency)
    finally:
        gc.enable()
    cpu = (time.process_time_ns() - c0) / 1e3 / calls
    return wall, cpu


def core_fns(srv: Any) -> dict[str, Callable[[], Awaitable[Any]]]:
    from aurea.inference import GenEvent
    from aurea.inference.calls import GenerateCall
    from aurea.types import ChatMessage, Role

    cached = srv.cached
    n = 0

    def call() -> GenerateCall:
        nonlocal n
        n += 1
        msg = ChatMessage(role=Role.USER, content=PROMPT)
        return GenerateCall(request_id=f"r{n}", messages=(msg,))

    async def sink(ev: GenEvent) -> None:
        return None

    async def gen() -> Any:
        return await cached.generate(call())

    async def stream() -> Any:
        return await cached.stream(call(), sink)

    return {"Generate": gen, "GenerateStream": stream}


def grpc_fns(channel: grpc.aio.Channel) -> dict[str, Callable[[], Awaitable[Any]]]:
    from aurea.v1 import inference_pb2 as pb
    from aurea.v1 import inference_pb2_grpc

    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    req = pb.GenerateRequest(prompt=PROMPT)
    sreq = pb.GenerateStreamRequest(request=req)

    async def gen() -> Any:
        return await stub.Generate(req, timeout=10)

    async def stream() -> Any:
        n = 0
        async for _ in stub.GenerateStream(sreq, timeout=10):
            n += 1
        return n

    return {"Generate": gen, "GenerateStream": stream}


async def floor_target(channel: grpc.aio.Channel) -> tuple[grpc.aio.Server, str]:
    """A bare servicer answering what Aurea just answered (same bytes, same stream shape)."""
    from aurea.v1 import inference_pb2 as pb
    from aurea.v1 import inference_pb2_grpc

    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    resp = await stub.Generate(pb.GenerateRequest(prompt=PROMPT), timeout=10)
    events = [
        e
        async for e in stub.GenerateStream(
            pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt=PROMPT)), timeout=10
        )
    ]

    class Floor(inference_pb2_grpc.InferenceServiceServicer):
        async def Generate(self, request: Any, context: Any) -> Any:
            return resp

        async def GenerateStream(self, request: Any, context: Any) -> None:
            for e in events:
                await context.write(e)

    server = grpc.aio.server()
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(Floor(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for config in args.config:
        async with started(config) as srv:
            target = f"127.0.0.1:{srv.port}"
            async with grpc.aio.insecure_channel(target) as ch:
                floor, ftarget = await floor_target(ch)
                async with grpc.aio.insecure_channel(ftarget) as fch:
                    depths = {"core": core_fns(srv), "grpc": grpc_fns(ch), "floor": grpc_fns(fch)}
                    if args.profile:
                        fn = depths[args.profile][args.rpc[0]]
                        await timed(fn, args.warmup, 0)
                        prof = cProfile.Profile()
                        prof.enable()
                        await timed(fn, args.calls, 0, args.concurrency)
                        prof.disable()
                        if args.dump:
                            prof.dump_stats(args.dump)
                        st = pstats.Stats(prof, stream=sys.stderr)
                        st.sort_stats(args.sort).print_stats(args.top)
                        await floor.stop(0)
                        continue
                    res: dict[str, Any] = {}
                    for rpc in args.rpc:
                        calls = args.calls if rpc == "Generate" else max(args.calls // 4, 50)
                        row: dict[str, float] = {}
                        for d, fns in depths.items():
                            wall, cpu = await timed(fns[rpc], calls, args.warmup, args.concurrency)
                            row[f"{d}_us"] = round(wall, 1)
                            row[f"{d}_cpu_us"] = round(cpu, 1)
                        row["grpc_minus_floor_us"] = round(row["grpc_us"] - row["floor_us"], 1)
                        row["grpc_minus_floor_cpu_us"] = round(
                            row["grpc_cpu_us"] - row["floor_cpu_us"], 1
                        )
                        res[rpc] = row
                        print(config, rpc, row, file=sys.stderr)
                    out[config] = res
                await floor.stop(0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", action="append", choices=["default", "lean"])
    p.add_argument("--rpc", action="append", choices=["Generate", "GenerateStream"])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--profile", choices=["core", "grpc", "floor"])
    p.add_argument("--sort", default="tottime")
    p.add_argument("--dump", help="also write the cProfile data to this file")
    p.add_argument("--top", type=int, default=45)
    p.add_argument("--uvloop", action="store_true", help="run on uvloop, as `aurea serve` does")
    args = p.parse_args()
    args.config = args.config or ["default", "lean"]
    args.rpc = args.rpc or ["Generate", "GenerateStream"]
    if args.uvloop:
        import uvloop

        result = uvloop.run(run(args))
    else:
        result = asyncio.run(run(args))
    if not args.profile:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
