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
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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


_REFUSED = ("failed to connect", "connection refused", "connect failed")


def _rpc_error(exc: grpc.RpcError, as_json: bool = False) -> int:
    """One line on stderr (with ``--json``, also the error as JSON on stdout); a refused
    connection adds the hint to start the server."""
    code = exc.code()
    name = code.name if code else "ERROR"
    details = _one_line(exc.details() or "")
    hint = ""
    if name == "UNAVAILABLE" and any(s in details.lower() for s in _REFUSED):
        hint = " (is Aurea running? start it with: aurea serve)"
    if as_json:
        print(json.dumps({"error": _error_json(exc, name, details)}), flush=True)
    _say(f"aurea: {name}: {details}{hint}")
    return 1


def _error_json(exc: grpc.RpcError, code: str, message: str) -> dict[str, Any]:
    """The status and its google.rpc details, for machine-readable output."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    out: dict[str, Any] = {"code": code, "message": message}
    try:
        status = rpc_status.from_call(exc)
    except Exception:  # a garbled trailer must not hide the error itself
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out["reason"] = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out["fields"] = {v.field: v.description for v in bad.field_violations}
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            out["retry_after_s"] = retry.retry_delay.ToTimedelta().total_seconds()
    return out


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
    with grpc.insecure_channel(args.target) as channel:
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
    with grpc.insecure_channel(args.target) as channel:
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


def _top(args: argparse.Namespace) -> int:
    """A live view refreshed every ``--interval`` seconds until Ctrl-C; ``--once`` prints one
    frame (two samples apart, for the rates) and exits."""
    import grpc
    from rich.console import Console
    from rich.live import Live

    from aurea import _top
    from aurea.v1 import admin_pb2, admin_pb2_grpc

    md = _metadata(args.api_key)
    with grpc.insecure_channel(args.target) as channel:
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


# -- aurea task ... ----------------------------------------------------------------------------

_TASK_PRIORITIES = ("low", "normal", "high", "critical")
_TASK_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out")


def _task_stub(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(channel, TaskService stub, the task_pb2 module)."""
    import grpc

    from aurea.v1 import task_pb2, task_pb2_grpc

    channel = grpc.insecure_channel(args.target)
    return channel, task_pb2_grpc.TaskServiceStub(channel), task_pb2


def _task_json(task: Any) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(task, preserving_proto_field_name=True, indent=2)


def _task_line(task: Any, pb: Any) -> str:
    status = pb.TaskStatus.Name(task.status).removeprefix("TASK_STATUS_").lower()
    priority = pb.TaskPriority.Name(task.priority).removeprefix("TASK_PRIORITY_").lower()
    line = f"{task.task_id}  {status:<9}  {task.kind}  pool={task.pool}  priority={priority}"
    line += f"  attempts={task.attempts}/{task.max_attempts}"
    if task.error_reason:
        line += f"  error={task.error_reason}: {_one_line(task.error_message)[:120]}"
    return line


def _task_done(task: Any, pb: Any) -> int:
    """Print a finished task's result (or error); exit code 0 only when it succeeded."""
    from google.protobuf import json_format

    if task.status == pb.TASK_STATUS_SUCCEEDED:
        print(json.dumps(json_format.MessageToDict(task.result), indent=2), flush=True)
        return 0
    _say(f"aurea: {_task_line(task, pb)}")
    return 1


