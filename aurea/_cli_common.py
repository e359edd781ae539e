"""Helpers shared by the ``aurea`` command's modules: stderr messages, argparse types, call
metadata, the channel to the server (plaintext, TLS or mTLS) and the one-line report of a failed
gRPC call."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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


class CliUsageError(ValueError):
    """Options the command cannot use (``main`` prints it as one line and exits 2)."""


_TRUE = ("1", "true", "yes", "on")


def _add_tls_args(p: argparse.ArgumentParser) -> None:
    """``--tls``, ``--tls-ca``, ``--tls-cert``/``--tls-key`` (mTLS) and ``--tls-server-name``,
    defaulting to $AUREA_TLS, $AUREA_TLS_CA, $AUREA_TLS_CERT and $AUREA_TLS_KEY."""
    env = os.environ
    g = p.add_argument_group("TLS (a --tls-* option implies --tls)")
    g.add_argument(
        "--tls",
        action="store_true",
        default=env.get("AUREA_TLS", "").strip().lower() in _TRUE,
        help="connect with TLS, trusting the system's CAs (default: $AUREA_TLS=1)",
    )
    g.add_argument(
        "--tls-ca",
        metavar="FILE",
        default=env.get("AUREA_TLS_CA") or None,
        help="trust this CA certificate (PEM) instead (default: $AUREA_TLS_CA)",
    )
    g.add_argument(
        "--tls-cert",
        metavar="FILE",
        default=env.get("AUREA_TLS_CERT") or None,
        help="client certificate (PEM) for mTLS, with --tls-key (default: $AUREA_TLS_CERT)",
    )
    g.add_argument(
        "--tls-key",
        metavar="FILE",
        default=env.get("AUREA_TLS_KEY") or None,
        help="the client certificate's private key (PEM) (default: $AUREA_TLS_KEY)",
    )
    g.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="check the server's certificate against NAME, not the target's host",
    )


# How the last channel was opened ("plaintext", "tls" or "mtls"): one command opens one kind of
# channel, and a failed handshake is explained by what the client offered.
_mode = "plaintext"


def _pem(path: str, option: str, marker: bytes) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CliUsageError(f"{option} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data or marker not in data:
        what = "a certificate" if marker == b"CERTIFICATE-----" else "a private key"
        raise CliUsageError(f"{option} {path}: not {what} in PEM format")
    return data


def _channel(args: argparse.Namespace) -> grpc.Channel:
    """The channel to ``args.target``: plaintext, or TLS when a TLS option is given (raises
    CliUsageError for a file it cannot read or a certificate without its key)."""
    import grpc

    global _mode
    cert, key = args.tls_cert, args.tls_key
    if (cert is None) != (key is None):
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise CliUsageError(f"{given} needs {missing} (a client certificate and its private key)")
    if not (args.tls or args.tls_ca or cert or args.tls_server_name):
        _mode = "plaintext"
        return grpc.insecure_channel(args.target)
    creds = grpc.ssl_channel_credentials(
        root_certificates=_pem(args.tls_ca, "--tls-ca", b"CERTIFICATE-----")
        if args.tls_ca
        else None,
        private_key=_pem(key, "--tls-key", b"PRIVATE KEY-----") if key else None,
        certificate_chain=_pem(cert, "--tls-cert", b"CERTIFICATE-----") if cert else None,
    )
    name = args.tls_server_name
    _mode = "mtls" if cert else "tls"
    return grpc.secure_channel(
        args.target, creds, [("grpc.ssl_target_name_override", name)] if name else None
    )


_REFUSED = ("failed to connect", "connection refused", "connect failed")


def _tls_problem(name: str, details: str) -> str | None:
    """What a connection that failed at the TLS handshake means and what to check, from what
    grpc reports (an OpenSSL reason, or "Socket closed" when the server hung up); None for
    anything else."""
    low = details.lower()
    if name != "UNAVAILABLE" or not any(s in low for s in _REFUSED):
        return None
    if "wrong_version_number" in low:
        return (
            "TLS handshake failed (WRONG_VERSION_NUMBER): the server does not use TLS; "
            "connect without --tls and --tls-ca"
        )
    if "certificate_verify_failed" in low:
        return (
            "TLS handshake failed (CERTIFICATE_VERIFY_FAILED): the server's certificate is not "
            "from a CA this client trusts; is the server using TLS, and is --tls-ca its CA?"
        )
    if "hostname verification" in low:
        return (
            "TLS handshake failed: the server's certificate is not issued to this host name; "
            "connect by a name it holds, or set --tls-server-name"
        )
    if "security handshaker" in low:
        return (
            "TLS setup failed: are --tls-ca, --tls-cert and --tls-key PEM files, and does the "
            "key belong to the certificate?"
        )
    if "socket closed" in low:
        return {
            "plaintext": (
                "the server closed the connection (Socket closed): is the server using TLS? "
                "then connect with --tls or --tls-ca CA_FILE"
            ),
            "tls": (
                "TLS handshake failed (Socket closed): does the server require a client "
                "certificate? then pass --tls-cert and --tls-key"
            ),
            "mtls": (
                "TLS handshake failed (Socket closed): the server refused the client "
                "certificate; is --tls-cert issued by a CA the server trusts?"
            ),
        }[_mode]
    if "handshake" in low or "ssl_error" in low:
        return "TLS handshake failed: is the server using TLS, and is --tls-ca its CA?"
    return None


def _rpc_error(exc: grpc.RpcError, as_json: bool = False) -> int:
    """One line on stderr (with ``--json``, also the error as JSON on stdout); a refused
    connection adds the hint to start the server, a failed TLS handshake says what to check in
    place of grpc's long text (kept in the JSON)."""
    code = exc.code()
    name = code.name if code else "ERROR"
    details = _one_line(exc.details() or "")
    problem = _tls_problem(name, details)
    hint = ""
    if problem is None and name == "UNAVAILABLE" and any(s in details.lower() for s in _REFUSED):
        hint = " (is Aurea running? start it with: aurea serve)"
    if as_json:
        print(json.dumps({"error": _error_json(exc, name, details)}), flush=True)
    _say(f"aurea: {name}: {problem or details + hint}")
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
