"""The rate-limiter guard: per model, requests and tokens per minute (and calls in flight),
checked on every attempt against a ``LimiterStore`` (in memory now; Redis later, unchanged here).

An attempt takes one request and an estimate of its tokens (prompt + the most it may generate),
all or none, from the process's lease of the model's quotas or else from the store
(``_lease``); its permit corrects the tokens by the usage it saw when the attempt ends, and gives
everything back when the attempt never reached the upstream (a later guard or the provider's
breaker refused it). A model over its limit refuses with ``RateLimited``, which the attempt loop
answers by moving to the next candidate; on the call's last candidate a short wait
(``[limits] max_wait_s``, never past the call's deadline) comes first. What an upstream says of
its own limits (a 429's Retry-After, remaining counts of 0 until a reset) holds the model back
until then (in memory, and in the store for the replicas sharing it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import Token
from types import TracebackType

import structlog

from aurea.actors.router import Candidate
from aurea.edge import current_scope
from aurea.errors import AureaError, ProviderError, ProviderRateLimited, RateLimited
from aurea.inference.calls import CallKind
from aurea.inference.guards import AttemptInfo
from aurea.limits._lease import GRANTED, Leases
from aurea.limits._table import LimitsTable, Plan
from aurea.providers._base import Usage
from aurea.providers._retry import RateHint, RateHintSink, rate_hint_sink
from aurea.stores import Admission, LimiterStore, WallClock, wall_clock

__all__ = ["LimiterGuard", "LimiterPermit"]

log = structlog.get_logger("aurea.limits")

_CONCURRENCY_RETRY_S = 0.1  # a slot frees when any call on the model ends: soon, unknown when
_MIN_WAIT_S = 0.001


class LimiterGuard:
    """Admits attempts against their model's limits; no per-call state (but calls in flight)."""

    name = "limiter"

    def __init__(
        self,
        *,
        table: LimitsTable,
        store: LimiterStore,
        max_wait_s: float = 0.0,
        hold_max_s: float = 60.0,
        wall_clock: WallClock = wall_clock,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_refused: Callable[[str, str], None] | None = None,
        on_waited: Callable[[str, float], None] | None = None,
    ) -> None:
        self.table = table
        self._on_refused = on_refused  # (model, limit): metrics
        self._on_waited = on_waited  # (model, seconds waited before admission): metrics
        self._store = store
        self._max_wait_s = max_wait_s
        self._hold_max_s = hold_max_s
        self._wall = wall_clock
        self._clock = clock
        self._sleep = sleep
        self._in_flight: dict[str, int] = {}
        self._leases = Leases(store, wall_clock=wall_clock, clock=clock)
        # Per model, the wall instant before which the upstream asked not to be called. Checked
        # before the store, so a hold costs no store call, and a model without limits of its
        # own (no quotas) still honours it.
        self._held_until: dict[str, float] = {}

    def in_flight(self, model: str) -> int:
        return self._in_flight.get(model, 0)

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> LimiterPermit:
        spec = candidate.model
        name = spec.name
        plan = self.table.plan(name)
        limits = plan.limits
        if limits.max_concurrency and self._in_flight.get(name, 0) >= limits.max_concurrency:
            if self._on_refused is not None:
                self._on_refused(name, "max_concurrency")
            raise RateLimited(
                f"model {name!r} is at its max_concurrency limit "
                f"({limits.max_concurrency} calls in flight)",
                _CONCURRENCY_RETRY_S,
                model=name,
                limit="max_concurrency",
            )
        requests = 1 if limits.rpm else 0
        tokens = 0
        if limits.tpm:
            estimate = call.input_tokens
            if call.kind is not CallKind.EMBED:
                estimate += call.max_tokens or spec.default_max_tokens
            # A call larger than a minute's tokens goes when the bucket is full (its actual
            # usage is charged when it ends), rather than never.
            tokens = min(estimate, limits.tpm)
        # Counted before any await, so calls waiting for room count against max_concurrency.
        self._in_flight[name] = self._in_flight.get(name, 0) + 1
        # The hot path: no hold, and the lease has enough (or the model has no limits).
        if name in self._held_until or not self._leases.take_now(plan, requests, tokens):
            try:
                admission = await self._try(plan, requests, tokens)
                if not admission.granted:
                    await self._wait(call, candidate, plan, requests, tokens, admission)
            except BaseException:
                self._in_flight[name] -= 1
                raise
        return LimiterPermit(self, plan, requests, tokens)

    async def _try(self, plan: Plan, requests: int, tokens: int) -> Admission:
        name = plan.limits.model
        held = self._held_until.get(name)
        if held is not None:
            wait = held - self._wall()
            if wait > 0:
                return Admission(granted=False, retry_after_s=wait, limiting_key="")
            del self._held_until[name]
        if not (requests or tokens):
            return GRANTED
        return await self._leases.take(plan, requests, tokens)

    async def _wait(
        self,
        call: AttemptInfo,
        candidate: Candidate,
        plan: Plan,
        requests: int,
        tokens: int,
        admission: Admission,
    ) -> None:
        """Wait for room when this is the call's last candidate and the wait is short; else (or
        if the room is gone again) raise the refusal."""
        waited = 0.0
        last = bool(call.candidates) and call.candidates[-1].model.name == candidate.model.name
        deadline = call.deadline
        if deadline is None:
            scope = current_scope.get()
            deadline = scope.deadline if scope is not None else None
        while True:
            delay = max(admission.retry_after_s, _MIN_WAIT_S)
            if (
                not last
                or waited + delay > self._max_wait_s
                or (deadline is not None and self._clock() + delay >= deadline)
            ):
                refusal = self._refusal(plan, admission, tokens)
                if self._on_refused is not None:
                    self._on_refused(refusal.model, refusal.limit)
                raise refusal
            await self._sleep(delay)
            waited += delay
            admission = await self._try(plan, requests, tokens)
            if admission.granted:
                if self._on_waited is not None:
                    self._on_waited(plan.limits.model, waited)
                return

    @staticmethod
    def _refusal(plan: Plan, admission: Admission, tokens: int) -> RateLimited:
        limits, name = plan.limits, plan.limits.model
        limit = plan.limit_of(admission.limiting_key)
        wait = admission.retry_after_s
        if limit == "rpm":
            what = f"its rpm limit ({limits.rpm} requests per minute)"
        elif limit == "tpm":
            what = (
                f"its tpm limit ({limits.tpm} tokens per minute; this call needs an "
                f"estimated {tokens})"
            )
        else:
            what = "its upstream's rate limit (the provider asked Aurea to hold back)"
        return RateLimited(
            f"model {name!r} is over {what}; room again in {wait:.3g} s",
            wait,
            model=name,
            limit=limit,
        )

    async def settle(self, permit: LimiterPermit, exc: BaseException | None) -> None:
        """The attempt ended: give back what it did not use, charge what it used beyond its
        estimate, and hold the model back if the upstream refused it with a retry hint."""
        plan = permit.plan
        self._in_flight[plan.limits.model] -= 1
        if isinstance(exc, ProviderRateLimited) and exc.retry_after_s:
            await self.hold(plan, exc.retry_after_s, "upstream_429")
        back_r, back_t, extra = _correction(permit, exc)
        if (back_r or back_t) and not self._leases.give_back_now(plan, back_r, back_t):
            await self._leases.give_back(plan, back_r, back_t)
        if extra:
            await self._leases.charge(plan, extra)

    async def hold(self, plan: Plan, seconds: float, reason: str) -> None:
        """Admit nothing on the model for ``seconds`` (the upstream said so), at most
        ``hold_max_s``: a model held longer is tried again then, and held again if still out."""
        seconds = min(seconds, self._hold_max_s)
        if seconds <= 0:
            return
        name = plan.limits.model
        until = self._wall() + seconds
        if until > self._held_until.get(name, 0.0):
            self._held_until[name] = until
        if plan.hold_key:  # in the store too, for the replicas sharing it
            await self._store.hold(plan.hold_key, until)
        log.info("upstream_limit_hold", model=name, hold_s=seconds, reason=reason)

    async def on_hint(self, plan: Plan, hint: RateHint) -> None:
        """An upstream response's rate-limit headers: hold the model until what they say is
        exhausted resets (a 429 holds for its Retry-After)."""
        hold_s, reason = 0.0, ""
        if hint.status == 429 and hint.retry_after_s:
            hold_s, reason = hint.retry_after_s, "upstream_429"
        reset = hint.requests_reset_s
        if hint.requests_remaining == 0 and reset is not None and reset > hold_s:
            hold_s, reason = reset, "upstream_requests_exhausted"
        reset = hint.tokens_reset_s
        if hint.tokens_remaining == 0 and reset is not None and reset > hold_s:
            hold_s, reason = reset, "upstream_tokens_exhausted"
        if hold_s > 0:
            await self.hold(plan, hold_s, reason)


