"""The ``local`` backend: a replica is a working directory plus a holder process (``sleep
infinity``) in its own session; commands run in that directory, each in its own process group,
with the replica's limits: a cgroup (CPU quota and memory) where the host allows one, else an
address-space rlimit for memory and no CPU limit.

Every process carries marker variables in its environment (owner, resource, replica, role), so
a restarted Aurea finds its replicas in ``/proc`` and never signals a process it did not start.
Commands never inherit Aurea's own environment (it may hold provider keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path

import structlog

from aurea.errors import FailedPrecondition, InvalidRequest
from aurea.infra._cgroup import Cgroups
from aurea.infra.backend import ReplicaRef
from aurea.infra.model import BackendKind, ExecRequest, ExecResult, Found, OutputSink, Replica, Spec
from aurea.paths import state_dir

__all__ = ["LocalBackend"]

log = structlog.get_logger("aurea.infra")

ENV_OWNER = "AUREA_OWNER"
ENV_RESOURCE = "AUREA_RESOURCE_ID"
ENV_REPLICA = "AUREA_REPLICA"
ENV_ROLE = "AUREA_ROLE"  # holder | exec

_CHUNK = 65536
_KILL_WAIT_S = 5.0

# Runs in the child before the real program: join the cgroups, set rlimits, then exec. Its
# settings come in a 0600 file (not argv: the environment may hold secrets), removed at once.
_LAUNCH = r"""
import json, os, resource, sys
path = sys.argv[1]
with open(path) as f:
    c = json.load(f)
os.unlink(path)
if c["detach"]:
    # The holder must not be Aurea's child (it outlives Aurea, and no one waits for it): fork,
    # tell Aurea the pid, and leave it to init.
    pid = os.fork()
    if pid:
        sys.stdout.write(str(pid))
        sys.stdout.flush()
        os._exit(0)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # Aurea reads the launcher's output to its end: let go of the pipes
        os.dup2(null, fd)
try:
    for procs in c["procs"]:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
except OSError as e:
    sys.stderr.write("aurea: cannot join the replica's cgroup: %s\n" % e.strerror)
    os._exit(126)
if c["as"]:
    resource.setrlimit(resource.RLIMIT_AS, (c["as"], c["as"]))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
try:
    os.chdir(c["cwd"])
    os.execvpe(c["argv"][0], c["argv"], c["env"])
except OSError as e:
    sys.stderr.write("aurea: cannot run %s: %s\n" % (c["argv"][0], e.strerror))
    os._exit(127)
