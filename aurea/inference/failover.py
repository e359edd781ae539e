"""Mid-stream failover: what a stream does when its upstream breaks or stalls after output has
reached the client and another candidate remains.

Per the call's ``FailoverMode``: a candidate whose catalog says ``accepts_prefill`` gets the
original messages plus the partial answer as a trailing assistant message and continues the same
client stream (a ``fallback`` event with ``restart`` false says so; the deltas just go on); else,
when restarts are allowed, a ``fallback`` event with ``restart`` true tells the client to discard
the partial text and the candidate answers from the start; else the call ends with the error that
cut the stream. A candidate that refuses the prefill is restarted at once when restarts are
allowed, else passed over; its refusal never becomes the call's error. What the abandoned
attempts cost was paid for: it is added to the call's usage and cost.

Tool calls: no provider continues a half-made tool call, and none takes tool calls as a
prefill. So once a piece of a tool call has reached the client (``tools_held``), the answer is
never continued: it is restarted on the next candidate when the request allows restarts (the
``fallback`` event's ``restart`` tells the client to discard the text *and* the tool calls it
holds, and the new answer's calls are numbered from 0 again), else the call ends with the error
that cut it. Either way no tool call reaches the client twice, and none is lost: the ``final``
event lists exactly the calls of the answer that finished.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aurea.actors.router import Candidate
from aurea.errors import AureaError, ProviderError, Unavailable, UpstreamRejected
from aurea.inference.attempts import Attempt
from aurea.inference.calls import CallRecord, FailoverMode, FallbackEvent
from aurea.inference.classify import Action
from aurea.providers._base import Usage

__all__ = ["MidStream", "add_usage"]


def add_usage(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        cached_input_tokens=a.cached_input_tokens + b.cached_input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        reasoning_tokens=a.reasoning_tokens + b.reasoning_tokens,
        estimated=a.estimated or b.estimated,
    )


class MidStream:
    """One stream's failover state, and the ``Failover`` hooks the attempt loop calls.

    ``held`` is the text of the current answer the client holds (since the last restart);
    ``spent`` / ``spent_nanos`` what abandoned attempts that produced output cost.
    """

    __slots__ = (
        "_emit",
        "_restart_next",
        "cut",
        "held",
        "mode",
        "no_prefill",
        "record",
        "spent",
        "spent_nanos",
        "tools_held",
    )

    def __init__(
        self,
        mode: FailoverMode,
        record: CallRecord,
        emit: Callable[[FallbackEvent], Awaitable[None]],
    ) -> None:
        self.mode = mode
        self.record = record
        self._emit = emit
        self.held: list[str] = []
        self.tools_held = False  # the client holds pieces of tool calls of the current answer
        self.cut: AureaError | None = None
        self.no_prefill: set[str] = set()
        self.spent: Usage | None = None
        self.spent_nanos = 0
        self._restart_next = False

    # -- what the body asks ------------------------------------------------------------------

    def prefill(self) -> str:
        """The partial answer to send as a prefill ("" for a fresh answer). Trailing whitespace
        is left out (some APIs refuse it); the body drops the continuation's leading
        whitespace instead."""
        if self.tools_held:
            return ""  # never reached: ``accepts`` restarts an answer with tool calls
        return "".join(self.held).rstrip() if self.held else ""

    def spend(self, usage: Usage, cost_nanos: int) -> None:
        """An attempt that produced output ended without finishing: its spend is the call's."""
        self.spent = usage if self.spent is None else add_usage(self.spent, usage)
        self.spent_nanos += cost_nanos

    def total(self, usage: Usage, cost_nanos: int) -> tuple[Usage, int]:
        """The call's usage and cost so far: abandoned attempts' plus ``usage``."""
        if self.spent is None:
            return usage, cost_nanos
        return add_usage(self.spent, usage), self.spent_nanos + cost_nanos

    def shape(self, ev: FallbackEvent) -> FallbackEvent:
        """The fallback event as the client must read it: a restart discards the held text."""
        if not self._restart_next:
            return ev
        self._restart_next = False
        self.held.clear()
        self.tools_held = False
        return FallbackEvent(
            from_model=ev.from_model,
            to_model=ev.to_model,
            to_provider=ev.to_provider,
            cause=ev.cause,
            message=ev.message,
            attempt=ev.attempt,
            restart=True,
        )

    # -- the Failover hooks -----------------------------------------------------------------

    def accepts(self, cand: Candidate) -> bool:
        if not self.held and not self.tools_held:
            return True  # nothing to continue: a fresh answer, as before any output
        model = cand.model
        if (
            self.mode.continues
            and not self.tools_held
            and model.accepts_prefill
            and model.name not in self.no_prefill
        ):
            return True
        if self.mode.restarts:
            self._restart_next = True
            return True
        return False

    async def on_error(
        self, err: AureaError, action: Action, attempt: Attempt, cand: Candidate
    ) -> Action:
        if attempt.committed:
            # Output reached the client: move the answer on only for an upstream failure.
            if self.mode is FailoverMode.NONE or action is Action.FAIL:
                return Action.FAIL
            if not isinstance(err, ProviderError):
                return Action.FAIL
            self.cut = err
            return Action.NEXT
        if attempt.prefilled and isinstance(err, UpstreamRejected):
            # The candidate refused the prefill: never the call's error.
            self.no_prefill.add(cand.model.name)
            if not self.mode.restarts:
                return Action.NEXT
            model = cand.model
            self.record.fallbacks += 1
            self.held.clear()
            self.tools_held = False
            await self._emit(
                FallbackEvent(
                    from_model=model.name,
                    to_model=model.name,
                    to_provider=model.provider,
                    cause=err.reason,
                    message=f"the prefill was refused; restarting: {err.message}",
                    attempt=attempt.number + 1,
                    restart=True,
                )
            )
            return Action.AGAIN
        return action

    def final(self, err: AureaError) -> AureaError:
        """While the client holds part of an answer, the call ends with what cut it, whatever
        the fallbacks then failed with (a refused prefill above all)."""
        cut = self.cut
        if cut is None or not (self.held or self.tools_held) or cut is err:
            return err
        if not isinstance(err, ProviderError | Unavailable):
            return err  # the call's own limits (budget, deadline) say more
        cut.message = f"{cut.message}; no fallback could take over ({err.reason}: {err.message})"
        cut.args = (cut.message,)
        return cut
