"""The body of a streaming attempt: relay the adapter's events as they come (``started`` once,
text, tool-call and reasoning deltas, periodic usage estimates), hold the upstream to its
time-to-first-token, stall and total limits, let the permits observe usage, continue or restart
an answer another candidate broke off (``failover.MidStream``), and never end a cut stream as a
success. Tool-call pieces are relayed as they come and assembled for ``final``; once one has
reached the client the answer can only be restarted, never continued (see ``failover``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from aurea.actors.router import Candidate
from aurea.config import ModelSpec
from aurea.errors import AureaError, BudgetExceeded, StreamBroken
from aurea.inference._common import Emit, mapped, provider_request, settle
from aurea.inference.attempts import Attempt
from aurea.inference.calls import (
    CallRecord,
    Delta,
    FallbackEvent,
    Final,
    GenerateCall,
    Started,
    UsageUpdate,
)
from aurea.inference.deadlines import Deadlines, Watchdog
from aurea.inference.failover import MidStream
from aurea.inference.rich import ToolCalls
from aurea.pricing import MICRO, cost_nanos
from aurea.providers._base import (
    ChatMessage,
    Finish,
    FinishReason,
    ReasoningBlock,
    ReasoningDelta,
    Role,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReport,
)
from aurea.providers._tokens import (
    estimate_chars,
    estimate_messages_tokens_async,
    estimate_text_tokens,
    estimate_text_tokens_async,
    extra_tokens,
)

log = structlog.get_logger("aurea.inference")


class StreamRun:
    """The per-call state of one stream: whether ``started`` went out, the failover state."""

    __slots__ = (
        "_clock",
        "_deadlines",
        "call",
        "emit",
        "input_tokens",
        "mid",
        "record",
        "started",
        "t0",
    )

    def __init__(
        self,
        call: GenerateCall,
        emit: Emit,
        record: CallRecord,
        t0: float,
        clock: Callable[[], float],
        deadlines: Deadlines,
    ) -> None:
        self._clock = clock
        self._deadlines = deadlines
        self.call = call
        self.emit = emit
        self.record = record
        self.t0 = t0
        self.started = False
        self.input_tokens = -1  # counted only when an estimate is needed
        self.mid = MidStream(call.failover, record, self._emit_fallback)

    async def _start(self, cand: Candidate) -> None:
        # Sent once the first candidate is admitted (or has failed over), so a call refused by
        # its guards before anything happened ends with a clean status and no events.
        if not self.started:
            self.started = True
            await self.emit(
                Started(
                    request_id=self.call.request_id,
                    model=cand.model.name,
                    provider=cand.model.provider,
                    attempt=1,
                    reason=cand.reason,
                )
            )

    async def on_fallback(self, ev: FallbackEvent) -> None:
        if not self.started:
            self.started = True
            await self.emit(
                Started(
                    request_id=self.call.request_id,
                    model=ev.from_model,
                    provider=self.record.provider,
                    attempt=1,
                    reason="",
                )
            )
        await self.emit(self.mid.shape(ev))

    async def _emit_fallback(self, ev: FallbackEvent) -> None:
        await self.emit(ev)

    async def _input(self, upstream: str, prefill: str) -> int:
        if self.input_tokens < 0:
            call = self.call
            self.input_tokens = await estimate_messages_tokens_async(
                call.messages, upstream
            ) + extra_tokens(call.tools, call.response_format, upstream)
        if prefill:
            return self.input_tokens + await estimate_text_tokens_async(prefill, upstream)
        return self.input_tokens

    def _estimate_now(
        self, upstream: str, out: list[str], prefill: str, tools: ToolCalls, thoughts: list[str]
    ) -> Usage:
        """A usage estimate without awaiting (for error and cancel paths)."""
        if self.input_tokens >= 0:
            input_tokens = self.input_tokens
        else:
            input_tokens = sum(estimate_chars(m.content) for m in self.call.messages)
        output = "".join(out)
        if tools or thoughts:
            output += tools.text() + "".join(thoughts)
        return Usage(
            input_tokens=input_tokens + (estimate_chars(prefill) if prefill else 0),
            output_tokens=estimate_text_tokens(output, upstream),
            estimated=True,
        )

    async def body(self, cand: Candidate, attempt: Attempt) -> Final:
        await self._start(cand)
        call, emit, clock, mid = self.call, self.emit, self._clock, self.mid
        model = cand.model
        limits = self._deadlines.of(model)
        request = provider_request(call, cand, limits)
        prefill = mid.prefill()
        trim = False
        if prefill:
            attempt.prefilled = True
            messages = (*call.messages, ChatMessage(Role.ASSISTANT, prefill))
            request = provider_request(call, cand, limits, messages)
            # The client holds whitespace the prefill left out: the continuation's own leading
            # whitespace would double it.
            trim = "".join(mid.held) != prefill
        watch = Watchdog(limits, model.provider)
        events = attempt.adapter.stream(request)
        loop_time = asyncio.get_running_loop().time
        usage: Usage | None = None
        finish: Finish | None = None
        deltas = 0
        chars = 0
        interval = call.usage_interval
        out: list[str] = []
        tools = ToolCalls()  # the tool calls relayed so far
        thoughts: list[str] = []  # reasoning relayed so far
        blocks: list[ReasoningBlock] = []  # the answer's opaque reasoning blocks (final only)
        input_tokens = 0
        try:
            while True:
                watch.since = loop_time()
                watch.waiting = True
                try:
                    ev = await anext(events)
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError as exc:
                    expired = watch.expired()
                    if expired is None:
                        raise
                    raise expired from exc
                except BaseException as exc:
                    raise mapped(model.provider, exc) from exc
                finally:
                    watch.waiting = False
                if type(ev) is TextDelta:
                    text = ev.text
                    if trim:
                        text = text.lstrip()
                        if not text:
                            continue
                        trim = False
                    if not deltas:
                        watch.first = False
                        if self.record.ttft_s is None:  # the first token the client saw
                            self.record.ttft_s = clock() - self.t0
                        attempt.committed = True
                        input_tokens = await self._input(model.upstream, prefill)
                    deltas += 1
                    chars += len(text)
                    out.append(text)
                    # Permits see every delta's estimated spend (a local check, no ask): a
                    # ledger permit stops the stream here when the job's budget runs out.
                    tokens = max(deltas, chars // 4)
                    est = Usage(input_tokens=input_tokens, output_tokens=tokens, estimated=True)
                    try:
                        attempt.observe(est, estimate_cost(model, input_tokens, tokens))
                    except BudgetExceeded:
                        finish = Finish(FinishReason.BUDGET_EXCEEDED, "budget")
                        break  # the delta that would cross the budget is not sent
                    await emit(Delta(text))
                    if interval and deltas % interval == 0:
                        # Adapters send about a token per delta; the permits above were shown
                        # the more cautious of that and a characters-based count.
                        shown = Usage(
                            input_tokens=input_tokens, output_tokens=deltas, estimated=True
                        )
                        shown, shown_cost = mid.total(shown, cost_nanos(model, shown))
                        await emit(UsageUpdate(usage=shown, cost_nanos=shown_cost))
                elif type(ev) is UsageReport:
                    usage = ev.usage
                    try:
                        attempt.observe(usage, cost_nanos(model, usage))
                    except BudgetExceeded:
                        if attempt.committed:
                            finish = Finish(FinishReason.BUDGET_EXCEEDED, "budget")
                            break
                        raise
                elif type(ev) is Finish:
                    finish = ev
                elif type(ev) is ReasoningBlock:
                    blocks.append(ev)  # no event: the client receives them in ``final``
                elif type(ev) is ToolCallDelta or type(ev) is ReasoningDelta:
                    if not deltas:
                        watch.first = False
                        if self.record.ttft_s is None:
                            self.record.ttft_s = clock() - self.t0
                        attempt.committed = True
                        input_tokens = await self._input(model.upstream, prefill)
                    deltas += 1
                    if isinstance(ev, ToolCallDelta):
                        chars += len(ev.name) + len(ev.arguments)
                        tools.add(ev)
                    else:
                        chars += len(ev.text)
                        thoughts.append(ev.text)
                    tokens = max(deltas, chars // 4)
                    est = Usage(input_tokens=input_tokens, output_tokens=tokens, estimated=True)
                    try:
                        attempt.observe(est, estimate_cost(model, input_tokens, tokens))
                    except BudgetExceeded:
                        finish = Finish(FinishReason.BUDGET_EXCEEDED, "budget")
                        break
                    await emit(ev)
                    if interval and deltas % interval == 0:
                        shown = Usage(
                            input_tokens=input_tokens, output_tokens=deltas, estimated=True
                        )
                        shown, shown_cost = mid.total(shown, cost_nanos(model, shown))
                        await emit(UsageUpdate(usage=shown, cost_nanos=shown_cost))
            if finish is None:
                raise StreamBroken(
                    f"provider {model.provider} ended the stream without finishing",
                    provider=model.provider,
                )
        except AureaError:
            if attempt.committed:
                # Output has begun: count what was spent (a fallback may still take over).
                spent = usage or self._estimate_now(model.upstream, out, prefill, tools, thoughts)
                cost = cost_nanos(model, spent)
                _observe_final(attempt, spent, cost)
                mid.spend(spent, cost)
                mid.held.extend(out)
                if tools:
                    mid.tools_held = True
                total, total_cost = mid.total(Usage(), 0)
                self.record.usage, self.record.cost_nanos = total, total_cost
                await emit(UsageUpdate(usage=total, cost_nanos=total_cost))
            raise
        except BaseException:
            if attempt.committed:  # the caller left mid-stream: still count what was spent
                spent = usage or self._estimate_now(model.upstream, out, prefill, tools, thoughts)
                cost = cost_nanos(model, spent)
                _observe_final(attempt, spent, cost)
                mid.spend(spent, cost)
                self.record.usage, self.record.cost_nanos = mid.total(Usage(), 0)
            raise
        finally:
            watch.close()
            try:
                await events.aclose()  # type: ignore[attr-defined]
            except Exception as exc:  # closing must not hide the call's own outcome
                log.warning("adapter_close_failed", provider=model.provider, error=repr(exc))
        if finish.reason is FinishReason.BUDGET_EXCEEDED:
            # Stopped by Aurea: the upstream's own count (if any) covers more than was relayed,
            # and it is what was paid for, so it is what is charged.
            usage = usage or Usage(
                input_tokens=input_tokens,
                output_tokens=max(deltas, chars // 4),
                estimated=True,
            )
        elif usage is None:
            output = "".join(out)
            reasoning = 0
            if tools or thoughts:
                output += tools.text() + "".join(thoughts)
                reasoning = await estimate_text_tokens_async("".join(thoughts), model.upstream)
            usage = Usage(
                input_tokens=await self._input(model.upstream, prefill),
                output_tokens=await estimate_text_tokens_async(output, model.upstream),
                reasoning_tokens=reasoning,
                estimated=True,
            )
        reason = finish.reason
        calls: tuple[ToolCall, ...] = ()
        if tools:
            calls = tools.calls()
            if reason is FinishReason.STOP:
                reason = FinishReason.TOOL_CALLS  # (Gemini says STOP after calls)
        cost = cost_nanos(model, usage)
        _observe_final(attempt, usage, cost)
        total, total_cost = mid.total(usage, cost)
        final = Final(
            finish_reason=reason,
            usage=total,
            cost_nanos=total_cost,
            latency_s=clock() - self.t0,
            ttft_s=self.record.ttft_s if self.record.ttft_s is not None else clock() - self.t0,
            model=model.name,
            provider=model.provider,
            attempts=attempt.number,
            route_reason=cand.reason,
            tool_calls=calls,
            reasoning_blocks=tuple(blocks),
        )
        settle(self.record, final)
        return final


def _observe_final(attempt: Attempt, usage: Usage, cost: int) -> None:
    """The attempt's last word on spend: permits settle from it, so a permit's refusal here
    (the budget is already crossed) must not lose it or fail a finished answer."""
    for p in attempt.permits:
        with contextlib.suppress(BudgetExceeded):
            p.observe(usage, cost)


def estimate_cost(model: ModelSpec, input_tokens: int, output_tokens: int) -> int:
    """``cost_nanos(model, Usage(input_tokens=..., output_tokens=...))`` for the estimates a
    stream shows its permits per delta (no cached or reasoning tokens, counts >= 0), without
    the general case's clamping: it runs once per delta."""
    micro = input_tokens * model.input_nanos_per_mtok + output_tokens * model.output_nanos_per_mtok
    return -(-micro // MICRO)