"""


def default_root() -> Path:
    return state_dir() / "resources"


class LocalBackend:
    kind = BackendKind.LOCAL

    def __init__(self, *, root: Path | None = None, cgroups: bool = True) -> None:
        self.root = root or default_root()
        self._cg = Cgroups() if cgroups else None
        self._groups: dict[str, set[int]] = {}  # replica key -> process groups of its commands
        self._owner = ""

    @property
    def limits_note(self) -> str:
        if self._cg is not None and self._cg.available:
            return f"cpu and memory limited by cgroup {self._cg.mode}"
        return "memory limited by RLIMIT_AS; cpu not limited (no writable cgroup)"

    async def check(self, spec: Spec) -> None:
        if spec.image or spec.template:
            field = "spec.image" if spec.image else "spec.template"
            raise InvalidRequest.field(field, "the local backend runs processes; leave it empty")

    def _cgroup_name(self, key: str) -> str:
        return f"{self._owner}-{key}" if self._owner else key

    async def create(self, ref: ReplicaRef, spec: Spec) -> Replica:
        self._owner = ref.owner
        key = f"{ref.resource_id}-{ref.index}"
        workdir = self.root / key
        procs: list[str] = []
        pid = 0
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            procs = self._limit(key, spec)
            env = self._env(ref.owner, ref.resource_id, ref.index, "holder", spec, ())
            launcher = await self._spawn(
                workdir, workdir, ["sleep", "infinity"], env, procs, spec, pipes=False, detach=True
            )
            out, err = await launcher.communicate()
            if launcher.returncode or not out.strip().isdigit():
                raise FailedPrecondition(
                    f"the local replica could not start: {err.decode(errors='replace')[:200]}"
                )
            pid = int(out)
            await _until_exec(pid, "sleep")
        except BaseException:
            if pid:
                _killpg(pid)
            self._cleanup(key, workdir)
            raise
        return Replica(str(pid), key=key)

    def _limit(self, key: str, spec: Spec) -> list[str]:
        cg = self._cg
        if cg is None or not cg.available:
            return []
        try:
            return cg.create(
                self._cgroup_name(key), cpu_millis=spec.cpu_millis, memory_mib=spec.memory_mib
            )
        except OSError as exc:
            log.warning("infra_cgroup_unavailable", error=str(exc))
            return []

    def _env(
        self,
        owner: str,
        rid: str,
        index: int,
        role: str,
        spec: Spec,
        extra: tuple[tuple[str, str], ...],
    ) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.root / f"{rid}-{index}"),
        }
        env.update({f"AUREA_LABEL_{k.upper().replace('.', '_')}": v for k, v in spec.labels})
        env.update(spec.env)
        env.update(extra)
        env.update({ENV_OWNER: owner, ENV_RESOURCE: rid, ENV_REPLICA: str(index), ENV_ROLE: role})
        return env

    async def _spawn(
        self,
        workdir: Path,
        cwd: Path,
        argv: list[str],
        env: dict[str, str],
        procs: list[str],
        spec: Spec,
        *,
        pipes: bool,
        stdin: bool = False,
        detach: bool = False,
    ) -> asyncio.subprocess.Process:
        limited = bool(procs)
        cfg = {
            "argv": argv,
            "env": env,
            "cwd": str(cwd),
            "procs": procs,
            "as": 0 if limited or not spec.memory_mib else spec.memory_mib << 20,
            "detach": detach,
        }
        path = workdir / f".aurea-launch-{secrets.token_hex(6)}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f)
        pipe = asyncio.subprocess.PIPE if pipes or detach else asyncio.subprocess.DEVNULL
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-S",
                "-c",
                _LAUNCH,
                str(path),
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=pipe,
                stderr=pipe,
                start_new_session=True,
                env=env,
            )
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise

    async def destroy(self, replica: Replica) -> None:
        key = replica.key
        pids = {int(replica.backend_id)} if replica.backend_id.isdigit() else set()
        for pgid in self._groups.pop(key, set()):
            _killpg(pgid)
        for pid in pids:
            if _markers(pid).get(ENV_ROLE):  # ours (never a reused pid of someone else)
                _killpg(pid)
        await self._wait_gone(pids)
        if key:
            self._cleanup(key, self.root / key)

    async def _wait_gone(self, pids: set[int]) -> None:
        for _ in range(int(_KILL_WAIT_S / 0.02)):  # SIGKILL is delivered, not awaited
            if not any(_alive(p) for p in pids):
                return
            await asyncio.sleep(0.02)

    def _cleanup(self, key: str, workdir: Path) -> None:
        cg = self._cg
        if cg is not None and cg.available:
            name = self._cgroup_name(key)
            for pid in cg.pids(name):  # stragglers a command left behind
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            cg.remove(name)
        shutil.rmtree(workdir, ignore_errors=True)

    async def execute(
        self, replica: Replica, spec: Spec, request: ExecRequest, sink: OutputSink
    ) -> ExecResult:
        marks = _markers(int(replica.backend_id)) if replica.backend_id.isdigit() else {}
        if not marks.get(ENV_ROLE):
            raise FailedPrecondition(f"replica {replica.backend_id} has no running process")
        key = replica.key
        workdir = self.root / key
        cwd = workdir / request.working_dir if request.working_dir else workdir
        if not cwd.is_dir():
            raise FailedPrecondition(f"working_dir {request.working_dir!r} is not a directory")
        env = self._env(
            marks[ENV_OWNER],
            marks[ENV_RESOURCE],
            int(marks[ENV_REPLICA]),
            "exec",
            spec,
            request.env,
        )
        procs: list[str] = []
        cg = self._cg
        if cg is not None and cg.available and cg.exists(self._cgroup_name(key)):
            # The holder is in the replica's groups: the command joins them too.
            procs = cg.create(
                self._cgroup_name(key), cpu_millis=spec.cpu_millis, memory_mib=spec.memory_mib
            )
        started = time.monotonic()
        proc = await self._spawn(
            workdir,
            cwd,
            list(request.argv),
            env,
            procs,
            spec,
            pipes=True,
            stdin=bool(request.stdin),
        )
        groups = self._groups.setdefault(key, set())
        groups.add(proc.pid)
        timed_out = False
        try:
            async with asyncio.timeout(request.timeout_s or None):
                await _pump(proc, request.stdin, sink)
        except TimeoutError:
            timed_out = True
        finally:
            _killpg(proc.pid)  # the command, or what it left running, ends with the call
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(proc.wait())
            groups.discard(proc.pid)
        code = proc.returncode if proc.returncode is not None else -1
        return ExecResult(
            exit_code=-1 if timed_out or code < 0 else code,
            duration_s=time.monotonic() - started,
            timed_out=timed_out,
        )

    async def discover(self, owner: str) -> list[Found]:
        self._owner = owner
        out: list[Found] = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            marks = _markers(int(entry.name))
            if marks.get(ENV_OWNER) != owner or not marks.get(ENV_RESOURCE):
                continue
            rid, index = marks[ENV_RESOURCE], marks.get(ENV_REPLICA, "0")
            # A command left from before the restart is no replica: it becomes an orphan.
            key = f"{rid}-{index}" if marks.get(ENV_ROLE) == "holder" else ""
            out.append(Found(rid, Replica(entry.name, key=key), running=True))
        return out

    async def aclose(self) -> None:
        for key in list(self._groups):
            for pgid in self._groups.pop(key):
                _killpg(pgid)


async def _pump(proc: asyncio.subprocess.Process, stdin: bytes, sink: OutputSink) -> None:
    async def read(stream: asyncio.StreamReader | None, fd: int) -> None:
        assert stream is not None
        while chunk := await stream.read(_CHUNK):
            await sink(fd, chunk)

    async def feed() -> None:
        w = proc.stdin
        if w is None:
            return
        with contextlib.suppress(ConnectionError):
            w.write(stdin)
            await w.drain()
        w.close()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(feed())
        tg.create_task(read(proc.stdout, 1))
        tg.create_task(read(proc.stderr, 2))
        await proc.wait()
        # The command has exited: whatever it left running in its group must not keep the
        # pipes open (the reads would never end).
        _killpg(proc.pid)


async def _until_exec(pid: int, program: str) -> None:
    """Wait until the launcher has exec'd ``program`` (limits applied), or raise if it died."""
    for _ in range(500):
        if not _alive(pid):
            raise FailedPrecondition("the local replica's process exited at start")
        if _argv0(pid) == program.encode():
            return
        await asyncio.sleep(0.01)
    raise FailedPrecondition("the local replica's process did not start within 5 s")


def _argv0(pid: int) -> bytes:
    try:  # /proc is in memory: no disk wait
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0", 1)[0]
    except OSError:
        return b""


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _markers(pid: int) -> dict[str, str]:
    """The AUREA_* marker variables of a process (empty when it has none or is gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        name, _, value = item.partition(b"=")
        if name in (b"AUREA_OWNER", b"AUREA_RESOURCE_ID", b"AUREA_REPLICA", b"AUREA_ROLE"):
            out[name.decode()] = value.decode(errors="replace")
    return out
