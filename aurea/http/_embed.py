"""``POST /v1/embeddings`` request bodies to domain calls, and vectors back to OpenAI's shape
(``encoding_format`` ``float`` or ``base64``: little-endian float32, which the OpenAI SDKs ask
for by default)."""

from __future__ import annotations

import base64
import struct
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aurea.errors import FieldViolation, InvalidRequest
from aurea.http._inputs import (
    BAD_TEXT,
    MAX_MODEL_NAME,
    aurea_inputs,
    deadline_of,
    is_text,
)
from aurea.inference import EmbedCall
from aurea.security import input_limits, limit_text

_KNOWN = frozenset({"model", "input", "encoding_format", "dimensions", "user", "aurea"})
_FORMATS = ("float", "base64")


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedRequest:
    call: EmbedCall
    base64: bool


def parse_embed(
    body: Any, headers: Mapping[str, str], request_id: str, started: float, principal: str = ""
) -> EmbedRequest:
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object")
    bad: list[FieldViolation] = []
    for key in body:
        if key not in _KNOWN:
            bad.append(FieldViolation(str(key)[:64], "is not a recognized request argument"))
    model = body.get("model") or ""
    if not isinstance(model, str) or len(model) > MAX_MODEL_NAME:
        bad.append(
            FieldViolation("model", f"must be a string of at most {MAX_MODEL_NAME} characters")
        )
        model = ""
    raw = body.get("input")
    items = [raw] if isinstance(raw, str) else raw
    inputs: list[str] = []
    most = input_limits().max_embed_inputs
    if not isinstance(items, list) or not 1 <= len(items) <= most:
        bad.append(
            FieldViolation(
                "input",
                f"must be a string or a list of 1 to {most} strings "
                f"{limit_text('max_embed_inputs')}",
            )
        )
    else:
        for i, text in enumerate(items):
            if isinstance(text, list) or (isinstance(text, int) and not isinstance(text, bool)):
                bad.append(
                    FieldViolation(f"input[{i}]", "token arrays are not supported; send text")
                )
            elif not isinstance(text, str) or not text:
                bad.append(FieldViolation(f"input[{i}]", "must be a non-empty string"))
            elif not is_text(text):
                bad.append(FieldViolation(f"input[{i}]", BAD_TEXT))
            else:
                inputs.append(text)
        chars, most_chars = sum(len(t) for t in inputs), input_limits().max_prompt_chars
        if chars > most_chars:
            bad.append(
                FieldViolation(
                    "input",
                    f"the inputs are {chars} characters; at most {most_chars} are allowed "
                    f"{limit_text('max_prompt_chars')}",
                )
            )
    fmt = body.get("encoding_format") or "float"
    if fmt not in _FORMATS:
        bad.append(FieldViolation("encoding_format", "must be float or base64"))
    if body.get("dimensions") is not None:
        bad.append(FieldViolation("dimensions", "is not supported: vectors have the model's size"))
    ext = aurea_inputs(body, headers, bad)
    for key, given in (
        ("fallbacks", bool(ext.fallbacks)),
        ("policy", ext.policy is not None),
    ):
        if given:
            bad.append(FieldViolation(f"aurea.{key}", "does not apply to embeddings"))
    if bad:
        summary = "; ".join(f"{v.field}: {v.description}" for v in bad)
        raise InvalidRequest(f"invalid request: {summary}", bad)
    call = EmbedCall(
        request_id=request_id,
        inputs=tuple(inputs),
        model=model,
        job_id=ext.job_id,
        principal=principal,
        labels=ext.labels,
        deadline=deadline_of(ext, started),
    )
    return EmbedRequest(call=call, base64=fmt == "base64")


def encode_vector(values: Sequence[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return list(values)
    packed = array("f", values)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def decode_vector(text: str) -> list[float]:
    """The inverse of ``encode_vector(..., True)`` (what the OpenAI SDKs do with it)."""
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))
