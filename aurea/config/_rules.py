"""How a setting is declared once (default, range, meaning) and read from TOML or env text.

A section is a frozen dataclass whose fields are declared with ``setting(default, doc, ...)``;
``read_fields`` turns one TOML table into that dataclass's values, so a default or a range is
written in exactly one place. Every problem is a ``ConfigError`` naming the dotted key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aurea.errors import AureaError

T = TypeVar("T")

NANOS_PER_USD = 1_000_000_000
# Prices are USD per million tokens. $10,000/Mtok (far above any real price) is 1e13 nano-dollars
# per Mtok, so a call costs at most tokens * 1e7 nano-dollars: int64 (9.2e18) holds the cost of
# 9.2e11 tokens in one call, over 9,000 times the largest context window (MAX_CONTEXT_TOKENS).
MAX_USD_PER_MTOK = Decimal(10_000)
# A job budget of $1,000,000 is 1e15 nano-dollars: thousands of them still sum inside int64.
MAX_BUDGET_USD = Decimal(1_000_000)
MAX_CONTEXT_TOKENS = 100_000_000

_RULE = "aurea.setting"


class ConfigError(AureaError, ValueError):
    """A configuration value is wrong; the message names the key and what is allowed.

    Still a ``ValueError`` so callers that caught the old class keep working.
    """

    reason = "CONFIG_ERROR"

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config {key}: {problem}")
        self.key = key
        self.problem = problem


Parser = Callable[[Any, str], Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """What a key accepts. Numeric rules always have both bounds, so no value is unbounded."""

    doc: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # the bound itself is not allowed (``> 0`` for timeouts)
    choices: tuple[str, ...] = ()
    key: str = ""  # the TOML key, when it is not the field name (``*_usd`` -> ``*_nanos``)
    parse: Parser | None = None  # for values that are not plain int/float/bool/str/list
    allowed: str = ""  # the range in words, where ``parse`` decides it


def setting(
    default: T,
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    choices: tuple[str, ...] = (),
    key: str = "",
    parse: Parser | None = None,
    allowed: str = "",
    repr: bool = True,
) -> T:
    """Declare a dataclass field as a config key: its default, its range and what it means."""
    rule = Rule(
        doc=doc,
        lo=lo,
        hi=hi,
        lo_open=lo_open,
        choices=choices,
        key=key,
        parse=parse,
        allowed=allowed,
    )
    if isinstance(default, int | float) and not isinstance(default, bool) and parse is None:
        assert lo is not None and hi is not None, f"numeric setting {doc!r} needs both bounds"
    return field(default=default, repr=repr, metadata={_RULE: rule})


def rule_of(f: Field[Any]) -> Rule | None:
    rule = f.metadata.get(_RULE)
    return rule if isinstance(rule, Rule) else None


def toml_key(f: Field[Any], rule: Rule) -> str:
    return rule.key or f.name


def keys_of(cls: type) -> tuple[str, ...]:
    """The TOML keys a section dataclass accepts."""
    return tuple(toml_key(f, r) for f in fields(cls) if (r := rule_of(f)))


def span(rule: Rule) -> str:
    """The allowed range as text: ``(0, 3600]``, ``[0, 65535]``, ``one of a, b`` or ``""``."""
    if rule.allowed:
        return rule.allowed
    if rule.choices:
        return "one of " + ", ".join(rule.choices)
    if rule.lo is None or rule.hi is None:
        return ""
    return f"{'(' if rule.lo_open else '['}{_num(rule.lo)}, {_num(rule.hi)}]"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def show(v: Any) -> str:
    """A value for an error message, cut short so a huge value cannot flood the log."""
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def as_int(v: Any, key: str, rule: Rule) -> int:
    iv: int | None = None
    if isinstance(v, int) and not isinstance(v, bool):
        iv = v
    elif isinstance(v, str):
        try:
            iv = int(v.strip())
        except ValueError:
            iv = None
    assert rule.lo is not None and rule.hi is not None
    if iv is None or not _inside(iv, rule):
        raise ConfigError(key, f"{show(v)} is not an integer in {span(rule)}")
    return iv


def as_float(v: Any, key: str, rule: Rule) -> float:
    fv: float | None = None
    if isinstance(v, int | float) and not isinstance(v, bool):
        fv = float(v)
    elif isinstance(v, str):
        try:
            fv = float(v.strip())
        except ValueError:
            fv = None
    # nan compares false with everything and inf passes an open upper bound: reject both by name.
    if fv is None or not math.isfinite(fv) or not _inside(fv, rule):
        raise ConfigError(key, f"{show(v)} is not a finite number in {span(rule)}")
    return fv


def _inside(x: float, rule: Rule) -> bool:
    assert rule.lo is not None and rule.hi is not None
    above = x > rule.lo if rule.lo_open else x >= rule.lo
    return above and x <= rule.hi


def as_bool(v: Any, key: str) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower() if isinstance(v, str) else ""
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ConfigError(key, f"{show(v)} is not a boolean (true or false)")


def as_str(v: Any, key: str, choices: tuple[str, ...] = ()) -> str:
    if not isinstance(v, str):
        raise ConfigError(key, f"{show(v)} is not a string")
    s = v.strip()
    if choices:
        if s.lower() not in choices:
            raise ConfigError(key, f"{show(v)} is not one of {', '.join(choices)}")
        return s.lower()
    return s


def as_strs(v: Any, key: str) -> tuple[str, ...]:
    if isinstance(v, str):  # from the environment: comma-separated
        return tuple(s.strip() for s in v.split(",") if s.strip())
    if not isinstance(v, list | tuple) or not all(isinstance(s, str) for s in v):
        raise ConfigError(key, f"{show(v)} is not a list of strings")
    return tuple(s.strip() for s in v)


def _usd(v: Any, key: str, hi: Decimal, what: str) -> int:
    d: Decimal | None = None
    if isinstance(v, int | float | str) and not isinstance(v, bool):
        try:
            d = Decimal(str(v).strip())
        except InvalidOperation:
            d = None
    if d is None or not d.is_finite() or not Decimal(0) <= d <= hi:
        raise ConfigError(key, f"{show(v)} is not {what}: a finite number of USD from 0 to {hi}")
    return int(d * NANOS_PER_USD)  # below a nano-dollar rounds down to 0


def http_url(v: Any, key: str) -> str:
    """An http(s) URL with a host, or ''. The value is never echoed: it may hold a password."""
    url = as_str(v, key)
    try:
        ok = not url or (urlsplit(url).scheme in ("http", "https") and bool(urlsplit(url).hostname))
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(key, "must be an http:// or https:// URL with a host")
    return url


PRICE_RANGE = f"USD from 0 to {MAX_USD_PER_MTOK}, finite"
BUDGET_RANGE = f"USD from 0 to {MAX_BUDGET_USD}, finite"


def price_nanos(v: Any, key: str) -> int:
    """USD per million tokens (a number or a decimal string) -> nano-dollars per million tokens."""
    return _usd(v, key, MAX_USD_PER_MTOK, "a price per million tokens")


def budget_nanos(v: Any, key: str) -> int:
    """USD (a number or a decimal string) -> nano-dollars."""
    return _usd(v, key, MAX_BUDGET_USD, "a budget")


class Table:
    """One TOML table being read: remembers the keys asked for, so leftovers are reported."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(where, f"must be a table, not {show(raw)}")
        self.raw: Mapping[str, Any] = raw
        self.where = where
        self.known: list[str] = []

    def key(self, k: str) -> str:
        return f"{self.where}.{k}" if self.where else k

    def has(self, k: str) -> bool:
        return k in self.raw

    def take(self, k: str, default: Any = None) -> Any:
        """The raw value of ``k`` (``default`` when absent), marking ``k`` as a known key."""
        self.known.append(k)
        return self.raw.get(k, default)

    def require(self, k: str, what: str) -> Any:
        if k not in self.raw:
            raise ConfigError(self.key(k), f"is required ({what})")
        return self.take(k)

    def read(self, k: str, default: Any, rule: Rule) -> Any:
        """``k`` converted and checked by ``rule``; ``default`` (trusted) when absent."""
        if k not in self.raw:
            self.known.append(k)
            return default
        v, key = self.take(k), self.key(k)
        if rule.parse is not None:
            return rule.parse(v, key)
        if isinstance(default, bool):
            return as_bool(v, key)
        if isinstance(default, int):
            return as_int(v, key, rule)
        if isinstance(default, float):
            return as_float(v, key, rule)
        if isinstance(default, tuple):
            return as_strs(v, key)
        return as_str(v, key, rule.choices)

    def done(self, noun: str = "key") -> None:
        unknown = sorted(set(self.raw) - set(self.known))
        if unknown:
            allowed = ", ".join(sorted(set(self.known))) or "none"
            raise ConfigError(self.key(unknown[0]), f"unknown {noun}; allowed: {allowed}")


