"""CPU and memory limits for local replicas through Linux cgroups, where the host lets Aurea
make them (root, or a delegated subtree): cgroup v2 (``cpu.max``, ``memory.max``) or v1 (the
``cpu`` and ``memory`` hierarchies). Each replica gets ``aurea/<name>`` under each hierarchy;
its processes join it themselves before they exec (so nothing runs unlimited for a moment).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["Cgroups"]

_PERIOD_US = 100_000
_PARENT = "aurea"


class Cgroups:
    """Finds a writable cgroup layout; ``available`` is False where there is none."""

    def __init__(self, base: Path = Path("/sys/fs/cgroup")) -> None:
        self.base = base
        self.mode = ""
        controllers = base / "cgroup.controllers"
        if controllers.exists():
            have = set(_read(controllers).split())
            if {"cpu", "memory"} <= have and os.access(base, os.W_OK):
                self.mode = "v2"
        elif all(os.access(base / c, os.W_OK) for c in ("cpu", "memory")):
            self.mode = "v1"

    @property
    def available(self) -> bool:
        return bool(self.mode)

    def _dirs(self, name: str) -> list[Path]:
        if self.mode == "v2":
            return [self.base / _PARENT / name]
        return [self.base / "cpu" / _PARENT / name, self.base / "memory" / _PARENT / name]

    def create(self, name: str, *, cpu_millis: int, memory_mib: int) -> list[str]:
        """Make the replica's groups with its limits; the ``cgroup.procs`` files to join.
        Raises OSError when the host refuses (the caller falls back to rlimits)."""
        try:
            if self.mode == "v2":
                parent = self.base / _PARENT
                parent.mkdir(exist_ok=True)
                _write(self.base / "cgroup.subtree_control", "+cpu +memory")
                _write(parent / "cgroup.subtree_control", "+cpu +memory")
                (d,) = self._dirs(name)
                d.mkdir(exist_ok=True)
                if cpu_millis:
                    _write(d / "cpu.max", f"{cpu_millis * _PERIOD_US // 1000} {_PERIOD_US}")
                if memory_mib:
                    _write(d / "memory.max", str(memory_mib << 20))
                return [str(d / "cgroup.procs")]
            cpu, mem = self._dirs(name)
            for d in (cpu, mem):
                d.mkdir(parents=True, exist_ok=True)
            if cpu_millis:
                _write(cpu / "cpu.cfs_period_us", str(_PERIOD_US))
                _write(cpu / "cpu.cfs_quota_us", str(cpu_millis * _PERIOD_US // 1000))
            if memory_mib:
                _write(mem / "memory.limit_in_bytes", str(memory_mib << 20))
            return [str(cpu / "cgroup.procs"), str(mem / "cgroup.procs")]
        except OSError:
            self.remove(name)
            raise

    def exists(self, name: str) -> bool:
        return all(d.is_dir() for d in self._dirs(name))

    def pids(self, name: str) -> set[int]:
        out: set[int] = set()
        for d in self._dirs(name):
            with contextlib.suppress(OSError):
                out |= {int(p) for p in _read(d / "cgroup.procs").split()}
        return out

    def remove(self, name: str) -> bool:
        """Remove the replica's groups (they must be empty); True when none is left."""
        left = False
        for d in self._dirs(name):
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                left = True
        return not left

    def names(self) -> list[str]:
        """The replica groups that exist (to remove those of replicas that are gone)."""
        found: set[str] = set()
        for d in self._dirs(""):
            with contextlib.suppress(OSError):
                found |= {p.name for p in d.iterdir() if p.is_dir()}
        return sorted(found)


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
