"""Supervision of the model server that a provider runs as a child process on 127.0.0.1.

``ServerProcess`` spawns the child in its own process group with its output in a log file, waits
until it answers HTTP, respawns it when it dies (a bounded number of times per window) and stops
it with SIGTERM, then SIGKILL. A bootstrap makes the child exit when the parent dies, and an exit
hook kills children and removes work dirs that nobody closed. It knows nothing of llama.cpp or
any other server: only an argv, a port, a probe path and an optional warm-up request.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from aurea.errors import FailedPrecondition, ProviderConnectionError, ProviderTimeout

__all__ = ["Clock", "ServerProcess", "WarmUp", "forget_at_exit", "free_port", "remove_at_exit"]

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
# (session, "http://127.0.0.1:PORT") -> None; a first real request, so startup fails early if
# the server cannot serve, and the first caller does not pay for a cold start.
WarmUp = Callable[[aiohttp.ClientSession, str], Awaitable[None]]

# The child runs this first: when the parent dies (even by SIGKILL) its stdin pipe closes,
# and the child exits at once instead of lingering as an orphan.
_BOOTSTRAP = """\
import os, runpy, sys, threading
def _watch_parent():
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    os._exit(0)
threading.Thread(target=_watch_parent, daemon=True).start()
target = sys.argv[1]
sys.argv = sys.argv[1:]
if target.endswith(".py"):
    runpy.run_path(target, run_name="__main__")
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Process groups of live children and work dirs of open providers: at interpreter exit, the
# children are killed and the dirs removed if nobody closed them.
_LIVE_GROUPS: set[int] = set()
_LIVE_WORKDIRS: set[Path] = set()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def remove_at_exit(workdir: Path) -> None:
    """Have the exit hook remove ``workdir`` (after killing the children) if it still exists."""
    _LIVE_WORKDIRS.add(workdir)


def forget_at_exit(workdir: Path) -> None:
    """Undo ``remove_at_exit``: the owner has removed ``workdir`` itself."""
    _LIVE_WORKDIRS.discard(workdir)


@atexit.register
def _kill_leftovers() -> None:
    for pgid in list(_LIVE_GROUPS):
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 2.0
    while _LIVE_GROUPS and time.monotonic() < deadline:
        for pgid in list(_LIVE_GROUPS):
            try:
                done, _ = os.waitpid(pgid, os.WNOHANG)
            except ChildProcessError:
                done = pgid
            if done:
                _LIVE_GROUPS.discard(pgid)
        time.sleep(0.05)
    for pgid in list(_LIVE_GROUPS):
        _signal_group(pgid, signal.SIGKILL)
    _LIVE_GROUPS.clear()
    for workdir in list(_LIVE_WORKDIRS):
        shutil.rmtree(workdir, ignore_errors=True)
    _LIVE_WORKDIRS.clear()


class _ExitedDuringStartup(Exception):
    def __init__(self, returncode: int, tail: str) -> None:
        super().__init__(returncode, tail)
        self.returncode = returncode
        self.tail = tail


