"""Task pools backed by resources: a ``[tasks.resource_pools.NAME]`` pool runs its
``resource.execute`` tasks (those naming no resource) in resources of its spec. A task takes an
idle resource of the pool, or has one provisioned while the pool is under ``max_resources``, else
waits for one to free up. With ``autoscale`` on, the scheduler's autoscaler loop adds a resource
when the pool's queue stayed above ``scale_up_queue`` for two checks; resources idle longer than
``idle_release_s`` are released either way (idle time counts only while the queue is not above
the threshold: work waiting for the pool keeps its resources).

Resources are in-process state of this server: at start, the pool's earlier resources (labelled
with the pool's name) are released rather than adopted, so none is left behind or counted twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import structlog

from aurea.config import ResourcePoolSettings
from aurea.errors import AureaError, FailedPrecondition
from aurea.infra.messages import GetResource, ListResources, Provision, ProvisionerMsg, Release
from aurea.infra.model import BackendKind, Resource, ResourceStatus, Spec
from aurea.runtime import ActorRef

__all__ = ["POOL_LABEL", "PoolResources", "ResourceAutoscaler"]

log = structlog.get_logger("aurea.infra")

POOL_LABEL = "aurea.pool"
_POLL_S = 0.05  # while a new resource starts
_PROVISION_WAIT_S = 600.0  # at most, for a resource to start (a VM clone takes minutes)
_BACKENDS = {"local": "local", "docker": "docker", "proxmox": "proxmox"}


class PoolResources:
    """The resources of one resource-backed pool, and which of them run a task now."""

    def __init__(
        self,
        settings: ResourcePoolSettings,
        provisioner: ActorRef[ProvisionerMsg],
        *,
        ask_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._provisioner = provisioner
        self._ask_timeout_s = ask_timeout_s
        self._clock = clock
        self._idle_since: dict[str, float] = {}  # idle resources, in the order they freed up
        self._busy: set[str] = set()
        self._pending = 0  # provisions under way (they count against the cap)
        self._starting: set[str] = set()  # their ids, once known
        self._freed = asyncio.Condition()
        self.spec = Spec(
            cpu_millis=settings.cpu_millis,
            memory_mib=settings.memory_mib,
            image=settings.image,
            env=(("AUREA_POOL", settings.name),),
            labels=((POOL_LABEL, settings.name),),
        )

    @property
    def count(self) -> int:
        """Resources of the pool: idle, busy, and being provisioned."""
        return len(self._idle_since) + len(self._busy) + self._pending

    @property
    def resource_ids(self) -> tuple[str, ...]:
        return (*self._idle_since, *self._busy)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[str]:
        """A resource of the pool for one task: an idle one, else a new one under the cap,
        else the next to free up."""
        rid = await self._take()
        try:
            yield rid
        finally:
            self._busy.discard(rid)
            self._idle_since[rid] = self._clock()
            async with self._freed:
                self._freed.notify()

    async def _take(self) -> str:
        while True:
            if self._idle_since:
                rid = next(iter(self._idle_since))
                del self._idle_since[rid]
                self._busy.add(rid)
                return rid
            if self.count < self.settings.max_resources:
                rid = await self._provision()
                self._busy.add(rid)
                return rid
            async with self._freed:
                await self._freed.wait()

    async def add(self) -> bool:
        """Provision one more (idle) resource if the pool is under its cap."""
        if self.count >= self.settings.max_resources:
            return False
        rid = await self._provision()
        self._idle_since[rid] = self._clock()
        async with self._freed:
            self._freed.notify()
        return True

    async def _provision(self) -> str:
        self._pending += 1
        try:
            r = await self._provisioner.ask(
                Provision(backend=BackendKind(_BACKENDS[self.settings.backend]), spec=self.spec),
                timeout_s=self._ask_timeout_s,
            )
            self._starting.add(r.resource_id)
            try:
                r = await self._until_running(r.resource_id)
            finally:
                self._starting.discard(r.resource_id)
        finally:
            self._pending -= 1
        log.info("pool_resource_added", pool=self.settings.name, resource_id=r.resource_id)
        return r.resource_id

    async def _until_running(self, rid: str) -> Resource:
        """Wait (polling, bounded by the ask timeout) until a new resource runs."""
        deadline = self._clock() + max(self._ask_timeout_s, _PROVISION_WAIT_S)
        while True:
            r = await self._provisioner.ask(
                GetResource(resource_id=rid), timeout_s=self._ask_timeout_s
            )
            if r.status is ResourceStatus.RUNNING:
                return r
            if r.status is not ResourceStatus.PROVISIONING or self._clock() > deadline:
                await self._release(rid)
                raise FailedPrecondition(
                    f"resource {rid} of pool {self.settings.name!r} did not start: "
                    f"{r.status} {r.status_message}".strip()
                )
            await asyncio.sleep(_POLL_S)

    def keep_idle(self) -> None:
        """Restart the idle time of idle resources (work is waiting: they are wanted)."""
        now = self._clock()
        for rid in self._idle_since:
            self._idle_since[rid] = now

    async def release_idle(self) -> int:
        """Release resources idle longer than ``idle_release_s`` (0: never)."""
        limit = self.settings.idle_release_s
        if limit <= 0:
            return 0
        now = self._clock()
        old = [rid for rid, since in self._idle_since.items() if now - since > limit]
        for rid in old:
            del self._idle_since[rid]  # before any await: no task can take it now
        for rid in old:
            await self._release(rid)
        return len(old)

    async def release_all(self) -> None:
        """Release every idle resource and forget the busy ones' (they end with their task)."""
        ids = list(self._idle_since)
        self._idle_since.clear()
        for rid in ids:
            await self._release(rid)

    async def release_earlier(self) -> None:
        """Release this pool's resources left by an earlier run of the server."""
        page = await self._provisioner.ask(
            ListResources(
                statuses=frozenset({ResourceStatus.RUNNING}),
                page_size=1000,
            ),
            timeout_s=self._ask_timeout_s,
        )
        for r in page.resources:
            known = self._busy | self._starting | set(self._idle_since)
            if (
                dict(r.spec.labels).get(POOL_LABEL) == self.settings.name
                and r.resource_id not in known
            ):
                await self._release(r.resource_id)

    async def _release(self, rid: str) -> None:
        try:
            await self._provisioner.ask(Release(resource_id=rid), timeout_s=self._ask_timeout_s)
        except AureaError as exc:
            log.warning("pool_resource_release_failed", resource_id=rid, error=str(exc))
            return
        log.info("pool_resource_released", pool=self.settings.name, resource_id=rid)


