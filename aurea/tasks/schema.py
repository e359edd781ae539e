"""A small JSON Schema subset for task payloads, so a bad payload is refused at submission
(INVALID_ARGUMENT naming the field) instead of failing a worker later.

Checked keywords: ``type`` (one or a list), ``enum``, ``required``, ``properties``,
``additionalProperties: false``, ``items``, ``minItems``/``maxItems``,
``minLength``/``maxLength``, ``minimum``/``maximum``. Other keywords are shown by
``ListTaskKinds`` but not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurea.errors import FieldViolation

__all__ = ["check_schema", "violations"]

_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
_MAX_VIOLATIONS = 20


def _is(value: Any, kind: str) -> bool:
    match kind:
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "string":
            return isinstance(value, str)
        case "boolean":
            return isinstance(value, bool)
        case "null":
            return value is None
        case "integer":
            if isinstance(value, bool):
                return False
            return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
    return False


def check_schema(schema: Mapping[str, Any], where: str = "payload_schema") -> None:
    """Raise ValueError if ``schema`` misuses a keyword this module checks (at registration)."""
    kinds = schema.get("type")
    if kinds is not None:
        for kind in [kinds] if isinstance(kinds, str) else list(kinds):
            if kind not in _TYPES:
                raise ValueError(f"{where}.type: unknown type {kind!r}")
    for key in ("properties",):
        props = schema.get(key, {})
        if not isinstance(props, Mapping):
            raise ValueError(f"{where}.{key} must be an object")
        for name, sub in props.items():
            if not isinstance(sub, Mapping):
                raise ValueError(f"{where}.{key}.{name} must be an object")
            check_schema(sub, f"{where}.{key}.{name}")
    items = schema.get("items")
    if items is not None:
        if not isinstance(items, Mapping):
            raise ValueError(f"{where}.items must be an object")
        check_schema(items, f"{where}.items")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ValueError(f"{where}.required must be a list of names")


def violations(
    value: Any, schema: Mapping[str, Any], path: str = "payload"
) -> list[FieldViolation]:
    """Where ``value`` breaks ``schema`` (at most 20 entries); empty when it matches."""
    out: list[FieldViolation] = []
    _walk(value, schema, path, out)
    return out[:_MAX_VIOLATIONS]


def _walk(value: Any, schema: Mapping[str, Any], path: str, out: list[FieldViolation]) -> None:
    if len(out) >= _MAX_VIOLATIONS:
        return
    kinds = schema.get("type")
    if kinds is not None:
        allowed = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is(value, k) for k in allowed):
            out.append(FieldViolation(path, f"must be {' or '.join(allowed)}"))
            return
    if "enum" in schema and value not in schema["enum"]:
        shown = ", ".join(repr(v) for v in list(schema["enum"])[:10])
        out.append(FieldViolation(path, f"must be one of {shown}"))
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                out.append(FieldViolation(f"{path}.{name}", "is required"))
        props: Mapping[str, Any] = schema.get("properties", {})
        for name, item in value.items():
            sub = props.get(name)
            if sub is not None:
                _walk(item, sub, f"{path}.{name}", out)
            elif schema.get("additionalProperties") is False:
                out.append(FieldViolation(f"{path}.{name}", "is not a known field"))
    elif isinstance(value, list):
        _bounds(len(value), schema, "minItems", "maxItems", path, "items", out)
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                _walk(item, items, f"{path}[{i}]", out)
    elif isinstance(value, str):
        _bounds(len(value), schema, "minLength", "maxLength", path, "characters", out)
    elif _is(value, "number"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and value < lo:
            out.append(FieldViolation(path, f"must be at least {lo}"))
        if hi is not None and value > hi:
            out.append(FieldViolation(path, f"must be at most {hi}"))


def _bounds(
    n: int,
    schema: Mapping[str, Any],
    lo_key: str,
    hi_key: str,
    path: str,
    noun: str,
    out: list[FieldViolation],
) -> None:
    lo, hi = schema.get(lo_key), schema.get(hi_key)
    if lo is not None and n < lo:
        out.append(FieldViolation(path, f"must have at least {lo} {noun}"))
    if hi is not None and n > hi:
        out.append(FieldViolation(path, f"must have at most {hi} {noun}"))