class ServerProcess:
    """One supervised child HTTP server on 127.0.0.1.

    ``prepare(port)`` returns the argv of the module or script the child runs (through a
    bootstrap that exits when the parent dies). ``ensure_running`` spawns it in its own process
    group, polls ``probe_path`` until it answers 200 (listing ``expect_model`` if given) and
    awaits ``warm_up``; when the child has died it spawns again, at most ``1 + max_restarts``
    times per ``restart_window_s``. ``stop`` sends SIGTERM to the group, then SIGKILL.
    """

    def __init__(
        self,
        *,
        name: str,
        prepare: Callable[[int], Sequence[str]],
        log_path: Path,
        port: int = 0,
        probe_path: str = "/v1/models",
        expect_model: str | None = None,
        warm_up: WarmUp | None = None,
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 5.0,
        max_restarts: int = 3,
        restart_window_s: float = 60.0,
        env: Mapping[str, str] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self._prepare = prepare
        self.log_path = log_path
        self._fixed_port = port
        self._port = port
        self._probe_path = probe_path
        self._expect_model = expect_model
        self._warm_up = warm_up
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._max_restarts = max_restarts
        self._restart_window_s = restart_window_s
        self._env = dict(env) if env is not None else None
        self._clock = clock
        self._proc: asyncio.subprocess.Process | None = None
        self._spawns: deque[float] = deque()
        self._lock = asyncio.Lock()
        self._closed = False
        self.starts = 0  # successful starts, the first included

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def ensure_running(self) -> None:
        """Return once the child answers; spawn or respawn it first if needed."""
        async with self._lock:
            if self._closed:
                raise FailedPrecondition(f"local provider {self.name!r} is closed")
            if self.running:
                return
            if self._proc is not None:
                log.warning(
                    "local_model_exited",
                    provider=self.name,
                    pid=self._proc.pid,
                    returncode=self._proc.returncode,
                    log_path=str(self.log_path),
                )
                await self._reap(self._proc)
            self._take_spawn_budget()
            await self._spawn_until_ready()

    async def stop(self) -> None:
        """Terminate the child's process group; idempotent. No later call restarts it."""
        async with self._lock:
            self._closed = True
            if self._proc is not None:
                await self._reap(self._proc)

    def _take_spawn_budget(self) -> None:
        now = self._clock()
        while self._spawns and now - self._spawns[0] >= self._restart_window_s:
            self._spawns.popleft()
        if len(self._spawns) > self._max_restarts:
            retry_after_s = self._restart_window_s - (now - self._spawns[0])
            last = self._proc.returncode if self._proc is not None else None
            raise ProviderConnectionError(
                f"local model server {self.name!r} was started {len(self._spawns)} times in "
                f"{self._restart_window_s:g} s and keeps dying (last exit code {last}); not "
                f"restarting for {retry_after_s:.0f} s; see {self.log_path}",
                provider=self.name,
                retry_after_s=retry_after_s,
            )
        self._spawns.append(now)

    async def _spawn_until_ready(self) -> None:
        for _ in range(3):  # a port picked for us may be taken by someone else meanwhile
            port = self._fixed_port or (self._port or free_port())
            try:
                await self._spawn(port)
                self._port = port
                self.starts += 1
                return
            except _ExitedDuringStartup as exc:
                if self._fixed_port or "address already in use" not in exc.tail.lower():
                    raise ProviderConnectionError(
                        f"local model server {self.name!r} exited with code {exc.returncode} "
                        f"while starting; log {self.log_path} ends with:\n{exc.tail}",
                        provider=self.name,
                    ) from None
                self._port = 0
        raise ProviderConnectionError(
            f"local model server {self.name!r} found no free port", provider=self.name
        )

    async def _spawn(self, port: int) -> None:
        argv = [sys.executable, "-c", _BOOTSTRAP, *self._prepare(port)]
        started = self._clock()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stop() kills all of it
                    env=self._env,
                )
            except OSError as exc:
                raise ProviderConnectionError(
                    f"could not start local model server {self.name!r}: {exc}", provider=self.name
                ) from exc
        self._proc = proc
        _LIVE_GROUPS.add(proc.pid)
        try:
            await self._wait_ready(proc, port)
        except BaseException:
            await self._reap(proc)
            raise
        log.info(
            "local_model_started",
            provider=self.name,
            pid=proc.pid,
            port=port,
            startup_s=round(self._clock() - started, 3),
        )

    async def _wait_ready(self, proc: asyncio.subprocess.Process, port: int) -> None:
        base = f"http://127.0.0.1:{port}"
        deadline = self._clock() + self._startup_timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0)) as session:
            while not await self._probe(proc, session, base + self._probe_path):
                if self._clock() >= deadline:
                    raise ProviderTimeout(
                        f"local model server {self.name!r} did not answer {self._probe_path} "
                        f"within {self._startup_timeout_s:g} s; see {self.log_path}",
                        provider=self.name,
                    )
                await asyncio.sleep(0.1)
            if self._warm_up is None:
                return
            try:
                left_s = max(deadline - self._clock(), 1.0)
                await asyncio.wait_for(self._warm_up(session, base), left_s)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                if proc.returncode is not None:
                    raise _ExitedDuringStartup(proc.returncode, self._log_tail()) from None
                raise ProviderConnectionError(
                    f"local model server {self.name!r} is up but its warm-up request failed: "
                    f"{exc!r}; see {self.log_path}",
                    provider=self.name,
                ) from exc

    async def _probe(
        self, proc: asyncio.subprocess.Process, session: aiohttp.ClientSession, url: str
    ) -> bool:
        if proc.returncode is not None:
            raise _ExitedDuringStartup(proc.returncode, self._log_tail())
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with session.get(url) as resp:
                return resp.status == 200 and self._lists_model(await resp.json())
        return False

    def _lists_model(self, body: Any) -> bool:
        if self._expect_model is None:
            return True
        data = body.get("data") if isinstance(body, dict) else None
        ids = [m.get("id") for m in data if isinstance(m, dict)] if isinstance(data, list) else []
        return self._expect_model in ids

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self._stop_timeout_s)
            except TimeoutError:
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        # The leader is gone; anything it left in its group goes too.
        _signal_group(proc.pid, signal.SIGKILL)
        _LIVE_GROUPS.discard(proc.pid)
        if proc.stdin is not None:
            proc.stdin.close()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
