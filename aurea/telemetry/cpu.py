"""The process's recent CPU use: a sample of CPU time each second, so "the last 10 seconds"
means that, not the average since the process started."""

from __future__ import annotations

import asyncio
import resource
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 10.0


def process_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


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
