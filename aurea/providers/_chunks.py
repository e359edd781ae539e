"""Malformed chunks in an upstream stream: one broken chunk is skipped and counted (a log line
``upstream_chunk_skipped``), not fatal, so one bad frame does not cost the whole answer. A stream
that keeps sending them is broken: past ``MAX_SKIPPED_CHUNKS`` it ends with ``StreamBroken``.

An in-stream *error* event is not malformed: adapters raise it as the error it names.
"""

from __future__ import annotations

import structlog

from aurea.errors import StreamBroken
from aurea.providers._boundary import MalformedReply

__all__ = ["MAX_SKIPPED_CHUNKS", "SKIPPABLE", "ChunkSkipper", "MalformedChunk"]

# More malformed chunks than this in one stream: the upstream is broken, not noisy.
MAX_SKIPPED_CHUNKS = 16

log = structlog.get_logger("aurea.providers")


class MalformedChunk(StreamBroken):
    """A stream chunk that is not valid JSON, or not the JSON object its format promises
    (``parse_json(..., broken=MalformedChunk)``)."""


# What a chunk parser raises for a chunk it cannot read (never for an in-stream error event).
SKIPPABLE = (MalformedChunk, MalformedReply)


class ChunkSkipper:
    """Counts the malformed chunks of one stream; ``skip`` logs one and raises ``StreamBroken``
    once there are too many."""

    __slots__ = ("provider", "skipped")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.skipped = 0

    def skip(self, exc: BaseException) -> None:
        self.skipped += 1
        # The messages name a field and a JSON type, never the chunk's data (which may be huge
        # or quote secrets).
        log.warning(
            "upstream_chunk_skipped",
            provider=self.provider,
            error=str(exc)[:200],
            skipped=self.skipped,
        )
        if self.skipped > MAX_SKIPPED_CHUNKS:
            raise StreamBroken(
                f"{self.provider}: more than {MAX_SKIPPED_CHUNKS} malformed chunks in one stream",
                provider=self.provider,
            ) from exc
