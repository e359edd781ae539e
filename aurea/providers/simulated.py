"""The built-in ``simulated`` provider: deterministic text derived from the prompt, streamed
token by token with a configurable delay, with exact token counts. Needs no network or keys.

Options (``[providers.NAME.options]``): ``token_delay_ms`` (default 20), ``first_token_delay_ms``
(default 0), ``min_tokens``/``max_tokens`` (length range of a natural answer, default 12..48),
``embedding_dim`` (default 64).

Plans (the answer a request produces) are cached under a SHA-256 of the request, never the
prompt itself, within ``PLAN_CACHE_BYTES``; a large prompt is hashed and counted on a worker
thread.

Rich generation, deterministically: a request that offers tools (and does not forbid calls, or
end with tool results) is answered with tool calls, one (the named tool, else one picked by the
seed) or, with ``parallel_tool_calls`` true, one per tool (at most 4), each with arguments valid
against its parameters (``_schema.instance``) streamed in token-sized pieces; a JSON response
format is answered with JSON text (schema-valid for JSON_SCHEMA); a reasoning effort adds one
reasoning sentence first. Images count 85 tokens each and are otherwise not looked at.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import math
import re
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aurea.providers._base import (
    ChatMessage,
    Completion,
    Embeddings,
    EmbedRequest,
    Finish,
    FinishReason,
    ImagePart,
    ProviderEvent,
    ProviderRequest,
    ProviderSpec,
    ReasoningDelta,
    ResponseFormatType,
    Role,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolChoiceMode,
    Usage,
    UsageReport,
)
from aurea.providers._boundary import check_options
from aurea.providers._schema import instance
from aurea.providers._tokens import INLINE_LIMIT_CHARS

OPTIONS = frozenset(
    {"token_delay_ms", "first_token_delay_ms", "min_tokens", "max_tokens", "embedding_dim"}
)
# The plan cache's budget: what its entries hold (pieces, keys, bookkeeping), estimated.
PLAN_CACHE_BYTES = 1 << 20
_ENTRY_OVERHEAD = 200  # a key digest, the dict slot, the _Plan object
_PIECE_OVERHEAD = 56  # a small str object

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORDS = (
    "the", "model", "stream", "token", "aurea", "router", "budget", "quietly", "answers",
    "every", "request", "with", "care", "and", "measured", "latency", "while", "providers",
    "rest", "signal", "ledger", "light", "river", "across", "open", "circuit", "cache", "warm",
    "a", "small", "deterministic", "reply", "for", "you", "today", "gold", "steady", "clear",
)  # fmt: skip


def count_tokens(text: str) -> int:
    """The simulated tokenizer: words and punctuation marks each count as one token."""
    return sum(1 for _ in _TOKEN_RE.finditer(text))  # no list of a million words


_IMAGE_TOKENS = 85
_MAX_PARALLEL = 4
_PIECE_RE = re.compile(r"\s*(?:\w+|[^\w\s])")  # one simulated token, with its leading space
_THOUGHT = "Considering what the request asks for."


def prompt_tokens(messages: tuple[ChatMessage, ...]) -> int:
    # Each message costs its content plus 3 tokens of framing, like chat templates do.
    total = sum(count_tokens(m.content) + 3 for m in messages) + 1
    for m in messages:
        if m.parts or m.tool_calls:
            total += _IMAGE_TOKENS * len(m.images)
            total += sum(count_tokens(c.name + " " + c.arguments) for c in m.tool_calls)
    return total


def _rich_tokens(request: ProviderRequest) -> int:
    total = sum(
        count_tokens(f"{t.name} {t.description} {json.dumps(t.parameters)}") for t in request.tools
    )
    fmt = request.response_format
    if fmt is not None and fmt.schema is not None:
        total += count_tokens(json.dumps(fmt.schema))
    return total


def _seed(request: ProviderRequest) -> bytes:
    """A digest of the model and the conversation: every message's text, content parts (an
    image by its URL or its bytes' digest), tool calls and the call a tool result answers."""
    h = hashlib.sha256(request.model.encode())
    for m in request.messages:
        h.update(m.role.encode() + b"\0" + m.content.encode() + b"\0")
        for part in m.parts:
            if isinstance(part, ImagePart):
                image = part.url.encode() or hashlib.sha256(part.data).digest()
                h.update(b"\1image\0" + image + part.media_type.encode() + b"\0")
            else:
                h.update(b"\1text\0" + part.text.encode() + b"\0")
        for c in m.tool_calls:
            h.update(f"{c.id}\0{c.name}\0{c.arguments}\0".encode())
        if m.tool_call_id:
            h.update(b"\1answers\0" + m.tool_call_id.encode() + b"\0")
    if request.seed is not None:
        h.update(str(request.seed).encode())
    return h.digest()


