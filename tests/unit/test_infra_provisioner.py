"""The Provisioner actor driven through asks with an in-memory backend and a fake wall clock:
capacity and max_resources, all-or-nothing creation, release at any point, scaling, idle
clean-up, request-id deduplication, events, and start-up reconciliation."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from aurea.errors import FailedPrecondition, InvalidRequest, NotFound, ResourceExhausted
from aurea.infra.backend import ReplicaRef
from aurea.infra.messages import (
    BeginExec,
    Cleanup,
    GetResource,
    GetStats,
    ListResources,
    Provision,
    ProvisionerMsg,
    Release,
    Scale,
)
from aurea.infra.model import (
    BackendKind,
    Capacity,
    ExecRequest,
    ExecResult,
    Found,
    OutputSink,
    Replica,
    Resource,
    ResourceStatus,
    Spec,
)
from aurea.infra.provisioner import Limits, Provisioner
from aurea.infra.store import MemoryResourceStore
from aurea.runtime import ActorRef, ActorSystem

LOCAL = BackendKind.LOCAL
R = ResourceStatus


class FakeBackend:
    """Replicas in a dict. ``fail_create_at`` fails that replica index; ``gate`` (when set)
    holds every create until it is set; ``discover_gate`` holds discovery."""

    kind = BackendKind.LOCAL

    def __init__(self) -> None:
        self.live: dict[str, str] = {}  # backend id -> resource id
        self.created = 0
        self.destroyed: list[str] = []
        self.fail_create_at: int | None = None
        self.check_error: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.discover_gate: asyncio.Event | None = None
        self.found: list[Found] = []

    async def check(self, spec: Spec) -> None:
        if self.check_error is not None:
            raise self.check_error

    async def create(self, ref: ReplicaRef, spec: Spec) -> Replica:
        if self.gate is not None:
            await self.gate.wait()
        if ref.index == self.fail_create_at:
            raise FailedPrecondition(f"replica {ref.index} would not start")
        self.created += 1
        bid = f"b{self.created}"
        self.live[bid] = ref.resource_id
        return Replica(bid)

    async def destroy(self, replica: Replica) -> None:
        self.destroyed.append(replica.backend_id)
        self.live.pop(replica.backend_id, None)

    async def execute(
        self, replica: Replica, spec: Spec, request: ExecRequest, sink: OutputSink
    ) -> ExecResult:
        return ExecResult(0, 0.0)

    async def discover(self, owner: str) -> list[Found]:
        if self.discover_gate is not None:
            await self.discover_gate.wait()
        return list(self.found)

    async def aclose(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Rig:
    ref: ActorRef[ProvisionerMsg]
    backend: FakeBackend
    store: MemoryResourceStore
    clock: Clock
    events: list[tuple[str, dict[str, str]]]

    async def ask(self, msg: Any) -> Any:
        return await self.ref.ask(msg, timeout_s=5)

    async def running(self, rid: str) -> Resource:
        for _ in range(500):
            r: Resource = await self.ask(GetResource(resource_id=rid))
            if r.status is not R.PROVISIONING:
                return r
            await asyncio.sleep(0.002)
        raise AssertionError(f"{rid} stayed provisioning")

    async def until(self, rid: str, status: ResourceStatus) -> Resource:
        for _ in range(500):
            r: Resource = await self.ask(GetResource(resource_id=rid))
            if r.status is status:
                return r
            await asyncio.sleep(0.002)
        raise AssertionError(f"{rid} never became {status}: {r}")


LIMITS = Limits(
    max_resources=3,
    total=Capacity(4000, 4096, 100, 0),
    default_cpu_millis=1000,
    default_memory_mib=512,
)


@pytest_asyncio.fixture
async def make_rig() -> AsyncIterator[Any]:
    systems: list[ActorSystem] = []

    async def make(
        backend: FakeBackend | None = None,
        store: MemoryResourceStore | None = None,
        limits: Limits = LIMITS,
        clock: Clock | None = None,
    ) -> Rig:
        backend = backend or FakeBackend()
        store = store or MemoryResourceStore()
        clock = clock or Clock()
        events: list[tuple[str, dict[str, str]]] = []
        system = ActorSystem()
        ref = system.spawn(
            "provisioner",
            lambda: Provisioner(
                backends={"local": backend},
                store=store,
                limits=limits,
                owner="o1",
                publish=lambda k, a: events.append((k, dict(a))),
                wall_clock=clock,
            ),
        )
        await system.start()
        systems.append(system)
        return Rig(ref, backend, store, clock, events)

    yield make
    for system in systems:
        await system.stop(grace_s=1)


async def test_provision_applies_defaults_and_runs(make_rig: Any) -> None:
    rig = await make_rig()
    r = await rig.ask(Provision(backend=LOCAL, spec=Spec(cpu_millis=500)))
    assert r.status is R.PROVISIONING
    r = await rig.running(r.resource_id)
    assert r.status is R.RUNNING and len(r.replicas) == 1
    assert r.spec.cpu_millis == 500 and r.spec.memory_mib == 512  # the default, applied
    stats = await rig.ask(GetStats())
    assert stats.available == Capacity(3500, 3584, 100, 0)
    assert [k for k, _ in rig.events] == ["resource.provisioning", "resource.running"]


async def test_capacity_and_max_resources_refuse_before_anything_is_made(make_rig: Any) -> None:
    rig = await make_rig()
    with pytest.raises(ResourceExhausted, match="cpu_millis 5000 > 4000"):
        await rig.ask(Provision(backend=LOCAL, spec=Spec(cpu_millis=5000)))
    with pytest.raises(ResourceExhausted, match="cpu_millis"):
        await rig.ask(Provision(backend=LOCAL, spec=Spec(cpu_millis=1000), replicas=5))
    with pytest.raises(ResourceExhausted, match="gpu_count"):
        await rig.ask(Provision(backend=LOCAL, spec=Spec(gpu_count=1)))
    for _ in range(3):
        r = await rig.ask(Provision(backend=LOCAL, spec=Spec(cpu_millis=100, memory_mib=10)))
        await rig.running(r.resource_id)
    with pytest.raises(ResourceExhausted, match="max_resources"):
        await rig.ask(Provision(backend=LOCAL, spec=Spec(cpu_millis=100, memory_mib=10)))
    assert rig.backend.created == 3
    with pytest.raises(FailedPrecondition, match="not configured"):
        await rig.ask(Provision(backend=BackendKind.DOCKER, spec=Spec(image="x")))


async def test_a_refused_check_leaves_no_record_and_holds_nothing(make_rig: Any) -> None:
    backend = FakeBackend()
    backend.check_error = NotFound("image nope is not at the engine")
    rig = await make_rig(backend)
    with pytest.raises(NotFound):
        await rig.ask(Provision(backend=LOCAL, spec=Spec(cpu_millis=4000)))
    page = await rig.ask(ListResources(statuses=frozenset(ResourceStatus)))
    assert page.resources == ()
    assert await rig.store.load(released_after=0) == []
    backend.check_error = None
    r = await rig.ask(Provision(backend=LOCAL, spec=Spec(cpu_millis=4000)))  # all of it again
    assert (await rig.running(r.resource_id)).status is R.RUNNING


async def test_creation_is_all_or_nothing(make_rig: Any) -> None:
    backend = FakeBackend()
    backend.fail_create_at = 2
    rig = await make_rig(backend)
    r = await rig.ask(Provision(backend=LOCAL, spec=Spec(cpu_millis=100), replicas=3))
    r = await rig.running(r.resource_id)
    assert r.status is R.FAILED and "replica 2 would not start" in r.status_message
    assert backend.live == {} and len(backend.destroyed) == 2
    stats = await rig.ask(GetStats())
    assert stats.available == LIMITS.total
    with pytest.raises(FailedPrecondition, match="failed, not running"):
        await rig.ask(BeginExec(resource_id=r.resource_id))


async def test_release_while_provisioning_destroys_what_is_made(make_rig: Any) -> None:
    backend = FakeBackend()
    backend.gate = asyncio.Event()
    rig = await make_rig(backend)
    r = await rig.ask(Provision(backend=LOCAL, spec=Spec(), replicas=2))
    await asyncio.sleep(0.01)
    released = await rig.ask(Release(resource_id=r.resource_id))
    assert released.status is R.PROVISIONING  # it cannot be stopped halfway
    backend.gate.set()
    done = await rig.until(r.resource_id, R.RELEASED)
    assert done.released_at is not None
    assert backend.live == {} and sorted(backend.destroyed) == ["b1", "b2"]


async def test_exec_permits_keep_a_resource_busy_and_cleanup_takes_idle_ones(
    make_rig: Any,
) -> None:
    rig = await make_rig()
    a = await rig.running((await rig.ask(Provision(backend=LOCAL, spec=Spec()))).resource_id)
    b = await rig.running((await rig.ask(Provision(backend=LOCAL, spec=Spec()))).resource_id)
    permit = await rig.ask(BeginExec(resource_id=a.resource_id))
    rig.clock.now += 60
    assert await rig.ask(Cleanup(idle_s=59, validate_only=True)) == (b.resource_id,)
    assert await rig.ask(Cleanup(idle_s=61)) == ()
    with pytest.raises(InvalidRequest):
        await rig.ask(BeginExec(resource_id=a.resource_id, replica=1))
    async with permit:
        pass
    assert (await rig.ask(GetResource(resource_id=a.resource_id))).last_used_at == rig.clock.now
    assert await rig.ask(Cleanup(idle_s=30)) == (b.resource_id,)
    await rig.until(b.resource_id, R.RELEASED)
    rig.clock.now += 31
    assert await rig.ask(Cleanup(idle_s=30)) == (a.resource_id,)
    stats = await rig.ask(GetStats())
    assert stats.executions == 1


async def test_an_abandoned_exec_permit_does_not_keep_the_resource_busy(make_rig: Any) -> None:
    rig = await make_rig()
    a = await rig.running((await rig.ask(Provision(backend=LOCAL, spec=Spec()))).resource_id)
    permit = await rig.ask(BeginExec(resource_id=a.resource_id))
    rig.ref.post(permit.abandon())
    await rig.ask(GetStats())  # the settle message is handled before this ask
    rig.clock.now += 10
    assert await rig.ask(Cleanup(idle_s=1)) == (a.resource_id,)


async def test_scale_up_down_and_capacity(make_rig: Any) -> None:
    rig = await make_rig()
    r = await rig.ask(Provision(backend=LOCAL, spec=Spec(cpu_millis=1000, memory_mib=100)))
    await rig.running(r.resource_id)
    up = await rig.ask(Scale(resource_id=r.resource_id, replicas=3))
    assert [x.backend_id for x in up.replicas] == ["b1", "b2", "b3"]
    with pytest.raises(ResourceExhausted):
        await rig.ask(Scale(resource_id=r.resource_id, replicas=5))
    down = await rig.ask(Scale(resource_id=r.resource_id, replicas=1))
    assert [x.backend_id for x in down.replicas] == ["b1"]
    assert sorted(rig.backend.destroyed) == ["b2", "b3"]
    assert (await rig.ask(GetStats())).available.cpu_millis == 3000


async def test_a_second_scale_while_one_runs_is_refused(make_rig: Any) -> None:
    backend = FakeBackend()
    rig = await make_rig(backend)
    r = await rig.ask(Provision(backend=LOCAL, spec=Spec(cpu_millis=100)))
    await rig.running(r.resource_id)
    backend.gate = asyncio.Event()
    first = asyncio.ensure_future(rig.ask(Scale(resource_id=r.resource_id, replicas=2)))
    await asyncio.sleep(0.01)
    with pytest.raises(FailedPrecondition, match="being scaled"):
        await rig.ask(Scale(resource_id=r.resource_id, replicas=3))
    backend.gate.set()
    assert len((await first).replicas) == 2


async def test_request_id_returns_the_first_resource(make_rig: Any) -> None:
    rig = await make_rig()
    a = await rig.ask(Provision(backend=LOCAL, spec=Spec(), request_id="k1"))
    await rig.running(a.resource_id)
    b = await rig.ask(Provision(backend=LOCAL, spec=Spec(), request_id="k1"))
    assert a.resource_id == b.resource_id and rig.backend.created == 1
    rig.clock.now += 2 * 86_400
    c = await rig.ask(Provision(backend=LOCAL, spec=Spec(), request_id="k1"))
    assert c.resource_id != a.resource_id


async def test_a_resource_made_while_discovery_runs_is_not_reconciled_away(
    make_rig: Any,
) -> None:
    # Regression: discovery finished after a new resource's replica existed, and start-up
    # reconciliation took the fresh PROVISIONING record for one cut by a restart (FAILED).
    backend = FakeBackend()
    backend.discover_gate = asyncio.Event()
    backend.gate = asyncio.Event()
    rig = await make_rig(backend)
    r = await rig.ask(Provision(backend=LOCAL, spec=Spec()))
    await asyncio.sleep(0.01)
    # Listed while its create is under way: the engine already has the container.
    backend.found = [Found(r.resource_id, Replica("b1"), True)]
    backend.discover_gate.set()
    await asyncio.sleep(0.05)
    assert (await rig.ask(GetResource(resource_id=r.resource_id))).status is R.PROVISIONING
    backend.gate.set()
    got = await rig.running(r.resource_id)
    assert got.status is R.RUNNING, got.status_message
    assert backend.destroyed == []


async def test_restart_adopts_fails_and_sweeps(make_rig: Any) -> None:
    store = MemoryResourceStore()
    backend = FakeBackend()
    rig = await make_rig(backend, store)
    kept = await rig.running((await rig.ask(Provision(backend=LOCAL, spec=Spec()))).resource_id)
    lost = await rig.running((await rig.ask(Provision(backend=LOCAL, spec=Spec()))).resource_id)
    await asyncio.sleep(0.01)  # let the journal write
    backend.found = [
        Found(kept.resource_id, kept.replicas[0], True),
        Found("rorphan", Replica("b99"), True),
    ]
    rig2 = await make_rig(backend, store)
    await asyncio.sleep(0.05)
    assert (await rig2.ask(GetResource(resource_id=kept.resource_id))).status is R.RUNNING
    failed = await rig2.ask(GetResource(resource_id=lost.resource_id))
    assert failed.status is R.FAILED and "gone" in failed.status_message
    assert "b99" in backend.destroyed
    kinds = [k for k, _ in rig2.events]
    assert "resource.adopted" in kinds and "resource.orphan_released" in kinds
