"""A deterministic value for a JSON Schema: what the simulated provider answers when a request
asks for JSON matching a schema, or calls a tool with arguments matching its parameters.

Covers the schemas tool and response definitions use in practice: ``type`` (one or a list),
``enum``, ``const``, ``properties`` / ``required`` / ``additionalProperties``, ``items`` /
``prefixItems`` with ``minItems`` / ``maxItems``, string lengths and common ``format`` s,
numeric bounds (``minimum``, ``maximum``, their exclusive forms, ``multipleOf``), ``anyOf`` /
``oneOf`` (the first that is an object schema), ``allOf`` (merged), and local ``$ref`` s. A
``pattern`` cannot be honoured in general and is not tried. Every property is filled, so the
value suits strict schemas (all properties required, none extra).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["instance"]

_WORDS = (
    "amber", "river", "stone", "cedar", "lumen", "harbor", "meadow", "quartz", "signal", "orbit",
    "maple", "ember", "delta", "tundra", "willow", "zephyr",
)  # fmt: skip
_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "hostname": "example.com",
}
_MAX_DEPTH = 16
_MAX_ITEMS = 3


class _Rng:
    """A byte stream from SHA-256 of a seed: the same seed, the same choices."""

    def __init__(self, seed: bytes) -> None:
        self._state = hashlib.sha256(seed).digest()
        self._i = 0

    def byte(self) -> int:
        if self._i == len(self._state):
            self._state = hashlib.sha256(self._state).digest()
            self._i = 0
        b = self._state[self._i]
        self._i += 1
        return b


def instance(schema: Mapping[str, Any], seed: bytes) -> Any:
    """A value valid against ``schema`` (see the module docstring), the same for the same seed."""
    defs = {**dict(schema.get("definitions") or {}), **dict(schema.get("$defs") or {})}
    return _value(schema, defs, _Rng(seed), 0)


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    for _ in range(_MAX_DEPTH):
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            break
        target = defs.get(ref.rsplit("/", 1)[-1])
        if not isinstance(target, Mapping):
            break
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    all_of = schema.get("allOf")
    if isinstance(all_of, list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in all_of:
            if isinstance(part, Mapping):
                part = _resolve(part, defs)
                props = {**merged.get("properties", {}), **part.get("properties", {})}
                required = [*merged.get("required", []), *part.get("required", [])]
                merged = {**merged, **part, "properties": props, "required": required}
        schema = merged
    return schema


def _value(schema: Any, defs: Mapping[str, Any], rng: _Rng, depth: int) -> Any:
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return None
    schema = _resolve(schema, defs)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[rng.byte() % len(enum)]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _value(options[0], defs, rng, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or ["null"]
        kind = kinds[0]
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties")
        out: dict[str, Any] = {}
        if isinstance(props, Mapping):
            for name, sub in props.items():
                out[str(name)] = _value(sub, defs, rng, depth + 1)
        return out
    if kind == "array":
        return _array(schema, defs, rng, depth)
    if kind == "string":
        return _string(schema, rng)
    if kind == "integer":
        return int(_number(schema, rng, integer=True))
    if kind == "number":
        return _number(schema, rng, integer=False)
    if kind == "boolean":
        return bool(rng.byte() & 1)
    return None


def _array(schema: Mapping[str, Any], defs: Mapping[str, Any], rng: _Rng, depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    out = []
    if isinstance(prefix, list):
        out = [_value(p, defs, rng, depth + 1) for p in prefix]
    low = int(schema.get("minItems", 1) or 0)
    high = int(schema.get("maxItems", max(low, _MAX_ITEMS)))
    n = max(low, min(high, 1 + rng.byte() % 2))
    items = schema.get("items")
    while len(out) < n and isinstance(items, Mapping):
        out.append(_value(items, defs, rng, depth + 1))
    return out[: max(high, len(prefix) if isinstance(prefix, list) else 0)]


def _string(schema: Mapping[str, Any], rng: _Rng) -> str:
    fmt = schema.get("format")
    text = _FORMATS.get(fmt, "") if isinstance(fmt, str) else ""
    if not text:
        text = " ".join(_WORDS[rng.byte() % len(_WORDS)] for _ in range(1 + rng.byte() % 3))
    low = int(schema.get("minLength", 0) or 0)
    high = schema.get("maxLength")
    while len(text) < low:
        text += " " + _WORDS[rng.byte() % len(_WORDS)]
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


def _number(schema: Mapping[str, Any], rng: _Rng, *, integer: bool) -> float:
    low = schema.get("minimum")
    high = schema.get("maximum")
    ex_low = schema.get("exclusiveMinimum")
    ex_high = schema.get("exclusiveMaximum")
    step = 1.0 if integer else 0.001
    lo = float(low) if isinstance(low, int | float) else -math.inf
    hi = float(high) if isinstance(high, int | float) else math.inf
    if isinstance(ex_low, int | float) and not isinstance(ex_low, bool):
        lo = max(lo, float(ex_low) + step)
    if isinstance(ex_high, int | float) and not isinstance(ex_high, bool):
        hi = min(hi, float(ex_high) - step)
    if integer:
        lo = math.ceil(lo) if math.isfinite(lo) else lo
        hi = math.floor(hi) if math.isfinite(hi) else hi
    start = lo if math.isfinite(lo) else (hi - 100 if math.isfinite(hi) else 0.0)
    span = hi - start if math.isfinite(hi) else 100.0
    value = start + (rng.byte() % 101) / 100 * max(span, 0.0)
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int | float) and multiple > 0:
        value = math.ceil(value / multiple) * multiple
        if value > hi:
            value -= multiple
    if integer:
        return float(math.floor(value))
    rounded = round(value, 2)
    return rounded if lo <= rounded <= hi else value
