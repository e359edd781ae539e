"""The hook between tasks and resources: the ``resource.execute`` task kind runs a command in a
provisioned resource, through the provisioner's permit exactly as ``Execute`` does (the resource
is busy meanwhile, so Cleanup leaves it alone), and returns its exit code and output.

A task naming no resource runs in one of its pool's resources when the pool is backed by
resources (``[tasks.resource_pools.NAME]``, see aurea.infra.pools).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from aurea.errors import InvalidRequest
from aurea.infra.messages import BeginExec, ProvisionerMsg
from aurea.infra.model import ExecRequest
from aurea.infra.pools import PoolResources
from aurea.runtime import ActorRef
from aurea.tasks.context import TaskContext
from aurea.tasks.registry import TaskKind

__all__ = ["RESOURCE_EXECUTE", "resource_execute_kind"]

RESOURCE_EXECUTE = "resource.execute"
MAX_OUTPUT_BYTES = 1 << 20  # of each stream kept in the result; the rest is counted, not kept

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["command"],
    "properties": {
        "resource_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "where to run; absent: in one of the task's resource-backed pool",
        },
        "command": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "maxItems": 4096,
            "description": "argv, run without a shell",
        },
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "stdin": {"type": "string", "maxLength": 4 << 20},
        "working_dir": {"type": "string", "maxLength": 4096},
        "replica": {"type": "integer", "minimum": 0, "maximum": 63},
        "timeout_s": {"type": "number", "minimum": 0, "maximum": 86_400},
    },
    "additionalProperties": False,
}


def resource_execute_kind(
    provisioner: ActorRef[ProvisionerMsg],
    *,
    ask_timeout_s: float,
    pool: str = "general",
    pools: Mapping[str, PoolResources] | None = None,
) -> TaskKind:
    backed = dict(pools or {})

    async def handler(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        lease: AbstractAsyncContextManager[str]
        if payload.get("resource_id"):
            lease = nullcontext(str(payload["resource_id"]))
        elif ctx.pool in backed:
            lease = backed[ctx.pool].lease()
        else:
            raise InvalidRequest(
                f"resource_id is required: pool {ctx.pool!r} is not backed by resources"
            )
        async with lease as resource_id:
            result = await _run(payload, ctx, resource_id)
        return {"resource_id": resource_id, **result}

    async def _run(payload: dict[str, Any], ctx: TaskContext, resource_id: str) -> dict[str, Any]:
        own = float(payload.get("timeout_s") or 0)
        limit = min(own, ctx.remaining_s) if own else ctx.remaining_s
        request = ExecRequest(
            argv=tuple(payload["command"]),
            env=tuple(sorted((payload.get("env") or {}).items())),
            working_dir=str(payload.get("working_dir") or ""),
            stdin=str(payload.get("stdin") or "").encode(),
            timeout_s=max(limit, 0.001),
        )
        permit = await provisioner.ask(
            BeginExec(resource_id=resource_id, replica=int(payload.get("replica", 0))),
            timeout_s=ask_timeout_s,
        )
        out: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        lost = {1: 0, 2: 0}

        async def sink(stream: int, data: bytes) -> None:
            room = MAX_OUTPUT_BYTES - len(out[stream])
            out[stream] += data[:room]
            lost[stream] += max(len(data) - room, 0)

        async with permit:
            result = await permit.backend.execute(permit.replica, permit.spec, request, sink)
        return {
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "duration_ms": int(result.duration_s * 1000),
            "stdout": out[1].decode(errors="replace"),
            "stderr": out[2].decode(errors="replace"),
            "stdout_bytes_dropped": lost[1],
            "stderr_bytes_dropped": lost[2],
        }

    return TaskKind(
        name=RESOURCE_EXECUTE,
        handler=handler,
        pool=pool,
        description="run a command in a provisioned resource; returns its exit code and output",
        payload_schema=SCHEMA,
    )
