"""Aurea's own inputs on the HTTP door: job id, fallbacks, policy, cache bypass, labels and a
deadline, given as an ``"aurea"`` object in the JSON body (the OpenAI SDKs' ``extra_body``) or
as ``x-aurea-*`` headers (for clients that cannot change the body). The body wins when both
name the same input.

Every problem is collected as a field violation so one reply lists them all; the bounds are the
gRPC edge's (``aurea.api.convert``), so a call is accepted or refused the same through both doors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aurea.errors import FieldViolation
from aurea.security import input_limits, limit_text
from aurea.types import Policy

MAX_MESSAGES = 1000
MAX_TOKENS = 1_000_000
MAX_STOP = 4
MAX_FALLBACKS = 8
MAX_LABELS = 32
MAX_LABEL_CHARS = 256
MAX_JOB_ID = 128
MAX_EMBED_INPUTS = 2048
MAX_MODEL_NAME = 256
MAX_TIMEOUT_MS = 86_400_000  # a day, the longest server.default_call_timeout_s allows

HEADER_JOB_ID = "x-aurea-job-id"
HEADER_FALLBACKS = "x-aurea-fallbacks"  # comma-separated catalog names
HEADER_POLICY = "x-aurea-policy"
HEADER_CACHE_BYPASS = "x-aurea-cache-bypass"  # true / false
HEADER_LABELS = "x-aurea-labels"  # key=value,key=value
HEADER_TIMEOUT_MS = "x-aurea-timeout-ms"

_KEYS = ("job_id", "fallbacks", "policy", "cache_bypass", "labels", "timeout_ms")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no", ""})


@dataclass(frozen=True, slots=True, kw_only=True)
class AureaInputs:
    job_id: str = ""
    fallbacks: tuple[str, ...] = ()
    policy: Policy | None = None
    cache_bypass: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    timeout_ms: int | None = None


def is_text(s: str) -> bool:
    """Whether ``s`` can be sent on as UTF-8: JSON may escape a lone surrogate (``"\\ud800"``),
    which no upstream (and no protobuf string) accepts."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


BAD_TEXT = "is not valid Unicode text (it holds a lone surrogate)"


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    if is_int(v):
        # JSON integers are unbounded; math.isfinite (and float()) raise OverflowError on one
        # past a double's range, which the fuzzer sent as a temperature.
        return bool(abs(v) < 2**1023)
    return isinstance(v, float) and math.isfinite(v)


def _from_headers(headers: Mapping[str, str], bad: list[FieldViolation]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if (v := headers.get(HEADER_JOB_ID)) is not None:
        out["job_id"] = v
    if (v := headers.get(HEADER_FALLBACKS)) is not None:
        out["fallbacks"] = [p.strip() for p in v.split(",") if p.strip()]
    if (v := headers.get(HEADER_POLICY)) is not None:
        out["policy"] = v.strip().lower()
    if (v := headers.get(HEADER_CACHE_BYPASS)) is not None:
        word = v.strip().lower()
        if word in _TRUE or word in _FALSE:
            out["cache_bypass"] = word in _TRUE
        else:
            bad.append(FieldViolation(HEADER_CACHE_BYPASS, "must be true or false"))
    if (v := headers.get(HEADER_LABELS)) is not None:
        labels: dict[str, str] = {}
        for item in v.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                bad.append(
                    FieldViolation(HEADER_LABELS, "must be key=value pairs, comma-separated")
                )
                break
            labels[key.strip()] = value.strip()
        out["labels"] = labels
    if (v := headers.get(HEADER_TIMEOUT_MS)) is not None:
        try:
            out["timeout_ms"] = int(v.strip())
        except ValueError:
            bad.append(FieldViolation(HEADER_TIMEOUT_MS, "must be a whole number of milliseconds"))
    return out


def aurea_inputs(
    body: Mapping[str, Any], headers: Mapping[str, str], bad: list[FieldViolation]
) -> AureaInputs:
    """The call's Aurea inputs from ``body["aurea"]`` over ``x-aurea-*`` headers; problems are
    appended to ``bad`` (fields named ``aurea.job_id`` or by the header's name)."""
    raw = dict(_from_headers(headers, bad))
    ext = body.get("aurea")
    if ext is not None:
        if not isinstance(ext, Mapping):
            bad.append(FieldViolation("aurea", "must be an object"))
        else:
            for key, value in ext.items():
                if key not in _KEYS:
                    bad.append(
                        FieldViolation(f"aurea.{key}", f"is not known; known: {', '.join(_KEYS)}")
                    )
                else:
                    raw[key] = value
    return _check(raw, bad)


def _check(raw: Mapping[str, Any], bad: list[FieldViolation]) -> AureaInputs:
    def fail(key: str, description: str) -> None:
        bad.append(FieldViolation(f"aurea.{key}", description))

    job_id = raw.get("job_id", "")
    if not isinstance(job_id, str) or len(job_id) > MAX_JOB_ID:
        fail("job_id", f"must be a string of at most {MAX_JOB_ID} characters")
        job_id = ""
    fallbacks: list[str] = []
    value = raw.get("fallbacks", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > MAX_FALLBACKS:
        fail("fallbacks", f"must be a list of at most {MAX_FALLBACKS} model names")
    else:
        for i, name in enumerate(value):
            if not isinstance(name, str) or not 0 < len(name) <= MAX_MODEL_NAME:
                fail(f"fallbacks[{i}]", f"must be a model name of 1 to {MAX_MODEL_NAME} characters")
            else:
                fallbacks.append(name)
    policy: Policy | None = None
    value = raw.get("policy")
    if value is not None and value != "":
        try:
            policy = Policy(value)
        except ValueError:
            fail("policy", f"must be one of {', '.join(p.value for p in Policy)}")
    cache_bypass = raw.get("cache_bypass", False)
    if not isinstance(cache_bypass, bool):
        fail("cache_bypass", "must be true or false")
        cache_bypass = False
    labels: dict[str, str] = {}
    value = raw.get("labels", {})
    lim = input_limits()
    most, chars = lim.max_labels, lim.max_label_chars
    if not isinstance(value, Mapping) or len(value) > most:
        fail(
            "labels",
            f"must be an object of at most {most} string values {limit_text('max_labels')}",
        )
    else:
        for k, v in value.items():
            ok = isinstance(v, str) and 0 < len(k) <= chars and len(v) <= chars
            if not ok:
                fail(
                    f"labels.{k[:64]}",
                    f"must be a string of at most {chars} characters "
                    f"{limit_text('max_label_chars')}",
                )
            else:
                labels[k] = v
    timeout_ms = raw.get("timeout_ms")
    if timeout_ms is not None and not (is_int(timeout_ms) and 0 < timeout_ms <= MAX_TIMEOUT_MS):
        fail("timeout_ms", f"must be a whole number of milliseconds in [1, {MAX_TIMEOUT_MS}]")
        timeout_ms = None
    return AureaInputs(
        job_id=job_id,
        fallbacks=tuple(fallbacks),
        policy=policy,
        cache_bypass=cache_bypass,
        labels=labels,
        timeout_ms=timeout_ms,
    )


def deadline_of(ext: AureaInputs, started: float) -> float | None:
    """The call's deadline on the door's clock; None: the server's default bound applies."""
    return None if ext.timeout_ms is None else started + ext.timeout_ms / 1e3
