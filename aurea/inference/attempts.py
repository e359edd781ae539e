"""The one attempt loop, shared by stream, unary and embed calls.

For each candidate in order, and each retry of it: enter every guard's permit and the provider's
own permit on one ``AsyncExitStack``, run the call's body with the adapter the provider permit
names, and on error let the classification table decide: retry this candidate (backoff with
jitter, Retry-After honoured, never past the call's deadline), move to the next candidate, or
fail the call. Permits are released in reverse order on every exit path.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import structlog

from aurea.actors.provider import Admit, ProviderMsg, ProviderPermit
from aurea.actors.router import Candidate
from aurea.config import RetrySettings
from aurea.errors import AureaError
from aurea.inference.calls import AttemptRecord, CallRecord, FallbackEvent
from aurea.inference.classify import Action, backoff_s, classify, final_error
from aurea.inference.guards import AttemptInfo, Guard, Permit
from aurea.providers._base import Provider, Usage
from aurea.runtime import ActorRef

log = structlog.get_logger("aurea.inference")
T = TypeVar("T")


class Attempt:
    """One attempt as its body sees it: the adapter to call, and the permits to tell about
    usage. ``committed`` is set once output has reached the caller: from then on an error
    cannot be retried elsewhere (mid-stream failover comes with the resilience work)."""

    __slots__ = ("committed", "number", "permits", "provider")

    def __init__(self, number: int) -> None:
        self.number = number
        self.permits: list[Permit | ProviderPermit] = []
        self.provider: Provider | None = None
        self.committed = False

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        for p in self.permits:
            p.observe(usage, cost_nanos)

    @property
    def adapter(self) -> Provider:
        assert self.provider is not None, "the body runs only after the provider admitted it"
        return self.provider


Body = Callable[[Candidate, Attempt], Awaitable[T]]
OnFallback = Callable[[FallbackEvent], Awaitable[None]]


class AttemptLoop:
    """Holds the guards, the provider actors and the retry settings; no per-call state."""

    def __init__(
        self,
        *,
        guards: Sequence[Guard],
        providers: Mapping[str, ActorRef[ProviderMsg]],
        retry: RetrySettings,
        ask_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._guards = tuple(guards)
        self._providers = providers
        self._retry = retry
        self._timeout = ask_timeout_s
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter

    async def run(
        self,
        info: AttemptInfo,
        candidates: Sequence[Candidate],
        body: Body[T],
        record: CallRecord,
        *,
        deadline: float,
        on_fallback: OnFallback | None = None,
    ) -> T:
        """The body's result from the first attempt that succeeds; else the call's error."""
        clock, retry_cfg = self._clock, self._retry
        failed: list[tuple[str, AureaError]] = []
        number = 0
        for i, cand in enumerate(candidates):
            model = cand.model
            record.model, record.provider = model.name, model.provider
            retries = 0
            while True:
                number += 1
                attempt = Attempt(number)
                t0 = clock()
                try:
                    async with contextlib.AsyncExitStack() as stack:
                        for guard in self._guards:
                            permit = await guard.admit(info, cand)
                            await stack.enter_async_context(permit)
                            attempt.permits.append(permit)
                        ref = self._providers[model.provider]
                        pp = await ref.ask(
                            Admit(request_id=info.request_id), timeout_s=self._timeout
                        )
                        await stack.enter_async_context(pp)
                        attempt.permits.append(pp)
                        attempt.provider = pp.provider
                        value = await body(cand, attempt)
                except AureaError as exc:
                    err = exc
                except BaseException as exc:
                    # Cancellation, or a bug: the call ends here; the edge reports it.
                    reason = "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "BUG"
                    record.attempts.append(
                        AttemptRecord(
                            model=model.name,
                            provider=model.provider,
                            error=reason,
                            latency_s=clock() - t0,
                        )
                    )
                    raise
                else:
                    record.attempts.append(
                        AttemptRecord(
                            model=model.name, provider=model.provider, latency_s=clock() - t0
                        )
                    )
                    return value
                record.attempts.append(
                    AttemptRecord(
                        model=model.name,
                        provider=model.provider,
                        error=err.reason,
                        latency_s=clock() - t0,
                    )
                )
                action = Action.FAIL if attempt.committed else classify(err)
                if action is Action.FAIL:
                    raise err
                if action is Action.RETRY and retries < retry_cfg.max_retries:
                    retries += 1
                    delay = backoff_s(
                        retries,
                        err,
                        base_s=retry_cfg.backoff_base_s,
                        max_s=retry_cfg.backoff_max_s,
                        jitter=self._jitter(),
                    )
                    # A long Retry-After, or one past the call's deadline: try elsewhere, or
                    # let the caller decide (the status carries RetryInfo), not hold the call.
                    if delay <= retry_cfg.backoff_max_s and clock() + delay < deadline:
                        log.info(
                            "upstream_retry",
                            model=model.name,
                            attempt=number,
                            error=err.reason,
                            delay_s=round(delay, 3),
                        )
                        await self._sleep(delay)
                        continue
                failed.append((model.name, err))
                break
            if i + 1 < len(candidates):
                nxt, err = candidates[i + 1].model, failed[-1][1]
                record.fallbacks += 1
                if on_fallback is not None:
                    await on_fallback(
                        FallbackEvent(
                            from_model=model.name,
                            to_model=nxt.name,
                            to_provider=nxt.provider,
                            cause=err.reason,
                            message=err.message,
                            attempt=number + 1,
                        )
                    )
        raise final_error(failed)
