"""What a task handler is given besides its payload: which task and attempt it runs, the job to
charge, its deadline, and a way to report progress."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["TaskContext"]

MAX_PROGRESS_MESSAGE = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskContext:
    """One attempt of one task. ``deadline`` is a ``time.monotonic()`` instant (the attempt's
    timeout); pass it on to inference calls so they end with the attempt."""

    task_id: str
    kind: str
    pool: str
    job_id: str
    attempt: int  # from 1
    max_attempts: int
    request_id: str
    deadline: float
    _report: Callable[[float, str], None] = field(repr=False, default=lambda f, m: None)
    _clock: Callable[[], float] = field(repr=False, default=time.monotonic)

    @property
    def remaining_s(self) -> float:
        return max(self.deadline - self._clock(), 0.0)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress: ``fraction`` done in [0, 1] (clamped), and what is happening.
        Watchers of the task see it at once; it is not stored."""
        if not isinstance(fraction, int | float) or math.isnan(fraction):
            raise ValueError(f"progress fraction must be a number in [0, 1], got {fraction!r}")
        self._report(min(max(float(fraction), 0.0), 1.0), str(message)[:MAX_PROGRESS_MESSAGE])
