"""The ``aurea`` command: ``serve``, ``generate``, ``embed``, ``health``, ``top``, ``config``
(check, show) and ``task`` (submit, get, list, cancel, watch); ``aurea --version``.

Expected failures (bad config, server unreachable, a failed call, Ctrl-C, a closed output pipe)
end with one ``aurea: ...`` line on stderr and a non-zero exit code, never a traceback. Exit
codes: 0 ok, 1 a failed call or unhealthy server, 2 bad configuration or usage, 130 interrupted
(Ctrl-C), 141 the reader of stdout went away.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from aurea._cli_common import (
    CliUsageError,
    _add_tls_args,
    _api_key,
    _channel,
    _int32,
    _metadata,
    _one_line,
    _rpc_error,
    _say,
)
from aurea._cli_generate import _embed, _generate
from aurea._cli_tasks import _add_task_commands

# grpc and the server are imported inside the commands: the sooner ``main`` runs, the sooner
# Ctrl-C is handled without a traceback.

DEFAULT_TARGET = "127.0.0.1:50051"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `cmd | head` gives a C program


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
    if args.workers > 1:
        return _serve_workers(args, settings)

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


def _serve_workers(args: argparse.Namespace, settings: Any) -> int:
    """``--workers N``: N children share the port (see ``aurea._workers``)."""
    from aurea._workers import run_workers

    if settings.server.port == 0:
        _say("aurea: --workers needs a fixed --port (processes share it with SO_REUSEPORT)")
        return 2
    if not settings.redis.url:
        _say(
            "aurea: warning: no [redis] url: each worker keeps its own rate limits and budget "
            "book (set one so the workers share one state)"
        )
    argv = [sys.executable, "-m", "aurea.cli", "serve", "--port", str(settings.server.port)]
    if args.config:
        argv += ["--config", args.config]
    if args.host:
        argv += ["--host", args.host]
    return run_workers(
        args.workers,
        argv,
        dict(os.environ),
        telemetry_port=settings.telemetry.http_port,
        say=_say,
    )


def _top(args: argparse.Namespace) -> int:
    """A live view refreshed every ``--interval`` seconds until Ctrl-C; ``--once`` prints one
    frame (two samples apart, for the rates) and exits."""
    import grpc
    from rich.console import Console
    from rich.live import Live

    from aurea import _top
    from aurea.v1 import admin_pb2, admin_pb2_grpc

    md = _metadata(args.api_key)
    with _channel(args) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)

        def take() -> _top.Sample:
            return _top.sample(admin, admin_pb2, md, args.timeout)

        try:
            if args.once:
                frames = _top.frames(take, args.interval)
                next(frames)
                now, before = next(frames)
                Console(width=args.width).print(_top.render(args.target, now, before))
                return 0
            with Live(auto_refresh=False, screen=False) as live:
                for now, before in _top.frames(take, args.interval):
                    live.update(_top.render(args.target, now, before), refresh=True)
        except grpc.RpcError as exc:
            return _rpc_error(exc)
    return 0


def _config(args: argparse.Namespace) -> int:
    """``config check``: load and validate, print a one-line summary. ``config show``: every
    key's effective value (secrets masked) and where it came from."""
    from aurea.config import ConfigError, load_settings
    from aurea.config._explain import explain

    path = args.config or os.environ.get("AUREA_CONFIG")
    try:
        settings = load_settings(path, os.environ)
    except ConfigError as exc:
        _say(f"aurea: {exc}")
        return 2
    if args.config_command == "check":
        s = settings
        http = f"http {s.http.host}:{s.http.port}" if s.http.enabled else "http off"
        n = len(s.api_keys)
        keys = f"{n} API key{'s' * (n != 1)}" if n else "open mode (no API keys)"
        print(
            f"config ok{f' ({path})' if path else ' (defaults and environment)'}: "
            f"grpc {s.server.host}:{s.server.port}, {http}, {len(s.providers)} providers, "
            f"{len(s.models)} models, {keys}",
            flush=True,
        )
        return 0
    entries = explain(settings, path, os.environ)
    if args.json:
        rows = [{"key": e.key, "value": e.value, "source": e.source} for e in entries]
        print(json.dumps(rows, default=str))
        return 0
    width = max(len(e.key) for e in entries)
    for e in entries:
        value = json.dumps(e.value, default=str)
        print(f"{e.key:<{width}}  {value}  ({e.source})", flush=True)
    return 0


