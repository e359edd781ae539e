"""The Provisioner actor: owns the table of resources, decides (validation, capacity,
``max_resources``, status changes) and hands every backend call to a child task, which reports
back by message. ``Execute`` calls get a permit and run the command in the caller's task.

Records go to the store before anything is created (so a restart finds what was being made) and
after every change (write-behind, see ``_journal``). At start it loads the store and matches it
against what each backend holds (``_discovery``): live resources are re-adopted, orphans that
carry its owner label are released.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, assert_never

import structlog

from aurea.errors import AureaError, FailedPrecondition, InvalidRequest
from aurea.infra import _ops
from aurea.infra._discovery import Discovery
from aurea.infra._journal import Journal
from aurea.infra._resources import _DAY_S, Limits, Publish, ResourceBook, _backend_error
from aurea.infra.backend import ComputeBackend, ReplicaRef
from aurea.infra.messages import (
    BeginExec,
    Checked,
    Cleanup,
    Created,
    Destroyed,
    Discovered,
    ExecDone,
    ExecPermit,
    GetResource,
    GetStats,
    ListResources,
    Provision,
    ProvisionerMsg,
    Release,
    Scale,
    ScaledDown,
    ScaledUp,
)
from aurea.infra.model import Resource, ResourceStatus, Spec
from aurea.infra.store import ResourceStore
from aurea.runtime import Actor, Later

__all__ = ["Limits", "Provisioner"]

log = structlog.get_logger("aurea.infra")


class Provisioner(Discovery, ResourceBook, Actor[ProvisionerMsg]):
    def __init__(
        self,
        *,
        backends: Mapping[str, ComputeBackend],
        store: ResourceStore,
        limits: Limits,
        owner: str,
        publish: Publish | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._backends = dict(backends)
        self._store = store
        self._limits = limits
        self.owner = owner  # '' until on_start: the one kept in the store, else a new one
        self._publish = publish
        self._wall = wall_clock
        self._res: dict[str, Resource] = {}
        self._pending: set[str] = set()  # accepted by receive, not yet checked by the backend
        self._target: dict[str, int] = {}  # replicas being made or held (capacity)
        self._release_wanted: set[str] = set()  # Release arrived while provisioning
        self._busy: dict[str, int] = {}  # Execute calls in progress
        self._scaling: set[str] = set()
        self._loaded: frozenset[str] = frozenset()  # ids the store held at start
        self._journal = Journal(store)
        self._counts = _ops.Counters()

    # -- lifecycle ---------------------------------------------------------------------------

    async def on_start(self) -> None:
        await self._store.start()  # idempotent: a restarted actor finds it open
        now = self._wall()
        if not self.owner:
            self.owner = await self._store.owner(secrets.token_hex(6))
        await self._store.prune(before=now - self._limits.keep_released_s)
        for r in await self._store.load(released_after=now - self._limits.keep_released_s):
            self._res[r.resource_id] = r
        self._loaded = frozenset(self._res)
        self.spawn_child(self._journal.run(), name="infra:journal")
        for backend in self._backends.values():
            self.spawn_child(self._discover(backend), name=f"infra:discover:{backend.kind}")

    async def on_stop(self) -> None:
        await self._journal.flush()

    # -- messages ----------------------------------------------------------------------------

    async def receive(self, msg: ProvisionerMsg) -> Any:
        match msg:
            case Provision():
                return self._provision(msg)
            case GetResource(resource_id=rid):
                return self._get(rid)
            case ListResources():
                return _ops.page(self._visible(), msg)
            case BeginExec():
                return self._begin_exec(msg)
            case Release(resource_id=rid):
                return self._release(self._get(rid))
            case Scale():
                return self._scale(msg)
            case Cleanup():
                return self._cleanup(msg)
            case GetStats():
                return self._stats()
            case ExecDone(resource_id=rid):
                self._busy[rid] = self._busy.get(rid, 1) - 1
                if not self._busy[rid]:
                    del self._busy[rid]
                r = self._res.get(rid)
                if r is not None and r.status is ResourceStatus.RUNNING:
                    self._save(dataclasses.replace(r, last_used_at=self._wall()))
                return None
            case Checked():
                return self._checked(msg)
            case Created():
                return self._created(msg)
            case Destroyed():
                return self._destroyed(msg)
            case ScaledUp() | ScaledDown():
                return self._scaled(msg)
            case Discovered():
                return self._discovered(msg)
            case _:
                assert_never(msg)

    # -- provisioning ------------------------------------------------------------------------

    def _provision(self, msg: Provision) -> Any:
        backend = self._backend(msg.backend)
        if msg.request_id:
            since = self._wall() - _DAY_S
            for r in self._visible():
                if r.request_id == msg.request_id and r.created_at >= since:
                    return r
        spec = self._with_defaults(msg.spec)
        self._check_room(spec, msg.replicas, new=True)
        rid = "r" + secrets.token_hex(6)
        while rid in self._res:
            rid = "r" + secrets.token_hex(6)
        r = Resource(
            resource_id=rid,
            backend=msg.backend,
            spec=spec,
            status=ResourceStatus.PROVISIONING,
            created_at=self._wall(),
            request_id=msg.request_id,
        )
        self._res[rid] = r
        self._pending.add(rid)
        self._target[rid] = msg.replicas
        return Later(self._admit(backend, r))

    async def _admit(self, backend: ComputeBackend, r: Resource) -> Resource:
        """Checked by the backend and recorded durably before anything is created."""
        try:
            await backend.check(r.spec)
            await self._store.put(r)
        except BaseException as exc:
            err = exc if isinstance(exc, AureaError) else _backend_error(backend, exc)
            self.ref.post(Checked(resource_id=r.resource_id, error=err))
            if isinstance(exc, Exception):
                raise err from exc
            raise
        self.ref.post(Checked(resource_id=r.resource_id))
        return r

    def _checked(self, msg: Checked) -> None:
        rid = msg.resource_id
        self._pending.discard(rid)
        if msg.error is not None:  # nothing was made: forget it
            self._res.pop(rid, None)
            self._target.pop(rid, None)
            return
        r = self._res[rid]
        self._event("resource.provisioning", r)
        refs = [ReplicaRef(self.owner, rid, i) for i in range(self._target[rid])]
        self.spawn_child(self._create(rid, r.spec, refs), name=f"infra:create:{rid}")

    async def _create(self, rid: str, spec: Spec, refs: list[ReplicaRef]) -> None:
        backend = self._backends[str(self._res[rid].backend)]
        made, error = await _ops.create_all(backend, spec, refs)
        self.ref.post(Created(resource_id=rid, replicas=made, error=error))

    def _created(self, msg: Created) -> None:
        rid = msg.resource_id
        r = self._res[rid]
        self._counts.created(r.backend, len(msg.replicas))
        if r.status is not ResourceStatus.PROVISIONING:  # ended meanwhile: keep nothing
            self._target.pop(rid, None)
            if msg.replicas:
                self._spawn_destroy(dataclasses.replace(r, replicas=msg.replicas), final=False)
            return
        if rid in self._release_wanted or msg.error:
            self._target.pop(rid, None)
            r = dataclasses.replace(r, replicas=msg.replicas)
            if msg.error:
                log.warning("infra_provision_failed", resource_id=rid, error=msg.error)
                r = dataclasses.replace(r, status=ResourceStatus.FAILED, status_message=msg.error)
                r = dataclasses.replace(r, released_at=self._wall())
                self._save(r, "resource.failed")
                if msg.replicas:  # create_all already removed them; belt and braces
                    self._spawn_destroy(r, final=False)
                return
            self._release(dataclasses.replace(r, status=ResourceStatus.RUNNING))
            return
        self._target.pop(rid, None)
        r = dataclasses.replace(
            r, status=ResourceStatus.RUNNING, replicas=msg.replicas, last_used_at=self._wall()
        )
        self._save(r, "resource.running")

    # -- release -----------------------------------------------------------------------------

    def _release(self, r: Resource) -> Resource:
        if r.status is ResourceStatus.PROVISIONING:
            self._release_wanted.add(r.resource_id)
            r = dataclasses.replace(r, status_message="release requested while provisioning")
            self._save(r)
            return r
        if r.status is not ResourceStatus.RUNNING:
            return r  # releasing, released or failed: unchanged
        r = dataclasses.replace(r, status=ResourceStatus.RELEASING, status_message="")
        self._save(r, "resource.releasing")
        self._spawn_destroy(r, final=True)
        return r

    def _spawn_destroy(self, r: Resource, *, final: bool) -> None:
        backend = self._backends[str(r.backend)]
        replicas = r.replicas

        async def work() -> None:
            error = await _ops.destroy_all(backend, replicas)
            if final:
                self.ref.post(Destroyed(resource_id=r.resource_id, error=error))
            elif error:
                log.error("infra_destroy_failed", resource_id=r.resource_id, error=error)

        self.spawn_child(work(), name=f"infra:destroy:{r.resource_id}")

    def _destroyed(self, msg: Destroyed) -> None:
        r = self._res[msg.resource_id]
        self._release_wanted.discard(msg.resource_id)
        if msg.error:
            r = dataclasses.replace(
                r,
                status=ResourceStatus.FAILED,
                status_message=f"release failed, the backend may still hold it: {msg.error}",
            )
            self._save(dataclasses.replace(r, released_at=self._wall()), "resource.failed")
            return
        r = dataclasses.replace(r, status=ResourceStatus.RELEASED, released_at=self._wall())
        self._save(r, "resource.released")

    # -- execute, scale, cleanup -------------------------------------------------------------

    def _begin_exec(self, msg: BeginExec) -> ExecPermit:
        r = self._get(msg.resource_id)
        if r.status is not ResourceStatus.RUNNING:
            raise FailedPrecondition(
                f"resource {r.resource_id} is {r.status}, not running: commands run only in a "
                "running resource"
            )
        if not 0 <= msg.replica < len(r.replicas):
            raise InvalidRequest.field(
                "replica", f"must be in [0, {len(r.replicas) - 1}] for this resource"
            )
        self._busy[r.resource_id] = self._busy.get(r.resource_id, 0) + 1
        self._counts.executions += 1
        backend = self._backends[str(r.backend)]
        return ExecPermit(self.ref, r.resource_id, backend, r.replicas[msg.replica], r.spec)

    def _scale(self, msg: Scale) -> Any:
        r = self._get(msg.resource_id)
        if r.status is not ResourceStatus.RUNNING:
            raise FailedPrecondition(f"resource {r.resource_id} is {r.status}, not running")
        if r.resource_id in self._scaling:
            raise FailedPrecondition(f"resource {r.resource_id} is being scaled already")
        have = len(r.replicas)
        if msg.replicas == have:
            return r
        backend = self._backends[str(r.backend)]
        rid = r.resource_id
        if msg.replicas > have:
            self._check_room(r.spec, msg.replicas - have, new=False)
            self._target[rid] = msg.replicas
            self._scaling.add(rid)
            refs = [ReplicaRef(self.owner, rid, i) for i in range(have, msg.replicas)]

            async def up() -> Resource:
                made, error = await _ops.create_all(backend, r.spec, refs)
                return await self.ref.ask(ScaledUp(resource_id=rid, replicas=made, error=error))

            return Later(up())
        gone = r.replicas[msg.replicas :]
        self._scaling.add(rid)
        self._save(dataclasses.replace(r, replicas=r.replicas[: msg.replicas]))

        async def down() -> Resource:
            error = await _ops.destroy_all(backend, gone)
            return await self.ref.ask(ScaledDown(resource_id=rid, error=error))

        return Later(down())

    def _scaled(self, msg: ScaledUp | ScaledDown) -> Resource:
        rid = msg.resource_id
        self._scaling.discard(rid)
        self._target.pop(rid, None)
        r = self._res[rid]
        if isinstance(msg, ScaledUp):
            self._counts.created(r.backend, len(msg.replicas))
            if msg.error:
                raise _ops.scale_failed(rid, msg.error)
            if r.status is not ResourceStatus.RUNNING:  # released meanwhile: not ours to keep
                self._spawn_destroy(dataclasses.replace(r, replicas=msg.replicas), final=False)
                raise FailedPrecondition(f"resource {rid} was released while it scaled")
            r = dataclasses.replace(r, replicas=r.replicas + msg.replicas)
        elif msg.error:
            r = dataclasses.replace(r, status_message=f"a removed replica may remain: {msg.error}")
        self._save(r, "resource.scaled")
        return r

    def _cleanup(self, msg: Cleanup) -> tuple[str, ...]:
        now = self._wall()
        idle = [
            r
            for r in self._visible()
            if r.status is ResourceStatus.RUNNING
            and (msg.backend is None or r.backend is msg.backend)
            and r.resource_id not in self._busy
            and r.resource_id not in self._scaling
            and now - (r.last_used_at if r.last_used_at is not None else r.created_at) > msg.idle_s
        ]
        if not msg.validate_only:
            for r in idle:
                self._release(r)
        return tuple(r.resource_id for r in idle)
