"""The built-in ``simulated`` provider: deterministic text derived from the prompt, streamed
token by token with a configurable delay, with exact token counts. Needs no network or keys.

Options (``[providers.NAME.options]``): ``token_delay_ms`` (default 20), ``first_token_delay_ms``
(default 0), ``min_tokens``/``max_tokens`` (length range of a natural answer, default 12..48),
``embedding_dim`` (default 64).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import struct
from collections.abc import AsyncIterator

from aurea.providers._base import (
    ChatMessage,
    Completion,
    Embeddings,
    EmbedRequest,
    Finish,
    FinishReason,
    ProviderEvent,
    ProviderRequest,
    ProviderSpec,
    TextDelta,
    Usage,
    UsageReport,
)

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORDS = (
    "the", "model", "stream", "token", "aurea", "router", "budget", "quietly", "answers",
    "every", "request", "with", "care", "and", "measured", "latency", "while", "providers",
    "rest", "signal", "ledger", "light", "river", "across", "open", "circuit", "cache", "warm",
    "a", "small", "deterministic", "reply", "for", "you", "today", "gold", "steady", "clear",
)  # fmt: skip


def count_tokens(text: str) -> int:
    """The simulated tokenizer: words and punctuation marks each count as one token."""
    return len(_TOKEN_RE.findall(text))


def prompt_tokens(messages: tuple[ChatMessage, ...]) -> int:
    # Each message costs its content plus 3 tokens of framing, like chat templates do.
    return sum(count_tokens(m.content) + 3 for m in messages) + 1


def _seed(request: ProviderRequest) -> bytes:
    h = hashlib.sha256(request.model.encode())
    for m in request.messages:
        h.update(m.role.encode() + b"\0" + m.content.encode() + b"\0")
    if request.seed is not None:
        h.update(str(request.seed).encode())
    return h.digest()


class SimulatedProvider:
    """A Provider whose output is a pure function of (model, messages, seed)."""

    def __init__(self, spec: ProviderSpec) -> None:
        self.name = spec.name
        opts = spec.options
        self.token_delay_s = float(opts.get("token_delay_ms", 20)) / 1000.0
        self.first_token_delay_s = float(opts.get("first_token_delay_ms", 0)) / 1000.0
        self.min_tokens = int(opts.get("min_tokens", 12))
        self.max_tokens = max(self.min_tokens, int(opts.get("max_tokens", 48)))
        self.embedding_dim = int(opts.get("embedding_dim", 64))
        self._plans: dict[tuple[object, ...], tuple[list[str], FinishReason]] = {}
        # Observable work counters (tests read them to see cancellation stop the work).
        self.streams_started = 0
        self.streams_finished = 0
        self.streams_cancelled = 0
        self.tokens_generated = 0

    def plan(self, request: ProviderRequest) -> tuple[list[str], FinishReason]:
        """The pieces (one token each) this request produces, and why it stops."""
        key = (request.model, request.messages, request.max_tokens, request.stop, request.seed)
        cached = self._plans.get(key)
        if cached is None:
            cached = self._plan(request)
            if len(self._plans) >= 512:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = cached
        return list(cached[0]), cached[1]

    def _plan(self, request: ProviderRequest) -> tuple[list[str], FinishReason]:
        seed = _seed(request)
        span = self.max_tokens - self.min_tokens + 1
        natural = self.min_tokens + int.from_bytes(seed[:4], "big") % span
        limit = request.max_tokens or natural
        n = min(natural, limit)
        pieces: list[str] = []
        state = seed
        for i in range(n):
            if i % 16 == 0:
                state = hashlib.sha256(state).digest()
            word = _WORDS[state[i % 16 * 2] % len(_WORDS)]
            pieces.append(word if i == 0 else " " + word)
        if n and natural <= limit:
            pieces[-1] += "."
        text = "".join(pieces)
        for stop in request.stop:
            cut = text.find(stop)
            if cut >= 0:
                return _retokenize(text[:cut]), FinishReason.STOP
        return pieces, FinishReason.STOP if natural <= limit else FinishReason.LENGTH

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        pieces, reason = self.plan(request)
        input_tokens = prompt_tokens(request.messages)
        self.streams_started += 1
        done = False
        try:
            if self.first_token_delay_s:
                await asyncio.sleep(self.first_token_delay_s)
            for i, piece in enumerate(pieces):
                if self.token_delay_s and i:
                    await asyncio.sleep(self.token_delay_s)
                self.tokens_generated += 1
                yield TextDelta(piece)
            yield UsageReport(Usage(input_tokens=input_tokens, output_tokens=len(pieces)))
            done = True
            yield Finish(reason, raw_reason=reason.value)
        finally:
            if done:
                self.streams_finished += 1
            else:
                self.streams_cancelled += 1

    async def complete(self, request: ProviderRequest) -> Completion:
        pieces, reason = self.plan(request)
        if self.first_token_delay_s or self.token_delay_s:
            await asyncio.sleep(self.first_token_delay_s + self.token_delay_s * len(pieces))
        self.tokens_generated += len(pieces)
        usage = Usage(input_tokens=prompt_tokens(request.messages), output_tokens=len(pieces))
        return Completion(text="".join(pieces), finish=Finish(reason, reason.value), usage=usage)

    async def embed(self, request: EmbedRequest) -> Embeddings:
        vectors = tuple(self._vector(text) for text in request.inputs)
        tokens = sum(count_tokens(t) for t in request.inputs)
        return Embeddings(vectors=vectors, usage=Usage(input_tokens=tokens))

    def _vector(self, text: str) -> tuple[float, ...]:
        raw = b""
        block = hashlib.sha256(text.encode()).digest()
        while len(raw) < self.embedding_dim * 4:
            raw += block
            block = hashlib.sha256(block).digest()
        ints = struct.unpack(f">{self.embedding_dim}I", raw[: self.embedding_dim * 4])
        vec = [i / 2**31 - 1.0 for i in ints]
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return tuple(v / norm for v in vec)

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        return None


def _retokenize(text: str) -> list[str]:
    return [m.group(0) for m in re.finditer(r"\s*\S+", text)]