_NOTHING = (0, 0, 0)


def _correction(permit: LimiterPermit, exc: BaseException | None) -> tuple[int, int, int]:
    """What an ended attempt gives back (requests, tokens) or owes beyond its estimate
    (tokens), from how it ended and the usage it saw."""
    plan, requests, charged = permit.plan, permit.requests, permit.tokens
    if not (requests or plan.limits.tpm):
        return _NOTHING
    usage = permit.usage
    if usage is None and isinstance(exc, AureaError) and not isinstance(exc, ProviderError):
        # Refused after this guard admitted it (a later guard, the breaker, the provider's
        # cap): the upstream never saw it.
        return requests, charged, 0
    if not plan.limits.tpm:
        return _NOTHING
    if usage is not None:
        used = usage.input_tokens + usage.output_tokens
    elif isinstance(exc, ProviderError):
        used = 0  # failed upstream without a word of usage: it charged none Aurea knows of
    else:
        return _NOTHING  # no usage seen: the estimate stands
    if used < charged:
        return 0, charged - used, 0
    return 0, 0, used - charged


class LimiterPermit:
    """One admitted attempt's share of its model's limits. While entered, it listens for the
    upstream's rate-limit headers (``rate_hint_sink``)."""

    __slots__ = ("_guard", "_token", "plan", "requests", "tokens", "usage")

    def __init__(self, guard: LimiterGuard, plan: Plan, requests: int, tokens: int) -> None:
        self._guard = guard
        self.plan = plan
        self.requests = requests  # what the attempt took of the model's quotas
        self.tokens = tokens
        self.usage: Usage | None = None
        self._token: Token[RateHintSink | None] | None = None

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        self.usage = usage

    async def __call__(self, hint: RateHint) -> None:
        """The sink of the attempt's rate-limit news (the permit itself: no allocation)."""
        await self._guard.on_hint(self.plan, hint)

    async def __aenter__(self) -> LimiterPermit:
        self._token = rate_hint_sink.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._token
        if token is not None:
            self._token = None
            # Not contextlib.suppress: that is an object per attempt on the hot path.
            try:  # noqa: SIM105
                rate_hint_sink.reset(token)
            except ValueError:  # exited in another context than entered: nothing to undo there
                pass
        await self._guard.settle(self, exc)
