"""The built-in task kinds: ``llm.generate`` and ``llm.embed`` (a full inference call through
the guards, charged to the task's job by them), and ``compute.invoke`` (a compute backend's
``run(payload)``: the AWS Lambda and RunPod adapters).

An inference call made by a task carries the task's job id and ends with the attempt (its
deadline); a job over budget makes the call raise ``BudgetExceeded``, which fails the task with
that reason and is not retried. Cancelling the task cancels the call, which closes it upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from aurea.errors import InvalidRequest
from aurea.inference import EmbedCall, GenerateCall, Inference
from aurea.providers._base import ChatMessage, Role
from aurea.tasks.context import TaskContext
from aurea.tasks.registry import RetryPolicy, TaskKind
from aurea.types import Policy

__all__ = ["ComputeBackend", "builtin_kinds", "compute_backends"]


@runtime_checkable
class ComputeBackend(Protocol):
    """Runs a JSON payload somewhere and returns its JSON output (AWS Lambda, RunPod, ...)."""

    async def run(self, payload: Mapping[str, Any]) -> dict[str, Any]: ...


def compute_backends(providers: Mapping[str, object]) -> dict[str, ComputeBackend]:
    """The configured providers that can run a payload, by name."""
    return {name: p for name, p in providers.items() if isinstance(p, ComputeBackend)}


_MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": [r.value for r in Role]},
        "content": {"type": "string"},
    },
    "additionalProperties": False,
}
GENERATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "description": "a user message (or use messages)"},
        "messages": {"type": "array", "items": _MESSAGE, "minItems": 1, "maxItems": 10_000},
        "model": {"type": "string", "description": "catalog model; empty: the server's choice"},
        "max_tokens": {"type": "integer", "minimum": 0, "maximum": 10_000_000},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "stop": {"type": "array", "items": {"type": "string"}, "maxItems": 16},
        "seed": {"type": "integer"},
        "policy": {"type": "string", "enum": [p.value for p in Policy]},
    },
    "additionalProperties": False,
}
EMBED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "inputs": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2048},
        "model": {"type": "string", "description": "catalog embedding model; empty: default"},
    },
    "additionalProperties": False,
}
INVOKE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["backend"],
    "properties": {
        "backend": {"type": "string", "description": "a configured lambda or runpod provider"},
        "input": {"type": "object", "description": "the payload the backend runs"},
    },
    "additionalProperties": False,
}


def _check_generate(payload: dict[str, Any]) -> None:
    if bool(payload.get("prompt")) == bool(payload.get("messages")):
        raise InvalidRequest.field("payload", "needs a non-empty prompt or messages (not both)")


def _messages(payload: Mapping[str, Any]) -> tuple[ChatMessage, ...]:
    if payload.get("prompt"):
        return (ChatMessage(Role.USER, str(payload["prompt"])),)
    return tuple(ChatMessage(Role(m["role"]), str(m["content"])) for m in payload["messages"])


def _opt_float(payload: Mapping[str, Any], name: str) -> float | None:
    value = payload.get(name)
    return None if value is None else float(value)


def builtin_kinds(
    *, inference: Inference, backends: Mapping[str, ComputeBackend]
) -> list[TaskKind]:
    async def generate(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        seed = payload.get("seed")
        policy = payload.get("policy")
        call = GenerateCall(
            request_id=ctx.request_id,
            messages=_messages(payload),
            model=str(payload.get("model") or ""),
            max_tokens=int(payload.get("max_tokens") or 0),
            temperature=_opt_float(payload, "temperature"),
            top_p=_opt_float(payload, "top_p"),
            stop=tuple(payload.get("stop") or ()),
            seed=None if seed is None else int(seed),
            job_id=ctx.job_id,
            policy=None if policy is None else Policy(policy),
            labels={"task_id": ctx.task_id},
            deadline=ctx.deadline,
        )
        f = await inference.generate(call)
        return {
            "text": f.text,
            "model": f.model,
            "provider": f.provider,
            "finish_reason": f.finish_reason.value,
            "max_tokens": call.max_tokens,
            "input_tokens": f.usage.input_tokens,
            "output_tokens": f.usage.output_tokens,
            "cost_nanos": f.cost_nanos,
            "latency_ms": round(f.latency_s * 1e3, 3),
            "attempts": f.attempts,
        }

    async def embed(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        call = EmbedCall(
            request_id=ctx.request_id,
            inputs=tuple(str(s) for s in payload["inputs"]),
            model=str(payload.get("model") or ""),
            job_id=ctx.job_id,
            labels={"task_id": ctx.task_id},
            deadline=ctx.deadline,
        )
        r = await inference.embed(call)
        return {
            "model": r.model,
            "provider": r.provider,
            "vectors": [list(v) for v in r.vectors],
            "input_tokens": r.usage.input_tokens,
            "cost_nanos": r.cost_nanos,
        }

    def check_backend(payload: dict[str, Any]) -> None:
        name = payload.get("backend")
        if name not in backends:
            known = ", ".join(sorted(backends)) or "none configured"
            raise InvalidRequest.field(
                "payload.backend",
                f"{name!r} is not a compute backend (lambda or runpod "
                f"provider); configured: {known}",
            )

    async def invoke(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        name = str(payload["backend"])
        backend = backends.get(name)
        if backend is None:  # the configuration changed since the task was submitted
            raise InvalidRequest.field("payload.backend", f"{name!r} is not configured any more")
        output = await backend.run(payload.get("input") or {})
        return {"backend": name, "output": output}

    return [
        TaskKind(
            name="llm.generate",
            handler=generate,
            pool="llm",
            timeout_s=300.0,
            retry=RetryPolicy(max_attempts=2, backoff_s=1.0, backoff_max_s=30.0),
            description="Generates text (prompt or messages) through the guards; the result "
            "has the text, model, tokens, cost in nano-dollars and latency",
            payload_schema=GENERATE_SCHEMA,
            validate=_check_generate,
        ),
        TaskKind(
            name="llm.embed",
            handler=embed,
            pool="llm",
            timeout_s=300.0,
            retry=RetryPolicy(max_attempts=2, backoff_s=1.0, backoff_max_s=30.0),
            description="Embeds texts; the result has the vectors, tokens and cost",
            payload_schema=EMBED_SCHEMA,
        ),
        TaskKind(
            name="compute.invoke",
            handler=invoke,
            pool="tool",
            timeout_s=900.0,
            retry=RetryPolicy(max_attempts=1),
            description="Runs a payload on a compute backend (a lambda or runpod provider) "
            "and returns its output",
            payload_schema=INVOKE_SCHEMA,
            validate=check_backend,
        ),
    ]
