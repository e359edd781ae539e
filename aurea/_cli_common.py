"""Helpers shared by the ``aurea`` command's modules: stderr messages, argparse types, call
metadata and the one-line report of a failed gRPC call."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc


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
