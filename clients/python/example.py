"""Generate (or, with --stream, GenerateStream) one completion from Aurea with the generated
``aurea.v1`` stubs and synchronous grpc, then print its usage and cost.

    python clients/python/example.py [--target HOST:PORT] [--api-key KEY] [--stream] "prompt"

``--target`` defaults to $AUREA_TARGET, else 127.0.0.1:50051; ``--api-key`` to $AUREA_API_KEY.
A failed call exits 1 after printing its status code, message and google.rpc details.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc


def print_summary(final: pb.GenerateResponse | pb.StreamFinal, extra: str) -> None:
    u = final.usage
    source = pb.UsageSource.Name(u.source).removeprefix("USAGE_SOURCE_").lower()
    finish = pb.FinishReason.Name(final.finish_reason).removeprefix("FINISH_REASON_")
    print(
        f"usage: input_tokens={u.input_tokens} cached_input_tokens={u.cached_input_tokens} "
        f"output_tokens={u.output_tokens} reasoning_tokens={u.reasoning_tokens} source={source}"
    )
    print(
        f"cost: {final.cost_nanos} nanos (${final.cost_nanos / 1e9:.9f}) model={final.model} "
        f"provider={final.provider} finish={finish} latency_ms={final.latency_ms:.1f} "
        f"ttft_ms={final.time_to_first_token_ms:.1f} {extra}"
    )


def print_error(err: grpc.RpcError) -> None:
    """The status code and message, then the ErrorInfo reason and BadRequest field violations."""
    code: grpc.StatusCode = err.code()
    print(f"{code.name}: {err.details()}", file=sys.stderr)
    status = rpc_status.from_call(err)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            print(f"  reason: {info.reason} (domain {info.domain})", file=sys.stderr)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for v in bad.field_violations:
                print(f"  field {v.field}: {v.description}", file=sys.stderr)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            print(f"  retry after: {retry.retry_delay.ToTimedelta()}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default=os.environ.get("AUREA_TARGET", "127.0.0.1:50051"))
    parser.add_argument("--api-key", default=os.environ.get("AUREA_API_KEY", ""))
    parser.add_argument("--stream", action="store_true", help="use GenerateStream")
    parser.add_argument("--model", default="", help="catalog model name (default: routed)")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")
    parser.add_argument("prompt")
    args = parser.parse_args(argv)

    metadata = [("authorization", f"Bearer {args.api_key}")] if args.api_key else []
    with grpc.insecure_channel(args.target) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        try:
            if args.stream:
                stream_request = pb.GenerateStreamRequest(
                    request=pb.GenerateRequest(prompt=args.prompt, model=args.model)
                )
                events = stub.GenerateStream(
                    stream_request, metadata=metadata, timeout=args.timeout
                )
                deltas, final = 0, None
                for event in events:
                    kind = event.WhichOneof("event")
                    if kind == "delta":
                        deltas += 1
                        print(event.delta.text, end="", flush=True)
                    elif kind == "fallback":
                        fb = event.fallback
                        note = f"[fallback] {fb.from_model} -> {fb.to_model} ({fb.cause})"
                        print(note, file=sys.stderr)
                    elif kind == "final":
                        final = event.final
                print()
                if final is None:
                    print("the stream ended without a final event", file=sys.stderr)
                    return 1
                print_summary(final, f"deltas={deltas}")
            else:
                request = pb.GenerateRequest(prompt=args.prompt, model=args.model)
                reply = stub.Generate(request, metadata=metadata, timeout=args.timeout)
                print(reply.text)
                print_summary(reply, f"request_id={reply.request_id} attempts={reply.attempts}")
        except grpc.RpcError as err:
            print_error(err)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
