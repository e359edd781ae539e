"""Write-behind of resource records: the provisioner changes a record in memory and hands it
here without waiting; one writer task stores the latest version of each record in order, and
retries a failed write. Only the newest version of a record is kept while it waits, so a burst
of changes costs one write."""

from __future__ import annotations

import asyncio

import structlog

from aurea.infra.model import Resource
from aurea.infra.store import ResourceStore

__all__ = ["Journal"]

log = structlog.get_logger("aurea.infra")

_RETRY_S = 1.0


class Journal:
    def __init__(self, store: ResourceStore) -> None:
        self._store = store
        self._pending: dict[str, Resource] = {}
        self._wake = asyncio.Event()

    def write(self, resource: Resource) -> None:
        self._pending[resource.resource_id] = resource
        self._wake.set()

    async def run(self) -> None:
        """The writer loop (a child task of the provisioner)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(_RETRY_S)
                self._wake.set()

    async def flush(self) -> bool:
        """Write everything pending; False if a write failed (it stays pending)."""
        while self._pending:
            rid, resource = next(iter(self._pending.items()))
            try:
                await self._store.put(resource)
            except Exception as exc:  # a store down must not lose the record: retry later
                log.error("infra_record_write_failed", resource_id=rid, error=repr(exc))
                return False
            if self._pending.get(rid) is resource:  # unless it changed again meanwhile
                del self._pending[rid]
        return True
