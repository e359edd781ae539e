"""The fake Proxmox cluster's records (guests, tasks, guest-agent execs) and its helpers: the
throwaway certificate, the PVE error it answers with, and killing a guest's process group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Guest"]


@dataclass
class Guest:
    """A VM or LXC container in the fake cluster."""

    vmid: int
    node: str
    kind: str  # "qemu" | "lxc"
    name: str
    config: dict[str, str] = field(default_factory=dict)
    status: str = "stopped"
    template: bool = False


@dataclass
class _Task:
    upid: str
    node: str
    done_at: float
    effect: Callable[[], None]
    status: str = "running"
    exitstatus: str = ""


@dataclass
class _Exec:
    proc: asyncio.subprocess.Process
    out: bytes = b""
    err: bytes = b""
    done: bool = False


def _cert(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "pve.pem", tmp / "pve.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


class _Fail(Exception):
    def __init__(self, status: int, reason: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors or {}


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
