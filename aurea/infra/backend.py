"""The one protocol every compute backend implements, and the labels that mark what Aurea made.

A backend only does I/O; the provisioner decides. Each method is called from a task (never from
the actor's ``receive``), may be cancelled at any await, and must leave nothing half-made behind
it: ``create`` removes what it made before raising, ``destroy`` is idempotent.
"""

from __future__ import annotations

import re
from typing import Protocol

from aurea.infra.model import BackendKind, ExecRequest, ExecResult, Found, OutputSink, Replica, Spec

__all__ = [
    "LABEL_INDEX",
    "LABEL_OWNER",
    "LABEL_RESOURCE",
    "ComputeBackend",
    "ReplicaRef",
    "valid_owner",
]

# Every replica carries these (Docker labels, Proxmox tags, a local process's environment), so
# a restarted Aurea finds what it made and nothing else.
LABEL_OWNER = "aurea.owner"
LABEL_RESOURCE = "aurea.resource"
LABEL_INDEX = "aurea.replica"

_OWNER = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def valid_owner(owner: str) -> bool:
    """An owner id fits every backend's label syntax (Proxmox tags are the strictest)."""
    return bool(_OWNER.match(owner))


class ReplicaRef:
    """Names one replica to be made: owner, resource and position (for labels and names)."""

    __slots__ = ("index", "owner", "resource_id")

    def __init__(self, owner: str, resource_id: str, index: int) -> None:
        self.owner = owner
        self.resource_id = resource_id
        self.index = index

    @property
    def name(self) -> str:
        return f"aurea-{self.resource_id}-{self.index}"


class ComputeBackend(Protocol):
    """One kind of compute. ``kind`` is the ``BackendKind`` it serves."""

    kind: BackendKind

    async def check(self, spec: Spec) -> None:
        """Refuse a spec this backend cannot make (unknown image, template, node, storage) with
        ``NotFound`` or ``InvalidRequest``, before anything is created."""
        ...

    async def create(self, ref: ReplicaRef, spec: Spec) -> Replica:
        """Make and start one replica with the spec's limits applied; on failure remove whatever
        was made, then raise."""
        ...

    async def destroy(self, replica: Replica) -> None:
        """Stop and delete a replica; a replica that is already gone is not an error."""
        ...

    async def execute(
        self, replica: Replica, spec: Spec, request: ExecRequest, sink: OutputSink
    ) -> ExecResult:
        """Run a command in a replica, handing output to ``sink`` as it is read. Cancelling the
        caller kills the command; so does ``request.timeout_s`` (then ``timed_out``)."""
        ...

    async def discover(self, owner: str) -> list[Found]:
        """Every replica carrying ``owner``'s label, running or not."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads (resources themselves stay)."""
        ...
