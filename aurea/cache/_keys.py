"""What a cache entry is filed under: its kind, its namespace (the tenant), the model that
answered, and the SHA-256 of everything else that changes the answer.

Redis layout (written down in README): ``{prefix}:cache:{kind}:{namespace}:{model}:{{digest}}``,
namespace and model percent-encoded so they hold no ``:``, glob character or brace. The hash tag
is the digest: entries spread evenly over a Redis Cluster's slots, and anything later kept beside
an entry (a lock, an index) can share its slot by reusing the tag.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aurea.cache._codec import digest, field_names
from aurea.inference.calls import EmbedCall, GenerateCall

__all__ = [
    "EMBED_IGNORED",
    "GENERATE_IGNORED",
    "CacheKey",
    "CacheKind",
    "KeyFilter",
    "embed_key",
    "generate_key",
]

_VERSION = "v1"  # part of every digest: a change in what a key covers makes old entries misses

# Fields of a call that never change its answer: who asks, who pays, how long they wait, how
# the answer travels, and how the model was asked for (the resolved model stands for those).
# Everything else, including any field added later, is part of the key.
GENERATE_IGNORED = frozenset({
    "request_id",
    "deadline",
    "labels",
    "job_id",
    "principal",
    "cache_bypass",
    "usage_interval",
    "failover",
    "model",
    "policy",
    "fallbacks",
})  # fmt: skip
EMBED_IGNORED = frozenset({"request_id", "deadline", "labels", "job_id", "principal", "model"})


class CacheKind(enum.StrEnum):
    LLM = "llm"  # generations (unary and streamed answers share entries)
    EMBEDDING = "embedding"


@dataclass(frozen=True, slots=True)
class CacheKey:
    kind: CacheKind
    namespace: str  # "" for calls without an API key (open mode, in-process)
    model: str  # the catalog model that answers (or a decorated function's name)
    digest: str  # SHA-256 hex of everything else that changes the answer

    def redis(self, prefix: str) -> str:
        return (
            f"{prefix}:cache:{self.kind.value}:{_part(self.namespace)}:{_part(self.model)}"
            f":{{{self.digest}}}"
        )


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """Which entries an operation touches (None: any)."""

    kind: CacheKind | None = None
    namespace: str | None = None
    model: str | None = None

    def matches(self, key: CacheKey) -> bool:
        return (
            (self.kind is None or key.kind is self.kind)
            and (self.namespace is None or key.namespace == self.namespace)
            and (self.model is None or key.model == self.model)
        )

    def pattern(self, prefix: str) -> str:
        """The ``SCAN MATCH`` glob of the matching Redis keys."""
        kind = self.kind.value if self.kind is not None else "*"
        ns = _part(self.namespace) if self.namespace is not None else "*"
        model = _part(self.model) if self.model is not None else "*"
        return f"{prefix}:cache:{kind}:{ns}:{model}:{{*}}"


def _part(text: str) -> str:
    # Letters, digits and "_.-~" stay; everything else (":", "*", "?", "[", "{", "%", ...) is
    # percent-encoded, so a part can neither split a key nor act as a glob or a hash tag.
    return quote(text, safe="")


def _fields(call: Any, ignored: frozenset[str]) -> dict[str, Any]:
    names = field_names(type(call)) or ()
    return {name: getattr(call, name) for name in names if name not in ignored}


def generate_key(call: GenerateCall, namespace: str, model: str) -> CacheKey:
    """The key of ``model``'s answer to ``call``."""
    d = digest(_VERSION, CacheKind.LLM.value, model, _fields(call, GENERATE_IGNORED))
    return CacheKey(CacheKind.LLM, namespace, model, d)


def embed_key(call: EmbedCall, namespace: str, model: str) -> CacheKey:
    """The key of ``model``'s vectors for ``call``'s inputs."""
    d = digest(_VERSION, CacheKind.EMBEDDING.value, model, _fields(call, EMBED_IGNORED))
    return CacheKey(CacheKind.EMBEDDING, namespace, model, d)
