"""Every call's ``CallRecord`` on its way to the router: the record sink the inference core calls,
and what each record teaches about each model it tried.

The sink runs synchronously at the end of every call, so it does as little as possible: it
appends five values to a bounded buffer and, when the buffer was empty, wakes the router's pump
(one wakeup per batch, not per call). The buffer is the router's second mailbox, for a message
that is only ever handled in batches; only the router drains it. A full buffer drops the record
and counts it: stats are best-effort, calls are not.

Per attempt of a call:

* the attempt that answered is a **success** for its model, with the attempt's own latency, the
  call's cost, and for a stream the time from the attempt's start to its first token;
* an attempt the upstream failed (any ``ProviderError`` but a rejection the request itself
  caused, such as a context-length or content-policy 4xx) is a **failure** for its model;
* anything else says nothing about the model and is not recorded: the caller went away, Aurea
  refused the attempt itself (breaker open, own rate limit, budget, saturation), a cache hit.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from aurea import errors as e
from aurea.stores.router_stats import Outcome

if TYPE_CHECKING:  # aurea.inference imports aurea.routing: no import cycle at run time
    from aurea.inference.calls import AttemptRecord, CallRecord

__all__ = ["MODEL_FAILURES", "ModelOutcome", "RecordInbox", "outcomes_of"]


def _reasons_of(root: type[e.AureaError], but: type[e.AureaError]) -> frozenset[str]:
    out: set[str] = set()
    todo: list[type[e.AureaError]] = [root]
    while todo:
        cls = todo.pop()
        if not issubclass(cls, but):
            out.add(cls.reason)
            todo.extend(cls.__subclasses__())
    return frozenset(out)


MODEL_FAILURES: frozenset[str] = _reasons_of(e.ProviderError, but=e.UpstreamRejected)
"""The attempt errors (``AttemptRecord.error``) that count against the model."""

STREAM = "stream"  # CallKind.STREAM's value (a StrEnum compares equal to it)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelOutcome:
    """What one attempt says about its model. ``first_token_s``: successes only, the time until
    the answer began (a stream's first token; a unary call's or embedding's whole latency)."""

    model: str
    outcome: Outcome
    first_token_s: float | None


_Item: TypeAlias = "tuple[str, float | None, float, int, Sequence[AttemptRecord]]"


class RecordInbox:
    """The record sink (``Inference(sinks=[inbox])``) and the buffer the router drains."""

    __slots__ = ("_items", "_wake", "capacity", "dropped")

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.dropped = 0  # records lost to a full buffer since start
        self._items: collections.deque[_Item] = collections.deque()
        self._wake = asyncio.Event()

    def __call__(self, record: CallRecord) -> None:
        if record.cache_hit or not record.attempts:
            return
        items = self._items
        if len(items) >= self.capacity:
            self.dropped += 1
            return
        items.append(
            (record.kind, record.ttft_s, record.latency_s, record.cost_nanos, record.attempts)
        )
        if len(items) == 1:
            self._wake.set()

    def __len__(self) -> int:
        return len(self._items)

    def poke(self) -> None:
        """Wake the pump although nothing was added (new outcomes arrived another way)."""
        self._wake.set()

    async def wait(self) -> None:
        await self._wake.wait()

    def take(self) -> list[_Item]:
        """Everything buffered, oldest first; the buffer is empty afterwards."""
        items = list(self._items)
        self._items.clear()
        self._wake.clear()
        return items


def outcomes_of(items: Iterable[_Item]) -> list[ModelOutcome]:
    """The per-model outcomes of buffered records, in order."""
    out: list[ModelOutcome] = []
    for kind, ttft_s, latency_s, cost_nanos, attempts in items:
        for a in attempts:
            if not a.error:
                first = a.latency_s
                ttft: float | None = None
                if kind == STREAM and ttft_s is not None:
                    # The call's ttft runs from the call's start; the answering attempt is the
                    # last one and ended with the call, so it started latency - a.latency in.
                    ttft = min(max(ttft_s - (latency_s - a.latency_s), 0.0), a.latency_s)
                    first = ttft
                outcome = Outcome(
                    success=True,
                    latency_s=max(a.latency_s, 0.0),
                    cost_nanos=max(cost_nanos, 0),
                    ttft_s=ttft,
                )
                out.append(ModelOutcome(model=a.model, outcome=outcome, first_token_s=first))
            elif a.error in MODEL_FAILURES:
                outcome = Outcome(success=False, latency_s=max(a.latency_s, 0.0))
                out.append(ModelOutcome(model=a.model, outcome=outcome, first_token_s=None))
    return out
