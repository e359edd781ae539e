"""Two encodings the cache needs: a canonical one that a key hashes (equal calls give equal
bytes, whatever their field order or container types), and a value codec that turns a cached
answer into bytes for Redis and back.

Both walk dataclasses generically, so a field added to a call or an answer type is covered without
touching this module. The value codec only ever rebuilds types from an allowlist (the domain
dataclasses and enums of ``aurea.inference.calls``, ``aurea.providers._base`` (and its
``_messages``) and the cache's own ``_entry``) and plain JSON values: bytes read from a shared
Redis never run code, unlike pickle.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import json
import sys
from array import array
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

import aurea.inference.calls as _calls
import aurea.providers._base as _base
import aurea.providers._messages as _messages

__all__ = ["CodecError", "canonical", "decode", "digest", "encode", "field_names"]

_MAGIC = b"AC1\n"  # format version of stored values: a change makes old entries misses
_FLOATS_MIN = 8  # a tuple of at least this many floats is stored packed (embedding vectors)


class CodecError(ValueError):
    """A value cannot be encoded (a type outside the allowlist) or stored bytes cannot be
    decoded (another version, corruption): either way the cache treats it as no entry."""


# -- canonical form (keys) -----------------------------------------------------------------------

# Field names per dataclass type, looked up once (``dataclasses.fields`` is slow per call).
_FIELDS: dict[type, tuple[str, ...] | None] = {}


def field_names(cls: type) -> tuple[str, ...] | None:
    """A dataclass type's field names in order (None: not a dataclass)."""
    try:
        return _FIELDS[cls]
    except KeyError:
        is_dc = dataclasses.is_dataclass(cls)
        names = tuple(f.name for f in dataclasses.fields(cls)) if is_dc else None
        _FIELDS[cls] = names
        return names


def _walk(value: Any, out: list[str]) -> None:
    """Append ``value``'s canonical tokens: every string length-prefixed, every container
    bracketed, so two different values never give the same text."""
    cls = type(value)
    if cls is str:
        out.append(f"s{len(value)}:")
        out.append(value)
    elif cls is tuple or cls is list:
        out.append("[")
        for v in value:
            _walk(v, out)
        out.append("]")
    elif value is None:
        out.append("N")
    elif cls is bool:
        out.append("T" if value else "F")
    elif cls is int:
        out.append(f"n{value};")
    elif cls is float:
        # A number by its value: temperature 0 from Python and 0.0 from protobuf are one key.
        if value != value or value in (_INF, -_INF):
            raise CodecError("a key cannot hold NaN or infinity")
        if value.is_integer() and abs(value) < _EXACT:
            out.append(f"n{int(value)};")
        else:
            out.append(f"n{value!r};")
    elif isinstance(value, enum.Enum):
        out.append("e")
        _walk(value.value, out)
    elif (names := field_names(cls)) is not None:
        out.append(f"<{len(cls.__name__)}:{cls.__name__}")
        for name in names:
            out.append(f"{len(name)}:{name}")
            _walk(getattr(value, name), out)
        out.append(">")
    elif isinstance(value, Mapping):
        out.append("{")
        for k in sorted(value, key=str):
            _walk(str(k), out)
            _walk(value[k], out)
        out.append("}")
    elif isinstance(value, bytes | bytearray | memoryview):
        # Inline images: their hash stands for them (a key needs identity, not the bytes).
        out.append(f"b{hashlib.sha256(bytes(value)).hexdigest()};")
    elif isinstance(value, str):  # subclasses of the plain types: as the plain type
        _walk(str(value), out)
    elif isinstance(value, int):
        _walk(int(value), out)
    elif isinstance(value, float):
        _walk(float(value), out)
    elif isinstance(value, tuple | list):
        _walk(list(value), out)
    elif isinstance(value, set | frozenset):
        out.append("(")
        for token in sorted(canonical(v) for v in value):
            out.append(f"{len(token)}:")
            out.append(token.decode())
        out.append(")")
    else:
        raise CodecError(f"a cache key cannot hold a {cls.__name__}")


_INF = float("inf")
_EXACT = 2.0**53  # floats below this that are whole numbers are exactly that integer