def _task_submit(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import timestamp_pb2

    if args.payload_file:
        try:
            with open(args.payload_file, encoding="utf-8") as f:
                payload = f.read()
        except OSError as exc:
            _say(f"aurea: cannot read {args.payload_file}: {exc.strerror or exc}")
            return 2
    else:
        payload = args.payload
    channel, stub, pb = _task_stub(args)
    with channel:
        req = pb.SubmitTaskRequest(
            kind=args.kind,
            payload_json=payload,
            priority=getattr(pb, f"TASK_PRIORITY_{args.priority.upper()}"),
            pool=args.pool,
            idempotency_key=args.key,
            job_id=args.job,
            max_attempts=args.max_attempts,
            timeout_ms=round(args.timeout_s * 1e3),
        )
        if args.deadline_s is not None:
            deadline = timestamp_pb2.Timestamp()
            deadline.FromNanoseconds(int((time.time() + args.deadline_s) * 1e9))
            req.deadline.CopyFrom(deadline)
        md = _metadata(args.api_key)
        try:
            r = stub.SubmitTask(req, metadata=md, timeout=args.timeout)
            if args.wait is None:
                print(r.task.task_id, flush=True)
                if r.deduplicated:
                    _say("[deduplicated: an earlier task had this idempotency key]")
                return 0
            task = _task_wait(stub, pb, r.task.task_id, args.wait, md)
        except grpc.RpcError as exc:
            return _rpc_error(exc)
    if task.status in (pb.TASK_STATUS_QUEUED, pb.TASK_STATUS_RUNNING):
        _say(f"aurea: still {_task_line(task, pb)} after waiting {args.wait:g} s")
        return 1
    return _task_done(task, pb)


def _task_wait(stub: Any, pb: Any, task_id: str, wait_s: float, md: Any) -> Any:
    """The task once terminal, or as it is after ``wait_s`` (GetTask waits 60 s at most)."""
    deadline = time.monotonic() + wait_s
    while True:
        left = max(deadline - time.monotonic(), 0.0)
        wait_ms = round(min(left, 60.0) * 1e3)
        task = stub.GetTask(
            pb.GetTaskRequest(task_id=task_id, wait_ms=wait_ms),
            metadata=md,
            timeout=wait_ms / 1e3 + 30,
        ).task
        if task.status not in (pb.TASK_STATUS_QUEUED, pb.TASK_STATUS_RUNNING) or left <= 0:
            return task


def _task_get(args: argparse.Namespace) -> int:
    import grpc

    channel, stub, pb = _task_stub(args)
    with channel:
        try:
            task = _task_wait(stub, pb, args.task_id, args.wait, _metadata(args.api_key))
        except grpc.RpcError as exc:
            return _rpc_error(exc)
    print(_task_json(task), flush=True)
    return 0


def _task_list(args: argparse.Namespace) -> int:
    import grpc

    channel, stub, pb = _task_stub(args)
    with channel:
        statuses = [getattr(pb, f"TASK_STATUS_{s.upper()}") for s in args.status]
        req = pb.ListTasksRequest(
            statuses=statuses,
            pool=args.pool,
            kind=args.kind,
            job_id=args.job,
            page_size=min(args.limit, 1000),
            page_token=args.page_token,
        )
        shown = 0
        try:
            while shown < args.limit:
                r = stub.ListTasks(req, metadata=_metadata(args.api_key), timeout=args.timeout)
                for task in r.tasks[: args.limit - shown]:
                    print(_task_line(task, pb), flush=True)
                    shown += 1
                if not r.next_page_token:
                    return 0
                req.page_token = r.next_page_token
        except grpc.RpcError as exc:
            return _rpc_error(exc)
    _say(f"[more: --page-token {r.next_page_token}]")
    return 0


def _task_cancel(args: argparse.Namespace) -> int:
    import grpc

    channel, stub, pb = _task_stub(args)
    with channel:
        try:
            r = stub.CancelTask(
                pb.CancelTaskRequest(task_id=args.task_id),
                metadata=_metadata(args.api_key),
                timeout=args.timeout,
            )
        except grpc.RpcError as exc:
            return _rpc_error(exc)
    print(_task_line(r.task, pb), flush=True)
    return 0


def _progress_bar(fraction: float, message: str, width: int = 30) -> str:
    filled = round(max(0.0, min(fraction, 1.0)) * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}% {message}"


def _task_watch(args: argparse.Namespace) -> int:
    """A live view: one line per change; for a single task on a terminal, its progress bar
    redrawn in place. With task ids it ends when they all ended (exit 1 if one did not
    succeed); without, it runs until Ctrl-C."""
    import grpc

    channel, stub, pb = _task_stub(args)
    live = len(args.task_ids) == 1 and sys.stdout.isatty()
    pending = set(args.task_ids)
    failed = False
    bar = False
    terminal = (
        pb.TASK_STATUS_SUCCEEDED,
        pb.TASK_STATUS_FAILED,
        pb.TASK_STATUS_CANCELLED,
        pb.TASK_STATUS_TIMED_OUT,
    )
    req = pb.WatchTasksRequest(
        task_ids=args.task_ids,
        pool=args.pool,
        kind=args.kind,
        job_id=args.job,
        include_current=True,
    )
    with channel:
        try:
            if pending:  # a task that already ended sends nothing: show it and stop watching it
                for task_id in args.task_ids:
                    t = stub.GetTask(
                        pb.GetTaskRequest(task_id=task_id), metadata=_metadata(args.api_key)
                    ).task
                    if t.status in terminal:
                        print(_task_line(t, pb), flush=True)
                        pending.discard(task_id)
                        failed |= t.status != pb.TASK_STATUS_SUCCEEDED
            stream = (
                stub.WatchTasks(req, metadata=_metadata(args.api_key))
                if pending or not args.task_ids
                else ()
            )
            for ev in stream:
                kind = ev.WhichOneof("event")
                if kind == "progress":
                    p = ev.progress.progress
                    text = _progress_bar(p.fraction, p.message)
                    if live:
                        sys.stdout.write("\r" + text[:200])
                        bar = True
                    else:
                        sys.stdout.write(f"{ev.progress.task_id}  {text}\n")
                    sys.stdout.flush()
                    continue
                task = ev.current if kind == "current" else ev.change.task
                if bar:
                    sys.stdout.write("\n")
                    bar = False
                print(_task_line(task, pb), flush=True)
                if kind == "current" and task.HasField("progress"):
                    p = task.progress
                    text = _progress_bar(p.fraction, p.message)
                    sys.stdout.write(("\r" + text[:200]) if live else f"{task.task_id}  {text}\n")
                    sys.stdout.flush()
                    bar = live
                if task.status in terminal and task.task_id in pending:
                    pending.discard(task.task_id)
                    failed |= task.status != pb.TASK_STATUS_SUCCEEDED
                    if not pending:
                        break
        except grpc.RpcError as exc:
            return _rpc_error(exc)
    return 1 if failed else 0


def _add_task_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], target: str, api_key: str | None
) -> None:
    t = sub.add_parser("task", help="submit, inspect, cancel and watch tasks")
    tsub = t.add_subparsers(dest="task_command", required=True)

    def common(p: argparse.ArgumentParser, timeout: float = 30.0) -> None:
        p.add_argument("--target", default=target, help=f"server address (default {target})")
        p.add_argument(
            "--api-key", type=_api_key, default=api_key, help="API key (default: $AUREA_API_KEY)"
        )
        p.add_argument(
            "--timeout", type=float, default=timeout, help="deadline per call, in seconds"
        )

    s = tsub.add_parser("submit", help="submit a task; prints its id (or its result with --wait)")
    s.add_argument("kind", help="the task kind (see the server's ListTaskKinds)")
    s.add_argument("--payload", default="{}", help="the payload, a JSON object (default {})")
    s.add_argument("--payload-file", help="read the payload from this JSON file instead")
    s.add_argument("--priority", choices=_TASK_PRIORITIES, default="normal")
    s.add_argument("--pool", default="", help="run on this pool (default: the kind's)")
    s.add_argument("--key", default="", help="idempotency key: a repeat returns the first task")
    s.add_argument("--job", default="", help="the job its spending is charged to")
    s.add_argument("--max-attempts", type=_int32, default=0, help="0: the kind's default")
    s.add_argument("--timeout-s", type=float, default=0.0, help="attempt timeout; 0: the kind's")
    s.add_argument("--deadline-s", type=float, help="fail it if not started within this many s")
    s.add_argument(
        "--wait", type=float, nargs="?", const=3600.0, help="wait for the result (at most N s)"
    )
    common(s)
    s.set_defaults(func=_task_submit)

    g = tsub.add_parser("get", help="print a task as JSON")
    g.add_argument("task_id")
    g.add_argument("--wait", type=float, default=0.0, help="wait up to N s for it to end")
    common(g)
    g.set_defaults(func=_task_get)

    ls = tsub.add_parser("list", help="list tasks, oldest first")
    ls.add_argument("--status", action="append", choices=_TASK_STATUSES, default=[])
    ls.add_argument("--pool", default="")
    ls.add_argument("--kind", default="")
    ls.add_argument("--job", default="")
    ls.add_argument("--limit", type=int, default=100, help="most tasks to print")
    ls.add_argument("--page-token", default="", help="continue a listing")
    common(ls)
    ls.set_defaults(func=_task_list)

    c = tsub.add_parser("cancel", help="cancel a task")
    c.add_argument("task_id")
    common(c)
    c.set_defaults(func=_task_cancel)

    w = tsub.add_parser("watch", help="watch tasks live (a progress bar for one task)")
    w.add_argument("task_ids", nargs="*", help="these tasks (default: every task)")
    w.add_argument("--pool", default="")
    w.add_argument("--kind", default="")
    w.add_argument("--job", default="")
    common(w)
    w.set_defaults(func=_task_watch)


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
        code: int = args.func(args)
        sys.stdout.flush()
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