def _health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with _channel(args) as channel:
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
    p.add_argument("--version", action="version", version=f"aurea {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the server (zero configuration needed)")
    s.add_argument("--config", help="a TOML config file (default: $AUREA_CONFIG, if set)")
    s.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to listen on (default 50051; 0 = any free)")
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        choices=range(1, 65),
        metavar="N",
        help="server processes sharing the port (SO_REUSEPORT); with [redis] url, one state",
    )
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
    g.add_argument("--system", help="a system message sent before the prompt")
    g.add_argument("--policy", choices=_POLICIES, help="how to choose a model when none is named")
    g.add_argument(
        "--fallback", action="append", default=[], help="a model to try next (repeatable)"
    )
    g.add_argument("--json", action="store_true", help="machine-readable output (JSON)")
    g.add_argument("--tools", metavar="FILE", help="a JSON file listing tools the model may call")
    g.add_argument(
        "--tool-choice", metavar="auto|none|required|NAME", help="whether or which tool to call"
    )
    g.add_argument("--json-schema", metavar="FILE", help="answer in JSON matching this schema")
    g.add_argument("--strict", action="store_true", help="enforce --json-schema exactly")
    g.add_argument(
        "--image", action="append", default=[], metavar="PATH|URL", help="an image (repeatable)"
    )
    g.add_argument("--reasoning", choices=("low", "medium", "high"), help="reasoning effort")
    _add_tls_args(g)
    g.set_defaults(func=_generate)

    e = sub.add_parser("embed", help="embed texts (one vector per text)")
    e.add_argument("texts", nargs="+")
    e.add_argument("--model", help="embedding model (default: the server's)")
    e.add_argument("--job", help="the job the call is charged to")
    e.add_argument("--target", default=target, help=f"server address (default {target})")
    e.add_argument(
        "--api-key", type=_api_key, default=api_key, help="API key (default: $AUREA_API_KEY)"
    )
    e.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")
    e.add_argument("--json", action="store_true", help="machine-readable output (JSON)")
    _add_tls_args(e)
    e.set_defaults(func=_embed)

    t = sub.add_parser("top", help="a live view: calls/s, latency, cost, breakers, actors")
    t.add_argument("--target", default=target, help=f"server address (default {target})")
    t.add_argument(
        "--api-key", type=_api_key, default=api_key, help="API key (default: $AUREA_API_KEY)"
    )
    t.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    t.add_argument("--timeout", type=float, default=5.0, help="deadline per admin call")
    t.add_argument("--once", action="store_true", help="print one frame and exit")
    t.add_argument("--width", type=int, default=None, help="columns for --once (default: terminal)")
    _add_tls_args(t)
    t.set_defaults(func=_top)

    c = sub.add_parser("config", help="check or show the effective configuration")
    csub = c.add_subparsers(dest="config_command", required=True)
    for name, text in (
        ("check", "validate the configuration (exit 2 and the problem if it is wrong)"),
        ("show", "every key's value (secrets masked) and where it came from"),
    ):
        cc = csub.add_parser(name, help=text)
        cc.add_argument("--config", help="a TOML config file (default: $AUREA_CONFIG, if set)")
        if name == "show":
            cc.add_argument("--json", action="store_true", help="machine-readable output (JSON)")
        cc.set_defaults(func=_config)

    h = sub.add_parser("health", help="check the server's health (exit 0 when SERVING)")
    h.add_argument("--target", default=target, help=f"server address (default {target})")
    h.add_argument("--service", default="", help="a service name (default: the whole server)")
    h.add_argument("--timeout", type=float, default=5.0, help="deadline in seconds")
    _add_tls_args(h)
    h.set_defaults(func=_health)
    _add_task_commands(sub, target, api_key)
    return p


_POLICIES = ("cost", "quality", "latency", "balanced")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("aurea")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0+src"


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
        if args.func is not _serve:
            # grpc's core (read when grpc is first imported, inside the commands) logs a failed
            # TLS handshake on stderr at INFO; its documented default, ERROR, leaves the
            # command's one-line report alone. The server keeps whatever it is given.
            os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        code: int = args.func(args)
        sys.stdout.flush()
    except CliUsageError as exc:
        _say(f"aurea: {exc}")
        return 2
    except KeyboardInterrupt:
        # A second Ctrl-C during cleanup ends the process at once, still without a traceback.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        # Ctrl-C can land inside a library object's constructor (grpc's call objects), whose
        # __del__ then fails at exit with "Exception ignored ... Traceback": the user asked to
        # stop, so such leftovers are not reported.
        sys.unraisablehook = lambda _unraisable: None
        _say("aurea: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    raise SystemExit(main())
