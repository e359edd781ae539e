"""The options of an Anthropic Messages body, read into the domain's ``GenerationOptions``:
client ``tools`` and ``tool_choice``, ``thinking`` and ``output_config`` (effort, JSON schema),
with the core's bounds; and the core's capability refusals renamed to these fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurea.errors import FieldViolation, UnsupportedFeature
from aurea.http._inputs import is_int
from aurea.http._rich import schema_of, strict_of, text_of
from aurea.inference import rich
from aurea.providers._base import (
    ReasoningEffort,
    ResponseFormat,
    ResponseFormatType,
    Tool,
    ToolChoice,
    ToolChoiceMode,
)
from aurea.security import input_limits, limit_text

MIN_THINKING_BUDGET = 1024  # Anthropic's own floor for budget_tokens
# budget_tokens to effort: at most LOW_BUDGET is low, at most MEDIUM_BUDGET medium, above high.
LOW_BUDGET = 2048
MEDIUM_BUDGET = 8192

_CHOICES = {
    "auto": ToolChoiceMode.AUTO,
    "any": ToolChoiceMode.REQUIRED,
    "tool": ToolChoiceMode.TOOL,
    "none": ToolChoiceMode.NONE,
}


# The core names a capability by the gRPC / OpenAI field that asks for it; these are Anthropic's.
_FIELDS = {
    "reasoning_effort": "thinking",
    "response_format": "output_config.format",
    "response_format.strict": "output_config.format",
}


def anthropic_fields(exc: UnsupportedFeature) -> UnsupportedFeature:
    """``exc`` with its field violations named as in a Messages body."""
    renamed = [FieldViolation(_FIELDS.get(v.field, v.field), v.description) for v in exc.violations]
    return UnsupportedFeature(exc.message, renamed)


def tools(raw: Any, bad: list[FieldViolation]) -> tuple[Tool, ...]:
    """``tools``: client tools ``{name, description, input_schema, strict}`` (``type`` absent or
    "custom"); Anthropic's server tools (web search, code execution, ...) are refused."""
    if raw is None:
        return ()
    most = min(input_limits().max_tools, rich.MAX_TOOLS)
    if not isinstance(raw, list):
        bad.append(FieldViolation("tools", "must be a list of tools"))
        return ()
    if len(raw) > most:
        bad.append(FieldViolation("tools", f"at most {most} tools {limit_text('max_tools')}"))
        return ()
    out: list[Tool] = []
    names: list[str] = []
    for i, t in enumerate(raw):
        at = f"tools[{i}]"
        if not isinstance(t, Mapping) or t.get("type", "custom") not in ("custom", None):
            bad.append(FieldViolation(f"{at}.type", "only client tools (custom) are supported"))
            continue
        name = t.get("name")
        if not isinstance(name, str) or not rich.name_ok(name):
            bad.append(FieldViolation(f"{at}.name", rich.NAME_RULE))
            continue
        names.append(name)
        description = text_of(t.get("description"), f"{at}.description", bad)
        params = None
        if t.get("input_schema") is None:
            bad.append(FieldViolation(f"{at}.input_schema", "is required: a JSON Schema object"))
        else:
            params = schema_of(t.get("input_schema"), f"{at}.input_schema", bad)
        strict = strict_of(t.get("strict"), f"{at}.strict", bad)
        if params is not None:
            out.append(Tool(name=name, description=description, parameters=params, strict=strict))
    rich.unique_names(names, bad)
    return tuple(out)


def tool_choice(raw: Any, bad: list[FieldViolation]) -> tuple[ToolChoice | None, bool | None]:
    """The tool choice and ``parallel_tool_calls`` (None: the provider's default)."""
    if raw is None:
        return None, None
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    mode = _CHOICES.get(kind) if isinstance(kind, str) else None
    if mode is None:
        bad.append(FieldViolation("tool_choice.type", 'must be "auto", "any", "tool" or "none"'))
        return None, None
    assert isinstance(raw, Mapping)
    name = raw.get("name", "")
    if mode is ToolChoiceMode.TOOL and (not isinstance(name, str) or not name):
        bad.append(FieldViolation("tool_choice.name", 'is required with type "tool"'))
        return None, None
    disable = raw.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        bad.append(FieldViolation("tool_choice.disable_parallel_tool_use", "must be true or false"))
        disable = None
    parallel = None if disable is None else not disable
    return ToolChoice(mode=mode, name=name if mode is ToolChoiceMode.TOOL else ""), parallel


def thinking(raw: Any, max_tokens: int | None, bad: list[FieldViolation]) -> ReasoningEffort | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind == "disabled":
        return None
    if kind == "adaptive":  # the model decides how much: Aurea's middle effort
        display = raw.get("display") if isinstance(raw, Mapping) else None
        if display not in (None, "summarized", "omitted"):
            bad.append(FieldViolation("thinking.display", 'must be "summarized" or "omitted"'))
        return ReasoningEffort.MEDIUM
    if kind != "enabled":
        bad.append(FieldViolation("thinking.type", 'must be "enabled", "disabled" or "adaptive"'))
        return None
    assert isinstance(raw, Mapping)
    budget: Any = raw.get("budget_tokens")
    if not is_int(budget) or budget < MIN_THINKING_BUDGET:
        bad.append(
            FieldViolation(
                "thinking.budget_tokens",
                f"must be a whole number of at least {MIN_THINKING_BUDGET}",
            )
        )
        return None
    if max_tokens is not None and budget >= max_tokens:
        bad.append(FieldViolation("thinking.budget_tokens", "must be less than max_tokens"))
        return None
    if budget <= LOW_BUDGET:
        return ReasoningEffort.LOW
    return ReasoningEffort.MEDIUM if budget <= MEDIUM_BUDGET else ReasoningEffort.HIGH


_EFFORTS = {
    "low": ReasoningEffort.LOW,
    "medium": ReasoningEffort.MEDIUM,
    "high": ReasoningEffort.HIGH,
    "xhigh": ReasoningEffort.HIGH,  # Aurea's highest
    "max": ReasoningEffort.HIGH,
}


def output_config(
    raw: Any, bad: list[FieldViolation]
) -> tuple[ReasoningEffort | None, ResponseFormat | None]:
    """``output_config``: ``effort`` to a reasoning effort, ``format`` (``json_schema``) to a
    strict JSON Schema answer (Anthropic's structured outputs are enforced, not aimed for)."""
    if raw is None:
        return None, None
    if not isinstance(raw, Mapping):
        bad.append(FieldViolation("output_config", "must be an object"))
        return None, None
    for key in raw:
        if key not in ("effort", "format"):
            bad.append(FieldViolation(f"output_config.{str(key)[:64]}", "is not supported"))
    effort = None
    if raw.get("effort") is not None:
        effort = _EFFORTS.get(raw["effort"]) if isinstance(raw["effort"], str) else None
        if effort is None:
            bad.append(
                FieldViolation("output_config.effort", f"must be one of {', '.join(_EFFORTS)}")
            )
    fmt = raw.get("format")
    if fmt is None:
        return effort, None
    if not isinstance(fmt, Mapping) or fmt.get("type") != "json_schema":
        bad.append(FieldViolation("output_config.format.type", 'must be "json_schema"'))
        return effort, None
    schema = schema_of(fmt.get("schema"), "output_config.format.schema", bad)
    if schema is None:
        return effort, None
    return effort, ResponseFormat(type=ResponseFormatType.JSON_SCHEMA, schema=schema, strict=True)
