"""The Provisioner's resource bookkeeping: its creation limits, and the lookups, capacity sums,
record writes and events over its table of resources (a base class the actor inherits)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from aurea.errors import AureaError, FailedPrecondition, NotFound
from aurea.infra import _ops
from aurea.infra._journal import Journal
from aurea.infra.backend import ComputeBackend
from aurea.infra.model import Capacity, InfraStats, Resource, Spec

log = structlog.get_logger("aurea.infra")

_DAY_S = 86_400.0
Publish = Callable[[str, Mapping[str, str]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What may be created: live resources at most, the compute they may hold together, and the
    amounts a spec gets for fields it leaves at 0."""

    max_resources: int = 64
    total: Capacity = field(default_factory=lambda: Capacity(8000, 16384, 512, 0))
    default_cpu_millis: int = 1000
    default_memory_mib: int = 512
    default_disk_gib: int = 0
    keep_released_s: float = _DAY_S


class ResourceBook:
    """The resource table and the helpers that read and write it; ``Provisioner`` sets the
    attributes in its ``__init__``."""

    _backends: dict[str, ComputeBackend]
    _limits: Limits
    _publish: Publish | None
    _res: dict[str, Resource]
    _pending: set[str]
    _target: dict[str, int]
    _journal: Journal
    _counts: _ops.Counters

    def _backend(self, kind: Any) -> ComputeBackend:
        backend = self._backends.get(str(kind))
        if backend is None:
            configured = ", ".join(sorted(self._backends)) or "none"
            raise FailedPrecondition(
                f"backend {kind} is not configured on this server (configured: {configured}; "
                "see [infra] backends)"
            )
        return backend

    def _get(self, rid: str) -> Resource:
        r = self._res.get(rid)
        if r is None or rid in self._pending:
            raise NotFound(f"no resource has id {rid!r}")
        return r

    def _visible(self) -> list[Resource]:
        return [r for rid, r in self._res.items() if rid not in self._pending]

    def _with_defaults(self, spec: Spec) -> Spec:
        lim = self._limits
        return dataclasses.replace(
            spec,
            cpu_millis=spec.cpu_millis or lim.default_cpu_millis,
            memory_mib=spec.memory_mib or lim.default_memory_mib,
            disk_gib=spec.disk_gib or lim.default_disk_gib,
        )

    def _held(self) -> Capacity:
        total = Capacity()
        for r in self._res.values():
            if r.live:
                total += Capacity.of(
                    r.spec, max(len(r.replicas), self._target.get(r.resource_id, 0))
                )
        return total

    def _check_room(self, spec: Spec, replicas: int, *, new: bool) -> None:
        _ops.check_room(
            limits=self._limits,
            live=sum(1 for r in self._res.values() if r.live),
            held=self._held(),
            need=Capacity.of(spec, replicas),
            new=new,
        )

    def _stats(self) -> InfraStats:
        return _ops.stats(self._visible(), self._limits.total, self._held(), self._counts)

    def _save(self, r: Resource, event: str = "") -> None:
        self._res[r.resource_id] = r
        self._journal.write(r)
        if event:
            self._event(event, r)

    def _event(self, kind: str, r: Resource) -> None:
        if self._publish is None:
            return
        attrs = {
            "resource_id": r.resource_id,
            "backend": str(r.backend),
            "status": str(r.status),
            "replicas": str(len(r.replicas)),
        }
        if r.status_message:
            attrs["message"] = r.status_message[:200]
        try:
            self._publish(kind, attrs)
        except Exception as exc:  # a broken event sink must not break provisioning
            log.warning("infra_event_failed", event=kind, error=repr(exc))


def _text(exc: BaseException) -> str:
    return exc.message if isinstance(exc, AureaError) else f"{type(exc).__name__}: {exc}"


def _backend_error(backend: ComputeBackend, exc: BaseException) -> AureaError:
    return _ops.unavailable(str(backend.kind), exc)
