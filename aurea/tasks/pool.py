"""One worker pool: a dispatcher that claims tasks from the pool's queue in the store, and a
bounded set of workers that run them. All of it runs as child tasks of the scheduler actor.

The dispatcher claims only for idle workers, and hands the claimed tasks out in the order the
store returned them (its rank order), publishing each start as it goes, so a pool's start order
is its claim order. Workers it is about to use are reserved before a claim, so scaling down
during a claim cannot leave a claimed task without a worker; a worker asked to retire finishes
its current task first. While host CPU is at or over the threshold, a pool that is running
something claims nothing, and an idle one claims one task at a time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from aurea.stores import StoreUnavailable, TaskQueueStore, TaskRecord, WallClock
from aurea.tasks.events import TaskHub
from aurea.tasks.model import Status
from aurea.tasks.runner import Runner

__all__ = ["Pool", "Spawn"]

log = structlog.get_logger("aurea.tasks")

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]
_STORE_RETRY_S = 1.0  # wait after a failed claim before the next
# An idle pool's polls back off (doubling) to this: the queue's own writes wake a pool at once,
# so polls only find what another process put there (expired leases, another replica's tasks).
MAX_IDLE_POLL_S = 5.0


class _Worker:
    __slots__ = ("inbox", "number", "retiring")

    def __init__(self, number: int) -> None:
        self.number = number
        self.inbox: asyncio.Queue[TaskRecord | None] = asyncio.Queue()
        self.retiring = False


class Pool:
    def __init__(
        self,
        name: str,
        *,
        store: TaskQueueStore,
        runner: Runner,
        hub: TaskHub,
        spawn: Spawn,
        holder: str,
        lease_s: float,
        poll_s: float,
        cpu_busy: Callable[[], bool],
        wall: WallClock,
        on_claimed: Callable[[str, int], None] = lambda pool, n: None,
    ) -> None:
        self.name = name
        self._store = store
        self._runner = runner
        self._hub = hub
        self._spawn = spawn
        self._holder = holder  # the lease holder's id in the store
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._cpu_busy = cpu_busy
        self._wall = wall
        self._on_claimed = on_claimed
        self._workers: dict[int, _Worker] = {}
        self._idle: deque[_Worker] = deque()
        self._reserved: list[_Worker] = []
        self._slot = asyncio.Event()  # a worker became idle (or was added)
        self._wake = asyncio.Event()  # the queue may have a task for us
        self._timers: set[asyncio.TimerHandle] = set()
        self._next_number = 0
        self._idle_poll_s = poll_s
        self.target = 0
        self.busy = 0

    # -- the scheduler's side -------------------------------------------------------------------

    def start(self, workers: int) -> None:
        self._spawn(self._dispatch(), f"pool:{self.name}:dispatcher")
        self.scale(workers)

    def scale(self, workers: int) -> None:
        """Set the number of workers: new ones start idle at once; surplus ones retire, idle
        ones first, busy ones after their current task."""
        self.target = workers
        live = [w for w in self._workers.values() if not w.retiring]
        for _ in range(workers - len(live)):
            self._next_number += 1
            worker = _Worker(self._next_number)
            self._workers[worker.number] = worker
            self._spawn(self._work(worker), f"pool:{self.name}:worker:{worker.number}")
            self._idle.append(worker)
        surplus = len(live) - workers
        while surplus > 0 and self._idle:
            worker = self._idle.pop()
            worker.retiring = True
            worker.inbox.put_nowait(None)
            surplus -= 1
        for worker in reversed(live):
            if surplus <= 0:
                break
            if not worker.retiring:
                worker.retiring = True  # reserved or busy: it stops after its current task
                surplus -= 1
        self._slot.set()

    def wake(self) -> None:
        self._wake.set()

    def wake_later(self, delay_s: float) -> None:
        if delay_s <= 0:
            self.wake()
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self.wake()

        handle = loop.call_later(delay_s, fire)
        self._timers.add(handle)

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    @property
    def workers(self) -> int:
        """Workers alive now (retiring ones included until they stop)."""
        return len(self._workers)

    # -- child tasks ----------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            if not self._idle:
                self._slot.clear()
                await self._slot.wait()
                continue
            limit = len(self._idle)
            if self._cpu_busy():
                if self.busy:
                    # Not _rest: a wake (a submit) must not turn this wait into a busy loop.
                    await asyncio.sleep(self._poll_s)
                    continue
                limit = 1
            reserved = self._reserved = [self._idle.popleft() for _ in range(limit)]
            self._wake.clear()  # before the claim: a submit during it wakes the next round
            try:
                claimed = await self._store.claim(
                    self.name, self._holder, self._lease_s, now=self._wall(), limit=limit
                )
            except StoreUnavailable as exc:
                log.warning("task_claim_failed", pool=self.name, error=str(exc))
                claimed = ()
                await asyncio.sleep(_STORE_RETRY_S)
            finally:
                self._reserved = []
            self._hand_out(claimed, reserved)
            if claimed:
                self._on_claimed(self.name, len(claimed))
                self._idle_poll_s = self._poll_s
            if len(claimed) < limit:
                if await self._rest(self._idle_poll_s):
                    self._idle_poll_s = self._poll_s
                elif not claimed:
                    self._idle_poll_s = min(
                        self._idle_poll_s * 2, max(MAX_IDLE_POLL_S, self._poll_s)
                    )

    def _hand_out(self, claimed: tuple[TaskRecord, ...], reserved: list[_Worker]) -> None:
        # Workers asked to retire during the claim take work last (a claimed task always has a
        # worker: the claim asked for no more tasks than were reserved).
        reserved.sort(key=lambda w: w.retiring)
        for record, worker in zip(claimed, reserved, strict=False):
            self.busy += 1
            self._hub.changed(record, Status.QUEUED)
            worker.inbox.put_nowait(record)
        for worker in reserved[len(claimed) :]:
            if worker.retiring:
                worker.inbox.put_nowait(None)
            else:
                self._idle.append(worker)

    async def _rest(self, poll_s: float) -> bool:
        """Wait until woken (a submit, a retry coming due: True) or ``poll_s`` passes."""
        try:
            async with asyncio.timeout(poll_s):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True

    async def _work(self, worker: _Worker) -> None:
        try:
            while True:
                record = await worker.inbox.get()
                if record is None:
                    return
                try:
                    await self._runner.run(record)
                finally:
                    self.busy -= 1
                if worker.retiring:
                    return
                self._idle.append(worker)
                self._slot.set()
        finally:
            self._workers.pop(worker.number, None)
