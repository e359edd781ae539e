"""At start: match what the store says against what a backend holds (a pure function).

* RUNNING with every recorded replica found running: re-adopted as is.
* RUNNING with a replica gone or stopped: FAILED (what is left of it is destroyed).
* PROVISIONING: creation was cut by the stop; FAILED, and whatever it made is destroyed.
* RELEASING: the release is finished (whatever is left is destroyed), then RELEASED.
* Found with this owner's label but not a replica of a live record: an orphan, destroyed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from aurea.infra.model import BackendKind, Found, Replica, Resource, ResourceStatus

__all__ = ["Verdict", "reconcile"]


@dataclass(slots=True)
class Verdict:
    updated: list[Resource] = field(default_factory=list)  # records whose status changed
    adopted: list[str] = field(default_factory=list)
    destroy: list[tuple[str, Replica]] = field(default_factory=list)  # (resource id, replica)
    orphans: list[tuple[str, Replica]] = field(default_factory=list)


def reconcile(
    kind: BackendKind, records: Iterable[Resource], found: Iterable[Found], now: float
) -> Verdict:
    v = Verdict()
    by_resource: dict[str, list[Found]] = {}
    for f in found:
        by_resource.setdefault(f.resource_id, []).append(f)
    mine = {r.resource_id: r for r in records if r.backend is kind and r.live}
    for rid, found_here in by_resource.items():
        if rid not in mine:
            v.orphans += [(rid, f.replica) for f in found_here]
    for rid, r in mine.items():
        here = {f.replica.backend_id: f for f in by_resource.get(rid, [])}
        known = {x.backend_id for x in r.replicas}
        # Found for a live record but not among its replicas: made by a create the stop cut.
        v.orphans += [(rid, f.replica) for bid, f in here.items() if bid not in known]
        kept = [here[b] for b in known if b in here]
        if r.status is ResourceStatus.RUNNING:
            lost = [x.backend_id for x in r.replicas if x.backend_id not in here]
            stopped = [f.replica.backend_id for f in kept if not f.running]
            if not lost and not stopped and r.replicas:
                v.adopted.append(rid)
                continue
            what = "gone" if lost else "stopped"
            ids = ", ".join((lost or stopped)[:4])
            message = f"found {what} at start: replica {ids}"
            v.updated.append(_end(r, ResourceStatus.FAILED, message, now))
        elif r.status is ResourceStatus.PROVISIONING:
            v.updated.append(
                _end(r, ResourceStatus.FAILED, "provisioning was interrupted by a restart", now)
            )
        else:  # RELEASING
            v.updated.append(_end(r, ResourceStatus.RELEASED, "", now))
        v.destroy += [(rid, f.replica) for f in kept]
    return v


def _end(r: Resource, status: ResourceStatus, message: str, now: float) -> Resource:
    return dataclasses.replace(r, status=status, status_message=message, released_at=now)