def _cache_key(seed: bytes, request: ProviderRequest) -> bytes:
    """A digest of everything a plan depends on (the seed already covers model and messages)."""
    h = hashlib.sha256(seed)
    h.update(repr(request.max_tokens).encode())
    for stop in request.stop:
        h.update(b"\0" + stop.encode())
    if request.options is not None:
        h.update(repr(request.options).encode())
    return h.digest()


def _token_pieces(text: str) -> list[str]:
    """``text`` cut into simulated tokens (joined, they are ``text`` again but for trailing
    whitespace, which JSON never has)."""
    return [m.group(0) for m in _PIECE_RE.finditer(text)]


def _prompt_chars(request: ProviderRequest) -> int:
    parts = sum(
        len(p.text) if isinstance(p, TextPart) else len(p.data)
        for m in request.messages
        for p in m.parts
    )
    return sum(len(m.content) for m in request.messages) + parts + sum(len(s) for s in request.stop)


@dataclass(frozen=True, slots=True)
class _Plan:
    pieces: tuple[str, ...]
    reason: FinishReason
    input_tokens: int
    size: int  # estimated bytes held by this cache entry
    calls: tuple[tuple[ToolCall, tuple[str, ...]], ...] = ()  # each call, its argument pieces
    thought: str = ""

    @property
    def output_tokens(self) -> int:
        n = len(self.pieces) + sum(1 + len(p) for _, p in self.calls)
        return n + (count_tokens(self.thought) if self.thought else 0)


