"""What every store shares: the clock convention, paging, and the one error a store raises.

Clock convention (decided here, for every store):

* A store never reads a clock. Every time-dependent operation takes ``now`` (seconds, float) from
  its caller, and durations are relative seconds named ``*_s``; so tests drive stores with a fake
  clock and nothing in a store depends on when it runs.
* ``now`` is **wall time** (Unix epoch seconds, ``time.time``), injected by the caller as a
  ``WallClock`` (default ``wall_clock``). Lease and visibility deadlines are *stored*: they must
  still mean something after a restart (SQLite) and on another replica (Redis), and a monotonic
  clock's zero is per boot and per host. In-process deadlines (a call's timeout) stay monotonic;
  only what a store keeps is wall time. All callers of one store must use the same clock.
* Replicas sharing a Redis store would disagree by their clock skew; a Redis implementation may
  use the server's own ``TIME`` inside its scripts instead of the ``now`` it is given.
* A wall-clock step makes leases expire early or late by the step. That is safe for money: an
  expired lease only *returns* a reservation, it never spends, and a late settle still records
  what was spent (see ``LedgerStore.settle``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aurea.errors import Unavailable

__all__ = [
    "MAX_PAGE_SIZE",
    "Page",
    "StoreUnavailable",
    "WallClock",
    "check_finite",
    "check_id",
    "check_limit",
    "check_non_negative",
    "check_positive",
    "wall_clock",
]

T = TypeVar("T")

WallClock = Callable[[], float]
"""Seconds since the Unix epoch; the clock every store's ``now`` comes from."""

wall_clock: WallClock = time.time

MAX_PAGE_SIZE = 1000
"""The largest page any ``list_*`` returns; a bigger ``limit`` is a caller bug (ValueError)."""


class StoreUnavailable(Unavailable):
    """The store's backend failed (disk full, database locked too long, Redis down); retryable.

    A subclass of ``Unavailable`` so it reaches clients as UNAVAILABLE, never INTERNAL.
    """

    reason = "STORE_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing. ``next_cursor`` is opaque; ``None`` means this was the last page.

    A cursor a store did not produce may raise ``ValueError`` (callers map it to a bad request).
    """

    items: tuple[T, ...]
    next_cursor: str | None = None


# Argument checks: a store refuses nonsense with ValueError (a bug in its caller, which validates
# user input first), so no implementation ever persists a NaN, a negative amount or a huge page.


def check_id(name: str, value: str) -> None:
    if not value:
        raise ValueError(f"{name} must not be empty")


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be in [1, {MAX_PAGE_SIZE}], got {limit}")


def check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


def check_non_negative(name: str, value: float) -> None:
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def check_positive(name: str, value: float) -> None:
    if not value > 0:  # also refuses NaN
        raise ValueError(f"{name} must be > 0, got {value!r}")
