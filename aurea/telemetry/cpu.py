"""Recent CPU use, the process's and the host's: a sample of CPU time each second, so "the last
10 seconds" means that, not the average since the process (or the host) started. Also the host's
memory, for the system view."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 10.0


def process_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def host_cpu_s() -> float:
    """CPU seconds the host's cores have spent busy since boot (every state but idle and
    iowait, summed over cores), from ``/proc/stat``; 0.0 where there is no such file."""
    try:
        with open("/proc/stat", "rb") as f:  # a memory file system: never blocks on disk
            fields = f.readline().split()
    except OSError:
        return 0.0
    if len(fields) < 6 or fields[0] != b"cpu":
        return 0.0
    ticks = [int(x) for x in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # minus idle and iowait
    return busy / _CLOCK_TICKS


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
HOST_CPUS = os.cpu_count() or 1


def host_memory_bytes() -> tuple[int, int]:
    """The host's (total, available) memory in bytes from ``/proc/meminfo`` (MemAvailable: what
    new work can use without swapping); (0, 0) where there is no such file."""
    found: dict[bytes, int] = {}
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                name, _, rest = line.partition(b":")
                if name in (b"MemTotal", b"MemAvailable"):
                    found[name] = int(rest.split()[0]) * 1024  # the file says kB
    except (OSError, ValueError, IndexError):
        return 0, 0
    return found.get(b"MemTotal", 0), found.get(b"MemAvailable", 0)


class CpuWindow:
    """Samples (monotonic time, CPU seconds) once per ``interval_s`` on a loop timer (no task
    to own); ``percent()`` is the CPU used over the last ``window_s`` in percent of one core."""

    def __init__(
        self,
        *,
        window_s: float = WINDOW_S,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = process_cpu_s,
    ) -> None:
        self._window_s = window_s
        self._interval_s = interval_s
        self._clock = clock
        self._cpu = cpu
        self._samples: deque[tuple[float, float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.sample()

    def sample(self) -> None:
        now = self._clock()
        self._samples.append((now, self._cpu()))
        # Keep the newest sample at least window_s old, as the window's start.
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window_s:
            self._samples.popleft()

    def _tick(self) -> None:
        self.sample()
        self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._tick)

    def start(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def percent(self) -> float:
        """CPU use since the sample closest to ``window_s`` ago (since start when younger)."""
        now, cpu_now = self._clock(), self._cpu()
        start_t, start_cpu = self._samples[0]
        for t, c in self._samples:
            if now - t < self._window_s:
                break
            start_t, start_cpu = t, c
        elapsed = now - start_t
        return 100.0 * max(cpu_now - start_cpu, 0.0) / elapsed if elapsed > 0 else 0.0


def host_cpu_window(*, window_s: float = WINDOW_S, interval_s: float = 1.0) -> CpuWindow:
    """A window over the host's busy CPU time; ``host_percent(window)`` reads it in percent of
    all cores."""
    return CpuWindow(window_s=window_s, interval_s=interval_s, cpu=host_cpu_s)


def host_percent(window: CpuWindow) -> float:
    """A host window's reading in percent of all the host's cores, in [0, 100]."""
    return min(window.percent() / HOST_CPUS, 100.0)
