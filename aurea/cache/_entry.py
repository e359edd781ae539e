"""What the cache keeps for a generation, and how one stored form serves the other: a streamed
answer serves a unary call and a unary answer serves a stream when the answer is plain text
(tool calls and reasoning travel as their own events in a stream and as fields in a unary
answer, so those answers serve the form they were made in). An answer's reasoning blocks and its
calls' signatures are kept with it (in ``final`` and the events) and replayed on a hit, so a
cached tool-use turn can be echoed back to its provider like a fresh one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from aurea.inference.calls import Delta, FallbackEvent, Final, GenEvent, Started, UsageUpdate
from aurea.providers._base import FinishReason

__all__ = ["STORABLE", "Answer", "answer_events", "is_content"]

# Answers worth keeping: whole ones. A budget cut, a content filter or an upstream error is
# this call's fate, not the answer to the request.
STORABLE = frozenset({FinishReason.STOP, FinishReason.LENGTH, FinishReason.TOOL_CALLS})
_PIECE = 512  # characters per replayed text delta
# Final's fields that every answer fills; any other field set away from its default (tool
# calls, reasoning, whatever is added later) makes an answer more than plain text.
_BASE = frozenset({
    "finish_reason", "usage", "cost_nanos", "latency_s", "ttft_s", "model", "provider",
    "attempts", "route_reason", "text",
})  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A generation as the cache keeps it. ``final`` carries the usage and cost the upstream
    call reported (what a hit saves). ``events`` is the streamed form (text, tool-call and
    reasoning deltas, in order) or None for a unary answer, whose ``final`` is whole."""

    final: Final
    events: tuple[GenEvent, ...] | None = None

    def unary(self) -> Final | None:
        """The answer as a unary call returns it, or None when this form cannot serve one."""
        if self.events is None:
            return self.final
        if not _plain(self.final) or any(type(ev) is not Delta for ev in self.events):
            return None
        text = "".join(ev.text for ev in self.events if isinstance(ev, Delta))
        return dataclasses.replace(self.final, text=text)

    def stream(self) -> tuple[GenEvent, ...] | None:
        """The answer's stream events, or None when this form cannot serve a stream."""
        if self.events is not None:
            return self.events
        if not _plain(self.final):
            return None
        text = self.final.text
        return tuple(Delta(text[i : i + _PIECE]) for i in range(0, len(text), _PIECE))


def _plain(final: Final) -> bool:
    for f in dataclasses.fields(final):
        if f.name in _BASE:
            continue
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        if getattr(final, f.name) != default:
            return False
    return True


def is_content(ev: GenEvent) -> bool:
    """Part of the answer itself: not the stream's bookkeeping (start, usage, fallback, end)."""
    t = type(ev)
    return t is not Started and t is not UsageUpdate and t is not FallbackEvent and t is not Final


def answer_events(events: list[GenEvent]) -> tuple[GenEvent, ...] | None:
    """The content events of a streamed answer, text merged into pieces, or None when the
    answer is not one model's alone (a fallback after output began: continued or restarted)."""
    out: list[GenEvent] = []
    output = False
    for ev in events:
        t = type(ev)
        if t is FallbackEvent:
            if output:
                return None
            continue
        if not is_content(ev):
            continue
        output = True
        if t is Delta and out and type(out[-1]) is Delta:
            last = out[-1]
            assert isinstance(last, Delta) and isinstance(ev, Delta)
            if len(last.text) < _PIECE:
                out[-1] = Delta(last.text + ev.text)
                continue
        out.append(ev)
    return tuple(out)
