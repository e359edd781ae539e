"""Where the provisioner records resources so that a restarted Aurea re-adopts them: a small
protocol with an in-memory implementation (tests, throwaway servers) and a SQLite one (the
durable default, on the same file and thread as the other stores).

One record per resource, written whole on every change (a JSON document: the spec, with its
environment values, and the replicas). The store also keeps this installation's owner id, the
label every replica carries.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from aurea.infra.model import BackendKind, Replica, Resource, ResourceStatus, Spec
from aurea.stores.sqlite import SqliteDatabase

__all__ = [
    "MemoryResourceStore",
    "ResourceStore",
    "SqliteResourceStore",
    "from_json",
    "to_json",
]


class ResourceStore(Protocol):
    async def start(self) -> None: ...

    async def put(self, resource: Resource) -> None:
        """Insert or replace the record of ``resource.resource_id``."""
        ...

    async def load(self, *, released_after: float) -> list[Resource]:
        """Every record, except terminal ones released or failed before ``released_after``."""
        ...

    async def prune(self, *, before: float) -> int:
        """Delete terminal records that ended before ``before``; return how many."""
        ...

    async def owner(self, proposed: str) -> str:
        """The owner id of this store: the one stored, else ``proposed`` (stored now)."""
        ...

    async def close(self) -> None: ...


def to_json(r: Resource) -> str:
    s = r.spec
    return json.dumps(
        {
            "id": r.resource_id,
            "backend": str(r.backend),
            "spec": {
                "cpu_millis": s.cpu_millis,
                "memory_mib": s.memory_mib,
                "disk_gib": s.disk_gib,
                "gpu_count": s.gpu_count,
                "gpu_type": s.gpu_type,
                "image": s.image,
                "template": s.template,
                "node": s.node,
                "storage": s.storage,
                "env": [list(p) for p in s.env],
                "network": s.network,
                "labels": [list(p) for p in s.labels],
            },
            "status": str(r.status),
            "message": r.status_message,
            "replicas": [[x.backend_id, x.node, x.address, x.key] for x in r.replicas],
            "created_at": r.created_at,
            "last_used_at": r.last_used_at,
            "released_at": r.released_at,
            "request_id": r.request_id,
        },
        separators=(",", ":"),
    )


def from_json(text: str) -> Resource:
    d: dict[str, Any] = json.loads(text)
    s = d["spec"]
    spec = Spec(
        cpu_millis=int(s["cpu_millis"]),
        memory_mib=int(s["memory_mib"]),
        disk_gib=int(s["disk_gib"]),
        gpu_count=int(s["gpu_count"]),
        gpu_type=str(s["gpu_type"]),
        image=str(s["image"]),
        template=str(s["template"]),
        node=str(s["node"]),
        storage=str(s["storage"]),
        env=tuple((str(k), str(v)) for k, v in s["env"]),
        network=str(s["network"]),
        labels=tuple((str(k), str(v)) for k, v in s["labels"]),
    )
    return Resource(
        resource_id=str(d["id"]),
        backend=BackendKind(d["backend"]),
        spec=spec,
        status=ResourceStatus(d["status"]),
        status_message=str(d["message"]),
        replicas=tuple(Replica(*(str(v) for v in x)) for x in d["replicas"]),
        created_at=float(d["created_at"]),
        last_used_at=d["last_used_at"],
        released_at=d["released_at"],
        request_id=str(d["request_id"]),
    )


def _ended_at(r: Resource) -> float:
    return r.released_at if r.released_at is not None else r.created_at


class MemoryResourceStore:
    """Records in a dict: lost with the process (so nothing is re-adopted after a restart)."""

    def __init__(self) -> None:
        self._rows: dict[str, str] = {}
        self._owner = ""

    async def start(self) -> None:
        return None

    async def put(self, resource: Resource) -> None:
        self._rows[resource.resource_id] = to_json(resource)  # a copy, as SQLite would keep

    async def load(self, *, released_after: float) -> list[Resource]:
        out = [from_json(t) for t in self._rows.values()]
        return [r for r in out if r.live or _ended_at(r) >= released_after]

    async def prune(self, *, before: float) -> int:
        gone = [k for k, t in self._rows.items() if _old(from_json(t), before)]
        for k in gone:
            del self._rows[k]
        return len(gone)

    async def owner(self, proposed: str) -> str:
        if not self._owner:
            self._owner = proposed
        return self._owner

    async def close(self) -> None:
        return None


def _old(r: Resource, before: float) -> bool:
    return not r.live and _ended_at(r) < before


_SCHEMA = """
CREATE TABLE IF NOT EXISTS infra_resources (
    resource_id TEXT PRIMARY KEY,
    live        INTEGER NOT NULL,
    ended_at    REAL NOT NULL,
    doc         TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS infra_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""


class SqliteResourceStore:
    """Records in two tables of their own (``infra_*``) in a SQLite file shared with the other
    stores; their schema version is not touched, the tables are created if missing."""

    def __init__(self, path: str | Path) -> None:
        self._db = SqliteDatabase(path)

    async def start(self) -> None:
        await self._db.start()

        def op(conn: sqlite3.Connection) -> None:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

        await self._db.run(op)

    async def put(self, resource: Resource) -> None:
        row = (resource.resource_id, int(resource.live), _ended_at(resource), to_json(resource))
        await self._db.run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO infra_resources VALUES (?, ?, ?, ?)", row
            )
        )

    async def load(self, *, released_after: float) -> list[Resource]:
        rows = await self._db.read(
            lambda conn: conn.execute(
                "SELECT doc FROM infra_resources WHERE live = 1 OR ended_at >= ?",
                (released_after,),
            ).fetchall()
        )
        return [from_json(doc) for (doc,) in rows]

    async def prune(self, *, before: float) -> int:
        return await self._db.run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM infra_resources WHERE live = 0 AND ended_at < ?", (before,)
                ).rowcount
            )
        )

    async def owner(self, proposed: str) -> str:
        def op(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT value FROM infra_meta WHERE name = 'owner'").fetchone()
            if row is not None:
                return str(row[0])
            conn.execute("INSERT INTO infra_meta VALUES ('owner', ?)", (proposed,))
            return proposed

        return await self._db.run(op)

    async def close(self) -> None:
        await self._db.close()
