"""Resource records: both stores keep every field (env values included, for commands after a
restart), keep the owner id once chosen, prune old terminal records; the journal retries a
failed write and keeps only the newest version of a record; reconciliation's verdicts."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from aurea.infra._journal import Journal
from aurea.infra._reconcile import reconcile
from aurea.infra.model import BackendKind, Found, Replica, Resource, ResourceStatus, Spec
from aurea.infra.store import MemoryResourceStore, ResourceStore, SqliteResourceStore

R = ResourceStatus
SPEC = Spec(
    cpu_millis=1500,
    memory_mib=256,
    disk_gib=3,
    gpu_count=1,
    gpu_type="nvidia-a100",
    image="img:1",
    node="n1",
    storage="s1",
    env=(("TOKEN", "s3cret"),),
    network="none",
    labels=(("team", "a"),),
)


def res(rid: str, status: ResourceStatus = R.RUNNING, **kw: Any) -> Resource:
    return Resource(
        resource_id=rid,
        backend=BackendKind.DOCKER,
        spec=SPEC,
        status=status,
        replicas=(Replica("c1", "n1", "10.0.0.2", "k"),),
        created_at=100.0,
        last_used_at=150.5,
        request_id="q1",
        **kw,
    )


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ResourceStore:
    if request.param == "memory":
        return MemoryResourceStore()
    return SqliteResourceStore(tmp_path / "aurea.db")


async def test_round_trip_owner_and_prune(store: ResourceStore) -> None:
    await store.start()
    try:
        await store.put(res("r1"))
        await store.put(res("r2", R.RELEASED, released_at=200.0))
        await store.put(res("r3", R.FAILED, released_at=900.0))
        loaded = {r.resource_id: r for r in await store.load(released_after=500.0)}
        assert set(loaded) == {"r1", "r3"}
        assert loaded["r1"] == res("r1")
        assert await store.owner("first") == "first"
        assert await store.owner("second") == "first"
        assert await store.prune(before=500.0) == 1
        assert {r.resource_id for r in await store.load(released_after=0)} == {"r1", "r3"}
    finally:
        await store.close()


async def test_sqlite_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "aurea.db"
    a = SqliteResourceStore(path)
    await a.start()
    await a.put(res("r1"))
    assert await a.owner("o1") == "o1"
    await a.close()
    b = SqliteResourceStore(path)
    await b.start()
    try:
        assert await b.load(released_after=0) == [res("r1")]
        assert await b.owner("o2") == "o1"
    finally:
        await b.close()


class FlakyStore(MemoryResourceStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail = 1
        self.writes: list[Resource] = []

    async def put(self, resource: Resource) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        self.writes.append(resource)
        await super().put(resource)


async def test_journal_retries_and_coalesces() -> None:
    store = FlakyStore()
    journal = Journal(store)
    journal.write(res("r1"))
    assert not await journal.flush()  # the first write fails: it stays pending
    journal.write(dataclasses.replace(res("r1"), status_message="newer"))
    assert await journal.flush()
    assert [r.status_message for r in store.writes] == ["newer"]
    task = asyncio.ensure_future(journal.run())
    journal.write(res("r2"))
    for _ in range(100):
        if len(store.writes) == 2:
            break
        await asyncio.sleep(0.001)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [r.resource_id for r in store.writes] == ["r1", "r2"]


def test_reconcile_verdicts() -> None:
    kind = BackendKind.DOCKER
    ok = dataclasses.replace(res("ok"), replicas=(Replica("a"),))
    lost = dataclasses.replace(res("lost"), replicas=(Replica("b"), Replica("c")))
    stopped = dataclasses.replace(res("stopped"), replicas=(Replica("d"),))
    cut = dataclasses.replace(res("cut", R.PROVISIONING), replicas=())
    going = dataclasses.replace(res("going", R.RELEASING), replicas=(Replica("f"),))
    done = dataclasses.replace(res("done", R.RELEASED), replicas=(Replica("g"),))
    found = [
        Found("ok", Replica("a"), True),
        Found("lost", Replica("b"), True),
        Found("stopped", Replica("d"), False),
        Found("cut", Replica("e"), True),
        Found("going", Replica("f"), True),
        Found("done", Replica("g"), True),  # released, yet still there
        Found("stranger", Replica("h"), True),
        Found("ok", Replica("x"), True),  # made by a create the stop cut
    ]
    v = reconcile(kind, [ok, lost, stopped, cut, going, done], found, now=5.0)
    assert v.adopted == ["ok"]
    status = {r.resource_id: r.status for r in v.updated}
    assert status == {"lost": R.FAILED, "stopped": R.FAILED, "cut": R.FAILED, "going": R.RELEASED}
    assert all(r.released_at == 5.0 for r in v.updated)
    assert sorted(x.backend_id for _, x in v.destroy) == ["b", "d", "f"]
    assert sorted(x.backend_id for _, x in v.orphans) == ["e", "g", "h", "x"]
    assert reconcile(BackendKind.LOCAL, [ok], found, now=5.0).adopted == []