class SimulatedProvider:
    """A Provider whose output is a pure function of (model, messages, seed)."""

    def __init__(self, spec: ProviderSpec) -> None:
        check_options(spec, OPTIONS)
        self.name = spec.name
        opts = spec.options
        self.token_delay_s = float(opts.get("token_delay_ms", 20)) / 1000.0
        self.first_token_delay_s = float(opts.get("first_token_delay_ms", 0)) / 1000.0
        self.min_tokens = int(opts.get("min_tokens", 12))
        self.max_tokens = max(self.min_tokens, int(opts.get("max_tokens", 48)))
        self.embedding_dim = int(opts.get("embedding_dim", 64))
        self._plans: collections.OrderedDict[bytes, _Plan] = collections.OrderedDict()
        self.plan_cache_bytes = 0  # the estimated size of what the plan cache holds
        # Observable work counters (tests read them to see cancellation stop the work).
        self.streams_started = 0
        self.streams_finished = 0
        self.streams_cancelled = 0
        self.tokens_generated = 0

    def plan(self, request: ProviderRequest) -> tuple[list[str], FinishReason]:
        """The pieces (one token each) this request produces, and why it stops."""
        seed = _seed(request)
        key = _cache_key(seed, request)
        found = self._lookup(key) or self._remember(key, self._make(request, seed))
        return list(found.pieces), found.reason

    async def _plan_for(self, request: ProviderRequest) -> _Plan:
        if _prompt_chars(request) < INLINE_LIMIT_CHARS:
            seed = _seed(request)
            key = _cache_key(seed, request)
            return self._lookup(key) or self._remember(key, self._make(request, seed))
        # Hashing and counting megabytes would stall every other call: do that on a thread, and
        # touch the cache only here, on the loop.
        seed = await asyncio.to_thread(_seed, request)
        key = _cache_key(seed, request)
        found = self._lookup(key)
        if found is None:
            found = self._remember(key, await asyncio.to_thread(self._make, request, seed))
        return found

    def _lookup(self, key: bytes) -> _Plan | None:
        found = self._plans.get(key)
        if found is not None:
            self._plans.move_to_end(key)
        return found

    def _remember(self, key: bytes, plan: _Plan) -> _Plan:
        if key not in self._plans and plan.size <= PLAN_CACHE_BYTES:
            self._plans[key] = plan
            self.plan_cache_bytes += plan.size
            while self.plan_cache_bytes > PLAN_CACHE_BYTES:
                _, evicted = self._plans.popitem(last=False)
                self.plan_cache_bytes -= evicted.size
        return plan

    def _make(self, request: ProviderRequest, seed: bytes) -> _Plan:
        if request.rich:
            return self._make_rich(request, seed)
        pieces, reason = self._plan(request, seed)
        size = _ENTRY_OVERHEAD + sum(len(p) + _PIECE_OVERHEAD for p in pieces)
        return _Plan(tuple(pieces), reason, prompt_tokens(request.messages), size)

    def _make_rich(self, request: ProviderRequest, seed: bytes) -> _Plan:
        input_tokens = prompt_tokens(request.messages) + _rich_tokens(request)
        thought = _THOUGHT if request.reasoning is not None else ""
        calls = self._calls(request, seed)
        if calls:
            pieces: list[str] = []
            reason = FinishReason.TOOL_CALLS
        else:
            pieces, reason = self._json(request, seed) or self._plan(request, seed)
        size = _ENTRY_OVERHEAD + sum(len(p) + _PIECE_OVERHEAD for p in pieces)
        size += sum(len(c.arguments) * 2 + _PIECE_OVERHEAD * len(p) for c, p in calls)
        return _Plan(tuple(pieces), reason, input_tokens, size, calls, thought)

    def _calls(
        self, request: ProviderRequest, seed: bytes
    ) -> tuple[tuple[ToolCall, tuple[str, ...]], ...]:
        tools = request.tools
        choice = request.tool_choice
        last = request.messages[-1] if request.messages else None
        if (
            not tools
            or (choice is not None and choice.mode is ToolChoiceMode.NONE)
            or (last is not None and last.role is Role.TOOL)
        ):
            return ()
        if choice is not None and choice.mode is ToolChoiceMode.TOOL:
            chosen = [t for t in tools if t.name == choice.name][:1]
        elif request.parallel_tool_calls:
            chosen = list(tools[:_MAX_PARALLEL])
        else:
            chosen = [tools[seed[0] % len(tools)]]
        out = []
        for i, tool in enumerate(chosen):
            digest = hashlib.sha256(seed + bytes([i])).digest()
            arguments = json.dumps(instance(tool.parameters, digest))
            call = ToolCall(id=f"call_{digest.hex()[:24]}", name=tool.name, arguments=arguments)
            out.append((call, tuple(_token_pieces(arguments))))
        return tuple(out)

    def _json(self, request: ProviderRequest, seed: bytes) -> tuple[list[str], FinishReason] | None:
        fmt = request.response_format
        if fmt is None or fmt.type is ResponseFormatType.TEXT:
            return None
        if fmt.type is ResponseFormatType.JSON_SCHEMA and fmt.schema is not None:
            text = json.dumps(instance(fmt.schema, seed))
        else:
            words, _ = self._plan(request, seed)
            text = json.dumps({"answer": "".join(words).strip()})
        pieces = _token_pieces(text)
        limit = request.max_tokens
        if limit is not None and len(pieces) > limit:
            return pieces[:limit], FinishReason.LENGTH  # cut JSON, as a real model's would be
        return pieces, FinishReason.STOP

    def _plan(self, request: ProviderRequest, seed: bytes) -> tuple[list[str], FinishReason]:
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
        plan = await self._plan_for(request)
        self.streams_started += 1
        done = False
        try:
            if self.first_token_delay_s:
                await asyncio.sleep(self.first_token_delay_s)
            if plan.thought:
                yield ReasoningDelta(plan.thought)
            for i, piece in enumerate(plan.pieces):
                if self.token_delay_s and i:
                    await asyncio.sleep(self.token_delay_s)
                self.tokens_generated += 1
                yield TextDelta(piece)
            for index, (call, pieces) in enumerate(plan.calls):
                yield ToolCallDelta(index=index, id=call.id, name=call.name)
                for piece in pieces:
                    if self.token_delay_s:
                        await asyncio.sleep(self.token_delay_s)
                    self.tokens_generated += 1
                    yield ToolCallDelta(index=index, arguments=piece)
            usage = Usage(input_tokens=plan.input_tokens, output_tokens=plan.output_tokens)
            yield UsageReport(usage)
            done = True
            yield Finish(plan.reason, raw_reason=plan.reason.value)
        finally:
            if done:
                self.streams_finished += 1
            else:
                self.streams_cancelled += 1

    async def complete(self, request: ProviderRequest) -> Completion:
        plan = await self._plan_for(request)
        pieces = plan.pieces
        output = plan.output_tokens
        if self.first_token_delay_s or self.token_delay_s:
            await asyncio.sleep(self.first_token_delay_s + self.token_delay_s * output)
        self.tokens_generated += output
        usage = Usage(input_tokens=plan.input_tokens, output_tokens=output)
        reason = plan.reason
        return Completion(
            text="".join(pieces),
            finish=Finish(reason, reason.value),
            usage=usage,
            tool_calls=tuple(call for call, _ in plan.calls),
            reasoning=plan.thought,
        )

    async def embed(self, request: EmbedRequest) -> Embeddings:
        if sum(len(t) for t in request.inputs) >= INLINE_LIMIT_CHARS:
            return await asyncio.to_thread(self._embeddings, request)
        return self._embeddings(request)

    def _embeddings(self, request: EmbedRequest) -> Embeddings:
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