def default_of(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    assert f.default_factory is not MISSING, f"setting {f.name} has no default"
    return f.default_factory()


def read_fields(cls: type, table: Table) -> dict[str, Any]:
    """The values of ``cls``'s declared settings found in ``table`` (defaults for the rest)."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if (rule := rule_of(f)) is not None:
            out[f.name] = table.read(toml_key(f, rule), default_of(f), rule)
    return out


def read_section(cls: type[T], raw: Any, where: str) -> T:
    """A whole section: every key declared by ``cls``, nothing else."""
    table = Table({} if raw is None else raw, where)
    values = read_fields(cls, table)
    table.done()
    return cls(**values)


@dataclass(frozen=True, slots=True)
class Row:
    """One documented key, for the README's reference table."""

    key: str
    default: str
    allowed: str
    doc: str


def describe(cls: type, where: str) -> list[Row]:
    rows = []
    for f in fields(cls):
        if (rule := rule_of(f)) is not None:
            default = default_of(f)
            if rule.parse is budget_nanos or rule.parse is price_nanos:
                default = str(Decimal(default) / NANOS_PER_USD)
            allowed = span(rule) or _kind_of(default)
            rows.append(Row(f"{where}.{toml_key(f, rule)}", _toml(default), allowed, rule.doc))
    return rows


def _toml(v: Any) -> str:
    """A default as it would be written in the TOML file."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, tuple):
        return json.dumps(list(v))
    if isinstance(v, frozenset):
        return json.dumps(sorted(str(x) for x in v))
    return str(v)


def _kind_of(v: Any) -> str:
    if isinstance(v, bool):
        return "true or false"
    if isinstance(v, tuple):
        return "list of strings"
    return "string"