class ResourceAutoscaler:
    """What the scheduler's autoscaler loop calls with each pool's queue length."""

    def __init__(self, pools: Mapping[str, PoolResources]) -> None:
        self.pools = dict(pools)
        self._above: dict[str, int] = {}  # consecutive checks a pool's queue was above
        self._started = False

    @property
    def interval_s(self) -> float:
        return min((p.settings.check_every_s for p in self.pools.values()), default=1.0)

    async def tick(self, queued: Mapping[str, int]) -> None:
        if not self._started:
            self._started = True
            for pool in self.pools.values():
                try:
                    await pool.release_earlier()
                except AureaError as exc:
                    log.warning("pool_resource_scan_failed", error=str(exc))
        for name, pool in self.pools.items():
            try:
                above = queued.get(name, 0) > pool.settings.scale_up_queue
                if above:  # idle time counts only while no work waits for the pool
                    pool.keep_idle()
                else:
                    await pool.release_idle()
                if not pool.settings.autoscale:
                    continue
                self._above[name] = self._above.get(name, 0) + 1 if above else 0
                if self._above[name] >= 2 and await pool.add():
                    self._above[name] = 0  # the next one needs two more checks
            except AureaError as exc:
                log.warning("pool_autoscale_failed", pool=name, error=str(exc))
