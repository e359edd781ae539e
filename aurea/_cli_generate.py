"""The ``aurea generate`` and ``aurea embed`` commands: build the request, make the call (streamed
or not) and print the answer as text or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from aurea._cli_common import _channel, _metadata, _rpc_error, _say


def _usage_json(u: Any, source_estimated: int) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "cached_input_tokens": u.cached_input_tokens,
        "output_tokens": u.output_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "estimated": u.source == source_estimated,
    }


def _generate_fields(args: argparse.Namespace, pb: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model": args.model or "",
        "max_tokens": args.max_tokens,
        "fallback_models": args.fallback,
    }
    if args.system is not None:
        fields["messages"] = [
            pb.ChatMessage(role=pb.ROLE_SYSTEM, content=args.system),
            pb.ChatMessage(role=pb.ROLE_USER, content=args.prompt),
        ]
    else:
        fields["prompt"] = args.prompt
    if args.policy:
        fields["routing_policy"] = getattr(pb, f"ROUTING_POLICY_{args.policy.upper()}")
    from aurea._cli_rich import rich_fields

    rich_fields(args, pb, fields)  # --tools, --json-schema, --image, ...
    return fields


def _generate(args: argparse.Namespace) -> int:
    import grpc

    from aurea._cli_rich import CliInputError, format_call
    from aurea.v1 import inference_pb2 as pb
    from aurea.v1 import inference_pb2_grpc

    try:
        fields = _generate_fields(args, pb)
    except CliInputError as exc:
        _say(f"aurea: {exc}")
        return 2
    md = _metadata(args.api_key)
    estimated = pb.USAGE_SOURCE_ESTIMATED
    with _channel(args) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        if not args.stream:
            try:
                r = stub.Generate(pb.GenerateRequest(**fields), metadata=md, timeout=args.timeout)
            except grpc.RpcError as exc:
                return _rpc_error(exc, args.json)
            if args.json:
                reply = {
                    "request_id": r.request_id,
                    "model": r.model,
                    "provider": r.provider,
                    "text": r.text,
                    "finish_reason": pb.FinishReason.Name(r.finish_reason)
                    .removeprefix("FINISH_REASON_")
                    .lower(),
                    "usage": _usage_json(r.usage, estimated),
                    "cost_nanos": r.cost_nanos,
                    "latency_ms": round(r.latency_ms, 3),
                    "attempts": r.attempts,
                }
                if r.tool_calls:
                    reply["tool_calls"] = [
                        {"id": c.id, "name": c.name, "arguments": c.arguments} for c in r.tool_calls
                    ]
                if r.reasoning:
                    reply["reasoning"] = r.reasoning
                print(json.dumps(reply), flush=True)
                return 0
            if r.reasoning:
                _say(f"[reasoning] {r.reasoning}")
            if r.text or not r.tool_calls:
                print(r.text, flush=True)
            for call in r.tool_calls:
                print(format_call(call), flush=True)
            _say(
                f"[{r.model} via {r.provider}: {r.usage.input_tokens} in, "
                f"{r.usage.output_tokens} out, ${r.cost_nanos / 1e9:.9f}, "
                f"{r.latency_ms:.0f} ms]"
            )
            return 0
        return _generate_stream(args, stub, pb, fields, md)


def _generate_stream(
    args: argparse.Namespace, stub: Any, pb: Any, fields: dict[str, Any], md: Any
) -> int:
    """Print text as it arrives (``--json``: one JSON object per event). A stream that fails
    after some text ends that text with a newline first, so the error is on its own line."""
    import grpc
    from google.protobuf import json_format

    from aurea._cli_rich import StreamPrinter

    partial = False  # text was written and its line is still open
    rich = StreamPrinter()
    req = pb.GenerateStreamRequest(request=pb.GenerateRequest(**fields))
    try:
        for ev in stub.GenerateStream(req, metadata=md, timeout=args.timeout):
            kind = ev.WhichOneof("event")
            if args.json:
                body = json_format.MessageToDict(getattr(ev, kind))
                print(json.dumps({"event": kind, **body}), flush=True)
            elif kind == "delta":
                rich.end()
                if rich.open:  # text after a tool call starts on its own line
                    sys.stdout.write("\n")
                    rich.open = False
                sys.stdout.write(ev.delta.text)
                sys.stdout.flush()
                partial = not ev.delta.text.endswith("\n")
            elif kind == "tool_call":
                rich.end()
                rich.tool_call(ev.tool_call, partial)
                partial = True
            elif kind == "reasoning":
                rich.reasoning(ev.reasoning)
            elif kind == "fallback":
                f = ev.fallback
                _say(f"\n[fallback {f.from_model} -> {f.to_model}: {f.cause}]")
            elif kind == "final":
                f = ev.final
                rich.end()
                print(flush=True)
                partial = False
                _say(
                    f"[{f.model} via {f.provider}: {f.usage.input_tokens} in, "
                    f"{f.usage.output_tokens} out, ${f.cost_nanos / 1e9:.9f}, "
                    f"first token {f.time_to_first_token_ms:.0f} ms, "
                    f"total {f.latency_ms:.0f} ms]"
                )
    except grpc.RpcError as exc:
        if partial:
            print(flush=True)
        return _rpc_error(exc, args.json)
    return 0


def _embed(args: argparse.Namespace) -> int:
    import grpc

    from aurea.v1 import inference_pb2 as pb
    from aurea.v1 import inference_pb2_grpc

    req = pb.EmbedRequest(model=args.model or "", inputs=args.texts, job_id=args.job or "")
    with _channel(args) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        try:
            r = stub.Embed(req, metadata=_metadata(args.api_key), timeout=args.timeout)
        except grpc.RpcError as exc:
            return _rpc_error(exc, args.json)
    if args.json:
        reply = {
            "request_id": r.request_id,
            "model": r.model,
            "provider": r.provider,
            "embeddings": [list(e.values) for e in r.embeddings],
            "usage": _usage_json(r.usage, pb.USAGE_SOURCE_ESTIMATED),
            "cost_nanos": r.cost_nanos,
        }
        print(json.dumps(reply), flush=True)
        return 0
    for e in r.embeddings:
        head = ", ".join(f"{v:.4f}" for v in e.values[:4])
        more = ", ..." if len(e.values) > 4 else ""
        print(f"embedding {e.index}: dims={len(e.values)} [{head}{more}]", flush=True)
    _say(f"[{r.model} via {r.provider}: {r.usage.input_tokens} tokens, ${r.cost_nanos / 1e9:.9f}]")
    return 0
