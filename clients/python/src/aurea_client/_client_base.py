"""What ``AsyncClient`` and ``Client`` share: the channel's TLS arguments and the fields of a
``GenerateRequest`` built from ``generate``'s and ``stream``'s keyword arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aurea_client import _convert
from aurea_client._messages import ImageLike, MessageLike, ToolLike
from aurea_client._options import Tls
from aurea_client._types import Policy, ReasoningEffort


def channel_args(tls: Tls | bool | None) -> tuple[Tls | None, list[tuple[str, Any]]]:
    if tls is True:
        tls = Tls()
    if not isinstance(tls, Tls):
        return None, []
    return tls, tls.options()


class ClientBase:
    """Argument handling both clients share."""

    target: str

    @staticmethod
    def _generate_fields(
        prompt: str | None,
        *,
        messages: Sequence[MessageLike],
        system: str | None,
        model: str,
        max_tokens: int,
        temperature: float | None,
        top_p: float | None,
        stop: Sequence[str],
        seed: int | None,
        job_id: str,
        policy: Policy | None,
        fallbacks: Sequence[str],
        cache_bypass: bool,
        labels: Mapping[str, str] | None,
        tools: Sequence[ToolLike],
        tool_choice: str | None,
        parallel_tool_calls: bool | None,
        json_schema: Mapping[str, Any] | None,
        schema_name: str,
        strict: bool,
        json_object: bool,
        reasoning_effort: ReasoningEffort | None,
        images: Sequence[ImageLike],
    ) -> dict[str, Any]:
        fields = _convert.generate_fields(
            prompt=prompt,
            messages=messages,
            system=system,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            job_id=job_id,
            policy=policy,
            fallbacks=fallbacks,
            cache_bypass=cache_bypass,
            labels=labels,
            images=images,
        )
        fields.update(
            _convert.rich_fields(
                tools=tools,
                tool_choice=tool_choice,
                parallel_tool_calls=parallel_tool_calls,
                json_schema=json_schema,
                schema_name=schema_name,
                strict=strict,
                json_object=json_object,
                reasoning_effort=reasoning_effort,
            )
        )
        return fields
