"""The hook between tasks and resources: the ``resource.execute`` task kind runs a command in a
provisioned resource, through the provisioner's permit exactly as ``Execute`` does (the resource
is busy meanwhile, so Cleanup leaves it alone), and returns its exit code and output.

A pool "backed by resources" is, for now, a pool whose tasks are of this kind and name the
resource to run in; choosing a resource of a spec per task and auto-scaling a pool's resources
from its queue are not built yet (see the issue's report).
"""

from __future__ import annotations

from typing import Any

from aurea.infra.messages import BeginExec, ProvisionerMsg
from aurea.infra.model import ExecRequest
from aurea.runtime import ActorRef
from aurea.tasks.context import TaskContext
from aurea.tasks.registry import TaskKind

__all__ = ["RESOURCE_EXECUTE", "resource_execute_kind"]

RESOURCE_EXECUTE = "resource.execute"
MAX_OUTPUT_BYTES = 1 << 20  # of each stream kept in the result; the rest is counted, not kept

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resource_id", "command"],
    "properties": {
        "resource_id": {"type": "string", "minLength": 1, "maxLength": 64},
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
    provisioner: ActorRef[ProvisionerMsg], *, ask_timeout_s: float, pool: str = "general"
) -> TaskKind:
    async def handler(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
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
            BeginExec(resource_id=payload["resource_id"], replica=int(payload.get("replica", 0))),
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
