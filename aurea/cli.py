"""The ``aurea`` command: ``serve``, ``generate`` and ``health``.

Expected failures (bad config, server unreachable, a failed call, Ctrl-C, a closed output pipe)
end with one ``aurea: ...`` line on stderr and a non-zero exit code, never a traceback. Exit
codes: 0 ok, 1 a failed call or unhealthy server, 2 bad configuration or usage, 130 interrupted
(Ctrl-C), 141 the reader of stdout went away.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

# grpc and the server are imported inside the commands: the sooner ``main`` runs, the sooner
# Ctrl-C is handled without a traceback.

DEFAULT_TARGET = "127.0.0.1:50051"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `cmd | head` gives a C program


def _say(text: str) -> None:
    """One line on stderr, after any log lines still queued; a closed stderr is not worth a
    traceback."""
    from aurea.telemetry._sink import flush_all

    flush_all(timeout_s=1.0)
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _int32(text: str) -> int:
    """An argparse type: an integer the request's int32 field can hold (the server checks the
    rest, so a bad value gets the same message as from any other client)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not -(2**31) <= value < 2**31:
        raise argparse.ArgumentTypeError(f"out of range: {text}")
    return value


def _api_key(text: str) -> str:
    """An argparse type: a key that fits in an HTTP/2 header (printable ASCII, no spaces)."""
    if not all("!" <= c <= "~" for c in text):
        raise argparse.ArgumentTypeError("an API key is printable ASCII without spaces")
    return text


def _metadata(api_key: str | None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {api_key}")] if api_key else []


def _serve(args: argparse.Namespace) -> int:
    from aurea.config import ConfigError, load_settings
    from aurea.errors import AureaError
    from aurea.telemetry.logging import configure

    env = dict(os.environ)
    if args.host:
        env["AUREA_SERVER_HOST"] = args.host
    if args.port is not None:
        env["AUREA_SERVER_PORT"] = str(args.port)
    try:
        settings = load_settings(args.config, env)
    except ConfigError as exc:
        _say(f"aurea: {exc}")
        return 2
    configure(settings.log.level, settings.log.format, settings.log.redact_pii, stdlib=True)

    import uvloop

    from aurea.server import serve

    try:
        uvloop.run(serve(settings))
    except ConfigError as exc:
        _say(f"aurea: {exc}")
        return 2
    except AureaError as exc:
        _say(f"aurea: {_one_line(str(exc))}")
        return 1
    return 0


def _rpc_error(exc: grpc.RpcError) -> int:
    code = exc.code()
    details = _one_line(exc.details() or "")
    _say(f"aurea: {code.name if code else 'ERROR'}: {details}")
    return 1


def _generate(args: argparse.Namespace) -> int:
    import grpc

    from aurea.v1 import inference_pb2 as pb
    from aurea.v1 import inference_pb2_grpc

    fields = {"prompt": args.prompt, "model": args.model or "", "max_tokens": args.max_tokens}
    md = _metadata(args.api_key)
    with grpc.insecure_channel(args.target) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        try:
            if not args.stream:
                r = stub.Generate(pb.GenerateRequest(**fields), metadata=md, timeout=args.timeout)
                print(r.text, flush=True)
                _say(
                    f"[{r.model} via {r.provider}: {r.usage.input_tokens} in, "
                    f"{r.usage.output_tokens} out, ${r.cost_nanos / 1e9:.9f}, "
                    f"{r.latency_ms:.0f} ms]"
                )
                return 0
            req = pb.GenerateStreamRequest(**fields)
            for ev in stub.GenerateStream(req, metadata=md, timeout=args.timeout):
                kind = ev.WhichOneof("event")
                if kind == "delta":
                    sys.stdout.write(ev.delta.text)
                    sys.stdout.flush()
                elif kind == "fallback":
                    _say(
                        f"\n[fallback {ev.fallback.from_model} -> {ev.fallback.to_model}: "
                        f"{ev.fallback.cause}]"
                    )
                elif kind == "final":
                    f = ev.final
                    print(flush=True)
                    _say(
                        f"[{f.model} via {f.provider}: {f.usage.input_tokens} in, "
                        f"{f.usage.output_tokens} out, ${f.cost_nanos / 1e9:.9f}, "
                        f"first token {f.time_to_first_token_ms:.0f} ms, "
                        f"total {f.latency_ms:.0f} ms]"
                    )
        except grpc.RpcError as exc:
            return _rpc_error(exc)
    return 0


def _health(args: argparse.Namespace) -> int:
    import grpc
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
    print(status, flush=True)
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
    g.add_argument("--max-tokens", type=_int32, default=0, help="most tokens to generate")
    g.add_argument("--target", default=target, help=f"server address (default {target})")
    g.add_argument(
        "--api-key", type=_api_key, default=api_key, help="API key (default: $AUREA_API_KEY)"
    )
    g.add_argument("--timeout", type=float, default=120.0, help="deadline in seconds")
    g.set_defaults(func=_generate)

    h = sub.add_parser("health", help="check the server's health (exit 0 when SERVING)")
    h.add_argument("--target", default=target, help=f"server address (default {target})")
    h.add_argument("--service", default="", help="a service name (default: the whole server)")
    h.add_argument("--timeout", type=float, default=5.0, help="deadline in seconds")
    h.set_defaults(func=_health)
    return p


def _stdout_gone() -> None:
    # Point stdout at /dev/null so the interpreter's final flush does not fail again (which
    # would print "Exception ignored" and exit 120).
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``aurea`` command; returns the process exit code."""
    try:
        args = parser().parse_args(argv)
        code: int = args.func(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        # A second Ctrl-C during cleanup ends the process at once, still without a traceback.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _say("aurea: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    raise SystemExit(main())
