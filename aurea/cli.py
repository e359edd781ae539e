"""The ``aurea`` command: ``serve``, ``generate`` and ``health``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc

DEFAULT_TARGET = "127.0.0.1:50051"


def _metadata(api_key: str | None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {api_key}")] if api_key else []


def _serve(args: argparse.Namespace) -> int:
    from aurea.config import ConfigError, load_settings
    from aurea.telemetry.logging import configure

    env = dict(os.environ)
    if args.host:
        env["AUREA_SERVER_HOST"] = args.host
    if args.port is not None:
        env["AUREA_SERVER_PORT"] = str(args.port)
    try:
        settings = load_settings(args.config, env)
    except ConfigError as exc:
        print(f"aurea: {exc}", file=sys.stderr)
        return 2
    configure(settings.log.level, settings.log.format, settings.log.redact_pii)

    import uvloop

    from aurea.server import serve

    try:
        uvloop.run(serve(settings))
    except ConfigError as exc:
        print(f"aurea: {exc}", file=sys.stderr)
        return 2
    return 0


def _rpc_error(exc: grpc.RpcError) -> int:
    code = exc.code()
    print(f"aurea: {code.name if code else 'ERROR'}: {exc.details()}", file=sys.stderr)
    return 1


def _generate(args: argparse.Namespace) -> int:
    from aurea.v1 import inference_pb2 as pb
    from aurea.v1 import inference_pb2_grpc

    fields = {"prompt": args.prompt, "model": args.model or "", "max_tokens": args.max_tokens}
    md = _metadata(args.api_key)
    with grpc.insecure_channel(args.target) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        try:
            if not args.stream:
                r = stub.Generate(pb.GenerateRequest(**fields), metadata=md, timeout=args.timeout)
                print(r.text)
                print(
                    f"[{r.model} via {r.provider}: {r.usage.input_tokens} in, "
                    f"{r.usage.output_tokens} out, ${r.cost_nanos / 1e9:.9f}, "
                    f"{r.latency_ms:.0f} ms]",
                    file=sys.stderr,
                )
                return 0
            req = pb.GenerateStreamRequest(**fields)
            for ev in stub.GenerateStream(req, metadata=md, timeout=args.timeout):
                kind = ev.WhichOneof("event")
                if kind == "delta":
                    sys.stdout.write(ev.delta.text)
                    sys.stdout.flush()
                elif kind == "fallback":
                    print(
                        f"\n[fallback {ev.fallback.from_model} -> {ev.fallback.to_model}: "
                        f"{ev.fallback.cause}]",
                        file=sys.stderr,
                    )
                elif kind == "final":
                    f = ev.final
                    print()
                    print(
                        f"[{f.model} via {f.provider}: {f.usage.input_tokens} in, "
                        f"{f.usage.output_tokens} out, ${f.cost_nanos / 1e9:.9f}, "
                        f"first token {f.time_to_first_token_ms:.0f} ms, "
                        f"total {f.latency_ms:.0f} ms]",
                        file=sys.stderr,
                    )
        except grpc.RpcError as exc:
            return _rpc_error(exc)
    return 0


def _health(args: argparse.Namespace) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(args.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            r = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            return _rpc_error(exc)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
    print(status)
    return 0 if r.status == health_pb2.HealthCheckResponse.SERVING else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aurea", description="Aurea LLM orchestration runtime")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the server (zero configuration needed)")
    s.add_argument("--config", help="a TOML config file (default: $AUREA_CONFIG, if set)")
    s.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to listen on (default 50051; 0 = any free)")
    s.set_defaults(func=_serve)

    target = os.environ.get("AUREA_TARGET", DEFAULT_TARGET)
    api_key = os.environ.get("AUREA_API_KEY")
    g = sub.add_parser("generate", help="generate text from a prompt")
    g.add_argument("prompt")
    g.add_argument("--model", help="catalog model name (default: the server's choice)")
    g.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    g.add_argument("--max-tokens", type=int, default=0, help="most tokens to generate")
    g.add_argument("--target", default=target, help=f"server address (default {target})")
    g.add_argument("--api-key", default=api_key, help="API key (default: $AUREA_API_KEY)")
    g.add_argument("--timeout", type=float, default=120.0, help="deadline in seconds")
    g.set_defaults(func=_generate)

    h = sub.add_parser("health", help="check the server's health (exit 0 when SERVING)")
    h.add_argument("--target", default=target, help=f"server address (default {target})")
    h.add_argument("--service", default="", help="a service name (default: the whole server)")
    h.add_argument("--timeout", type=float, default=5.0, help="deadline in seconds")
    h.set_defaults(func=_health)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
