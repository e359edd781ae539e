"""The Provisioner's start-up reconciliation: each backend lists, in a child task, what it
holds under the owner's label, and the actor matches that against the records the store held
at start (``_reconcile``): live resources are re-adopted, ended ones recorded, stale replicas
and orphans destroyed."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from aurea.infra import _ops
from aurea.infra._reconcile import reconcile
from aurea.infra._resources import ResourceBook, _text
from aurea.infra.backend import ComputeBackend
from aurea.infra.messages import Discovered, ProvisionerMsg
from aurea.runtime import Actor

log = structlog.get_logger("aurea.infra")


class Discovery(ResourceBook, Actor[ProvisionerMsg]):
    """Discovery and reconciliation for the ``Provisioner``, which sets the attributes in its
    ``__init__``, spawns ``_discover`` per backend in ``on_start`` and hands ``Discovered``
    here."""

    owner: str
    _loaded: frozenset[str]  # ids the store held at start
    _wall: Callable[[], float]

    async def _discover(self, backend: ComputeBackend) -> None:
        try:
            found = await backend.discover(self.owner)
        except Exception as exc:
            self.ref.post(Discovered(backend=backend.kind, error=_text(exc)))
        else:
            self.ref.post(Discovered(backend=backend.kind, found=tuple(found)))

    def _discovered(self, msg: Discovered) -> None:
        if msg.error:
            log.warning("infra_discover_failed", backend=str(msg.backend), error=msg.error)
            return
        # Only what the store held at start is matched; anything made since (a Provision or
        # Scale that ran while the backend was being listed) is neither stale nor an orphan.
        since_start = {rid for rid in self._res if rid not in self._loaded} | set(self._target)
        records = [r for rid, r in self._res.items() if rid not in since_start]
        found = [f for f in msg.found if f.resource_id not in since_start]
        v = reconcile(msg.backend, records, found, self._wall())
        for r in v.updated:
            self._save(r, f"resource.{r.status}")
        for rid in v.adopted:
            self._event("resource.adopted", self._res[rid])
        backend = self._backends[str(msg.backend)]
        for rid, replica in v.orphans:
            log.warning("infra_orphan_released", resource_id=rid, backend_id=replica.backend_id)
            if self._publish is not None:
                self._publish(
                    "resource.orphan_released",
                    {
                        "resource_id": rid,
                        "backend": str(msg.backend),
                        "backend_id": replica.backend_id,
                    },
                )
        doomed = tuple(x for _, x in v.destroy + v.orphans)
        if doomed:

            async def sweep() -> None:
                error = await _ops.destroy_all(backend, doomed)
                if error:
                    log.error("infra_sweep_failed", backend=str(msg.backend), error=error)

            self.spawn_child(sweep(), name=f"infra:sweep:{msg.backend}")
        log.info(
            "infra_reconciled",
            backend=str(msg.backend),
            adopted=len(v.adopted),
            ended=len(v.updated),
            orphans=len(v.orphans),
        )