def canonical(value: Any) -> bytes:
    """One byte string per meaning: dataclasses by type and field names, mappings with sorted
    keys, tuples and lists alike."""
    out: list[str] = []
    _walk(value, out)
    return "".join(out).encode()


def digest(*parts: Any) -> str:
    """The SHA-256 of the parts' canonical form, in hex."""
    return hashlib.sha256(canonical(parts)).hexdigest()


# -- stored values --------------------------------------------------------------------------------


def _registry(modules: Iterable[ModuleType]) -> dict[str, type]:
    out: dict[str, type] = {}
    for module in modules:
        for name, obj in vars(module).items():
            if not isinstance(obj, type) or obj.__module__ != module.__name__:
                continue
            if dataclasses.is_dataclass(obj) or issubclass(obj, enum.Enum):
                out[name] = obj
    return out


# Built on first use: the modules may gain types (issue 15 adds some) and all are covered.
_TYPES: dict[str, type] = {}


def _types() -> dict[str, type]:
    if not _TYPES:
        from aurea.cache import _entry  # the cache's own entry types (imports this module)

        _TYPES.update(_registry((_base, _messages, _calls, _entry)))
    return _TYPES


def _enc(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str | float):
        return value
    if isinstance(value, enum.Enum):
        name = type(value).__name__
        if _types().get(name) is not type(value):
            raise CodecError(f"cannot store the enum {name}")
        return {"!e": name, "v": value.value}
    if isinstance(value, bytes):
        return {"!b": base64.b64encode(value).decode("ascii")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _types().get(name) is not type(value):
            raise CodecError(f"cannot store the type {name}")
        fields = {f.name: _enc(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"!t": name, "f": fields}
    if isinstance(value, tuple):
        if len(value) >= _FLOATS_MIN and all(type(v) is float for v in value):
            packed = array("d", value)
            if sys.byteorder != "little":
                packed.byteswap()
            return {"!F": base64.b64encode(packed.tobytes()).decode("ascii")}
        return {"!T": [_enc(v) for v in value]}
    if isinstance(value, list):
        return [_enc(v) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise CodecError("cannot store a mapping with keys that are not strings")
        return {"!m": {k: _enc(v) for k, v in value.items()}}
    raise CodecError(f"cannot store a {type(value).__name__}")


def _dec(data: Any) -> Any:
    if data is None or isinstance(data, bool | int | str | float):
        return data
    if isinstance(data, list):
        return [_dec(v) for v in data]
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise CodecError("not a stored value")
    if "!T" in data:
        return tuple(_dec(v) for v in data["!T"])
    if "!m" in data:
        return {k: _dec(v) for k, v in data["!m"].items()}
    if "!F" in data:
        packed = array("d")
        packed.frombytes(base64.b64decode(data["!F"]))
        if sys.byteorder != "little":
            packed.byteswap()
        return tuple(packed)
    if "!b" in data:
        return base64.b64decode(data["!b"])
    if "!e" in data:
        cls = _types().get(data["!e"])
        if cls is None or not issubclass(cls, enum.Enum):
            raise CodecError(f"unknown enum {data['!e']!r}")
        return cls(data["v"])
    if "!t" in data:
        cls = _types().get(data["!t"])
        if cls is None or not dataclasses.is_dataclass(cls):
            raise CodecError(f"unknown type {data['!t']!r}")
        return cls(**{k: _dec(v) for k, v in data["f"].items()})
    raise CodecError("not a stored value")


def encode(value: Any) -> bytes:
    """``value`` (JSON-like data, tuples, bytes, and the allowlisted domain types) as bytes."""
    text = json.dumps(_enc(value), separators=(",", ":"), ensure_ascii=False)
    return _MAGIC + text.encode()


def decode(blob: bytes) -> Any:
    """What ``encode`` wrote; ``CodecError`` for anything else."""
    if not blob.startswith(_MAGIC):
        raise CodecError("stored by another version of the cache")
    try:
        return _dec(json.loads(blob[len(_MAGIC) :]))
    except CodecError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise CodecError(f"corrupt entry: {exc}") from exc
