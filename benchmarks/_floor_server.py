"""The floor: a bare grpc.aio server on uvloop that answers ``aurea.v1.InferenceService`` at once.

It has no interceptor, no routing, no actors and no logging; it returns pre-built messages. The
benchmark captures those messages from a real Aurea call first (``--payload`` names a JSON file of
base64-encoded serialized messages), so both servers put the same bytes on the wire and the
difference in the benchmark is Aurea's own work.

Run by ``bench_inference.py``; prints ``READY <port>`` on stdout once serving, stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import sys
from collections.abc import AsyncIterator

import grpc
import uvloop

from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc


class FloorServicer(inference_pb2_grpc.InferenceServiceServicer):  # type: ignore[misc]
    def __init__(
        self, response: pb.GenerateResponse, events: list[pb.GenerateStreamResponse]
    ) -> None:
        self._response = response
        self._events = events

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateResponse:
        return self._response

    async def GenerateStream(
        self, request: pb.GenerateStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateStreamResponse]:
        for ev in self._events:
            yield ev


def load_payload(path: str) -> tuple[pb.GenerateResponse, list[pb.GenerateStreamResponse]]:
    with open(path) as f:
        raw = json.load(f)
    response = pb.GenerateResponse.FromString(base64.b64decode(raw["generate"]))
    events = [pb.GenerateStreamResponse.FromString(base64.b64decode(e)) for e in raw["stream"]]
    return response, events


async def main(port: int, payload: str) -> None:
    response, events = load_payload(payload)
    server = grpc.aio.server()
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(
        FloorServicer(response, events), server
    )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    await stop.wait()
    await server.stop(0)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free)")
    p.add_argument("--payload", required=True, help="JSON file with the messages to answer")
    args = p.parse_args()
    uvloop.run(main(args.port, args.payload))
