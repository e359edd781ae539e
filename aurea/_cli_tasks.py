"""The ``aurea task`` subcommands (submit, get, list, cancel, watch) and their argument parsers."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from aurea._cli_common import (
    _add_tls_args,
    _api_key,
    _channel,
    _int32,
    _metadata,
    _one_line,
    _rpc_error,
    _say,
)

_TASK_PRIORITIES = ("low", "normal", "high", "critical")
_TASK_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out")


def _task_stub(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(channel, TaskService stub, the task_pb2 module)."""
    from aurea.v1 import task_pb2, task_pb2_grpc

    channel = _channel(args)
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
        _add_tls_args(p)

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
