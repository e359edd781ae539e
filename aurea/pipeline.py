"""One inference call, end to end: route, try candidates with retries and fallback before the
first token, relay the stream, and settle usage, cost and provider stats.

This runs in the caller's task (it is I/O, not state): it asks actors for decisions and tells
them outcomes. Events are domain types; ``aurea.api`` turns them into protobuf.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from aurea.actors.provider import (
    CallFinished,
    OpenComplete,
    OpenStream,
    ProviderMsg,
    StartEmbed,
    StreamHandle,
)
from aurea.actors.router import Candidate, Policy, Route, RouterMsg
from aurea.config import RetrySettings
from aurea.errors import (
    AureaError,
    Overloaded,
    ProviderError,
    ProvidersUnavailable,
    StreamBroken,
    UpstreamRejected,
)
from aurea.pricing import cost_nanos
from aurea.providers._base import (
    ChatMessage,
    Completion,
    Embeddings,
    EmbedRequest,
    Finish,
    FinishReason,
    ProviderRequest,
    TextDelta,
    Usage,
    UsageReport,
)
from aurea.providers._tokens import estimate_messages_tokens, estimate_text_tokens
from aurea.runtime import ActorRef

log = structlog.get_logger("aurea.pipeline")
_NO_USAGE = Usage()
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerateCall:
    request_id: str
    messages: tuple[ChatMessage, ...]
    model: str = ""
    max_tokens: int = 0
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    job_id: str = ""
    policy: Policy | None = None
    fallbacks: tuple[str, ...] = ()
    cache_bypass: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    usage_interval: int = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedCall:
    request_id: str
    inputs: tuple[str, ...]
    model: str = ""
    job_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    request_id: str
    model: str
    provider: str
    attempt: int
    reason: str
    cache_hit: bool = False


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageUpdate:
    usage: Usage
    cost_nanos: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackEvent:
    from_model: str
    to_model: str
    to_provider: str
    cause: str
    message: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Final:
    finish_reason: FinishReason
    usage: Usage
    cost_nanos: int
    latency_s: float
    ttft_s: float
    model: str
    provider: str
    attempts: int
    route_reason: str = ""
    text: str = ""  # filled for unary calls only


GenEvent = Started | Delta | UsageUpdate | FallbackEvent | Final


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedResult:
    model: str
    provider: str
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class _Won:
    candidate: Candidate
    value: Any
    attempts: int


class Inference:
    """Coordinates calls; holds only references to actors and settings, no mutable state."""

    def __init__(
        self,
        *,
        router: ActorRef[RouterMsg],
        providers: Mapping[str, ActorRef[ProviderMsg]],
        retry: RetrySettings,
        ask_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._router = router
        self._providers = providers
        self._retry = retry
        self._timeout = ask_timeout_s
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter

    def _request(self, call: GenerateCall, cand: Candidate) -> ProviderRequest:
        return ProviderRequest(
            model=cand.model.upstream,
            messages=call.messages,
            max_tokens=call.max_tokens or cand.model.default_max_tokens,
            temperature=call.temperature,
            top_p=call.top_p,
            stop=call.stop,
            seed=call.seed,
            request_id=call.request_id,
        )

    async def _route(
        self, model: str, kind: str, policy: Policy | None, fallbacks: tuple[str, ...]
    ) -> tuple[Candidate, ...]:
        msg = Route(model=model, kind=kind, policy=policy, fallbacks=fallbacks)
        result: tuple[Candidate, ...] = await self._router.ask(msg, timeout_s=self._timeout)
        return result

    def _backoff_s(self, retry: int, err: ProviderError) -> float:
        base = min(self._retry.backoff_base_s * 2.0 ** (retry - 1), self._retry.backoff_max_s)
        delay = base * (0.5 + self._jitter() / 2)  # "equal jitter": never less than half
        if err.retry_after_s is not None:
            delay = max(delay, err.retry_after_s)
        return delay

    async def _candidates(
        self,
        candidates: tuple[Candidate, ...],
        attempt: Callable[[Candidate], Awaitable[T]],
    ) -> AsyncIterator[FallbackEvent | _Won]:
        """Try each candidate (with retries) until one succeeds; yield fallbacks on the way."""
        attempts = 0
        failures: list[str] = []
        last: AureaError | None = None
        for i, cand in enumerate(candidates):
            for retry in range(self._retry.max_retries + 1):
                attempts += 1
                t_try = self._clock()
                try:
                    value = await attempt(cand)
                except Overloaded as exc:  # the provider's own cap: go elsewhere at once
                    last = exc
                    break
                except asyncio.CancelledError:
                    self._finished(cand, None, _NO_USAGE, 0, self._clock() - t_try)
                    raise
                except ProviderError as exc:
                    last = exc
                    self._finished(cand, False, _NO_USAGE, 0, self._clock() - t_try)
                    if isinstance(exc, UpstreamRejected):
                        raise  # the request itself is wrong: no other candidate will like it
                    if not exc.retryable or retry == self._retry.max_retries:
                        break
                    delay = self._backoff_s(retry + 1, exc)
                    if delay > self._retry.backoff_max_s:
                        # A long Retry-After: try another candidate, or let the caller decide
                        # (the status carries RetryInfo) rather than hold the call open.
                        break
                    log.info(
                        "upstream_retry",
                        model=cand.model.name,
                        attempt=attempts,
                        error=exc.reason,
                        delay_s=round(delay, 3),
                    )
                    await self._sleep(delay)
                    continue
                yield _Won(cand, value, attempts)
                return
            assert last is not None
            failures.append(f"{cand.model.name}: {last.reason}")
            if i + 1 < len(candidates):
                nxt = candidates[i + 1]
                yield FallbackEvent(
                    from_model=cand.model.name,
                    to_model=nxt.model.name,
                    to_provider=nxt.model.provider,
                    cause=last.reason,
                    message=last.message,
                    attempt=attempts + 1,
                )
        assert last is not None
        if len(candidates) == 1:
            raise last
        raise ProvidersUnavailable(
            f"every candidate failed ({'; '.join(failures)})",
            retry_after_s=getattr(last, "retry_after_s", None) or 1.0,
        ) from last

    def _finished(
        self, cand: Candidate, ok: bool | None, usage: Usage, cost: int, latency_s: float
    ) -> None:
        ref = self._providers[cand.model.provider]
        # Stats are best effort: a full mailbox must not fail a finished call.
        with contextlib.suppress(AureaError):
            ref.tell(
                CallFinished(
                    ok=ok,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost_nanos=cost,
                    latency_s=latency_s,
                )
            )

    async def stream(self, call: GenerateCall) -> AsyncIterator[GenEvent]:
        t0 = self._clock()
        candidates = await self._route(call.model, "chat", call.policy, call.fallbacks)
        first = candidates[0]
        yield Started(
            request_id=call.request_id,
            model=first.model.name,
            provider=first.model.provider,
            attempt=1,
            reason=first.reason,
        )

        async def open_and_peek(cand: Candidate) -> tuple[StreamHandle, Any]:
            ref = self._providers[cand.model.provider]
            handle: StreamHandle = await ref.ask(
                OpenStream(request=self._request(call, cand)), timeout_s=self._timeout
            )
            try:
                return handle, await handle.next()
            except BaseException:
                handle.cancel()
                raise

        won: _Won | None = None
        async for item in self._candidates(candidates, open_and_peek):
            if isinstance(item, _Won):
                won = item
            else:
                yield item
        assert won is not None
        cand = won.candidate
        handle, event = won.value
        model = cand.model
        input_est = -1  # counted only when an estimate is needed

        def estimated_input() -> int:
            nonlocal input_est
            if input_est < 0:
                input_est = estimate_messages_tokens(call.messages, model.upstream)
            return input_est

        usage: Usage | None = None
        finish: Finish | None = None
        ttft = 0.0
        deltas = 0
        reported = 0
        interval = call.usage_interval
        out_chars: list[str] = []
        ok: bool | None = False
        try:
            while event is not None:
                if isinstance(event, TextDelta):
                    if not deltas:
                        ttft = self._clock() - t0
                    more = handle.more_text()
                    text = event.text + "".join(more) if more else event.text
                    deltas += 1 + len(more)
                    out_chars.append(text)
                    yield Delta(text)
                    if interval and deltas // interval > reported:
                        reported = deltas // interval
                        est = Usage(
                            input_tokens=estimated_input(), output_tokens=deltas, estimated=True
                        )
                        yield UsageUpdate(usage=est, cost_nanos=cost_nanos(model, est))
                elif isinstance(event, UsageReport):
                    usage = event.usage
                elif isinstance(event, Finish):
                    finish = event
                event = await handle.next()
            if finish is None:
                raise StreamBroken(
                    f"provider {model.provider} ended the stream without finishing",
                    provider=model.provider,
                )
            ok = True
        except ProviderError:
            # Output has begun: report what was spent, then end with the error's status.
            usage = usage or self._estimate(call, model.upstream, out_chars, estimated_input())
            yield UsageUpdate(usage=usage, cost_nanos=cost_nanos(model, usage))
            raise
        except (asyncio.CancelledError, GeneratorExit):
            ok = None  # the client went away: not the provider's failure
            raise
        finally:
            handle.cancel()
            usage = usage or self._estimate(call, model.upstream, out_chars, estimated_input())
            cost = cost_nanos(model, usage)
            self._finished(cand, ok, usage, cost, self._clock() - t0)
        assert finish is not None
        yield Final(
            finish_reason=finish.reason,
            usage=usage,
            cost_nanos=cost,
            latency_s=self._clock() - t0,
            ttft_s=ttft or (self._clock() - t0),
            model=model.name,
            provider=model.provider,
            attempts=won.attempts,
            route_reason=cand.reason,
        )

    def _estimate(self, call: GenerateCall, upstream: str, out: list[str], input_est: int) -> Usage:
        text = "".join(out)
        return Usage(
            input_tokens=input_est,
            output_tokens=estimate_text_tokens(text, upstream),
            estimated=True,
        )

    async def generate(self, call: GenerateCall) -> Final:
        """A unary call: the provider's non-streaming API, same routing, retries and fallback."""
        t0 = self._clock()
        candidates = await self._route(call.model, "chat", call.policy, call.fallbacks)

        async def complete(cand: Candidate) -> Completion:
            ref = self._providers[cand.model.provider]
            task: asyncio.Task[Completion] = await ref.ask(
                OpenComplete(request=self._request(call, cand)), timeout_s=self._timeout
            )
            try:
                return await task
            finally:
                task.cancel()

        won: _Won | None = None
        async for item in self._candidates(candidates, complete):
            if isinstance(item, _Won):
                won = item
        assert won is not None
        cand, result = won.candidate, won.value
        assert isinstance(result, Completion)
        usage = result.usage or self._estimate(
            call,
            cand.model.upstream,
            [result.text],
            estimate_messages_tokens(call.messages, cand.model.upstream),
        )
        cost = cost_nanos(cand.model, usage)
        latency = self._clock() - t0
        self._finished(cand, True, usage, cost, latency)
        return Final(
            finish_reason=result.finish.reason,
            usage=usage,
            cost_nanos=cost,
            latency_s=latency,
            ttft_s=latency,
            model=cand.model.name,
            provider=cand.model.provider,
            attempts=won.attempts,
            route_reason=cand.reason,
            text=result.text,
        )

    async def embed(self, call: EmbedCall) -> EmbedResult:
        t0 = self._clock()
        candidates = await self._route(call.model, "embedding", None, ())

        async def embed(cand: Candidate) -> Embeddings:
            ref = self._providers[cand.model.provider]
            req = EmbedRequest(
                model=cand.model.upstream, inputs=call.inputs, request_id=call.request_id
            )
            task: asyncio.Task[Embeddings] = await ref.ask(
                StartEmbed(request=req), timeout_s=self._timeout
            )
            try:
                return await task
            finally:
                task.cancel()

        won: _Won | None = None
        async for item in self._candidates(candidates, embed):
            if isinstance(item, _Won):
                won = item
        assert won is not None
        cand, result = won.candidate, won.value
        assert isinstance(result, Embeddings)
        usage = result.usage or Usage(
            input_tokens=sum(estimate_text_tokens(t, cand.model.upstream) for t in call.inputs),
            estimated=True,
        )
        cost = cost_nanos(cand.model, usage)
        self._finished(cand, True, usage, cost, self._clock() - t0)
        return EmbedResult(
            model=cand.model.name,
            provider=cand.model.provider,
            vectors=result.vectors,
            usage=usage,
            cost_nanos=cost,
        )
