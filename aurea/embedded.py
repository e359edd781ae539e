"""Aurea in-process: the server's actors, guards and state started inside a Python application,
called without a network hop.

    async with aurea.Embedded(settings) as a:
        final = await a.generate("Say hello", max_tokens=20)
        async for event in a.stream("Count to five"):
            ...
        vectors = (await a.embed(["one", "two"])).vectors
        answer = await a.guarded(call_my_model, model="gpt-4o-mini", input_tokens=900,
                                 output_tokens=200, job_id="nightly")

``Embedded`` runs exactly what ``aurea serve`` builds (``AureaServer.start_core``): the same
routing, the same guards on every attempt (allow/deny, rate limits, the ledger's budgets as they
land), the same provider actors with their concurrency caps and circuit breakers, the same
record sinks. With ``serve=True`` it also opens the gRPC server and the HTTP door, so remote
callers and this process share that state.

``guarded`` is that machinery around the caller's own function (Aurea's answer to wrapping any
model call with cost tracking, rate limits, retries and the breaker): the function runs as one
attempt on a catalog model, behind the same guards and the model's provider admission, retried
on the exceptions it names by the server's retry settings; its usage is charged at the model's
catalog prices.

In-process calls are trusted (no API key); they are counted in flight (a stop drains them),
refused while draining, and each leaves one canonical ``rpc_finished`` log line. Log lines go to
stderr as ``aurea serve``'s do ([log] settings), unless the application configured structlog
itself: then they go its way.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import structlog

from aurea._embedded_values import _DEFAULT_RETRY_ON, Guarded, MessageLike, _messages, _status
from aurea.cache import CachedInference, CacheMode, ResponseCache
from aurea.config import Settings, load_settings
from aurea.errors import InvalidRequest, ProviderConnectionError, ShuttingDown
from aurea.inference import (
    CallKind,
    CallOutcome,
    EmbedCall,
    EmbedResult,
    Final,
    GenerateCall,
    GenEvent,
    Inference,
)
from aurea.inference.attempts import Attempt
from aurea.inference.calls import CallRecord, current_record
from aurea.inference.guards import AttemptInfo
from aurea.pricing import cost_nanos
from aurea.providers._base import Usage
from aurea.routing import Candidate
from aurea.runtime.context import request_id_var
from aurea.server import AureaServer
from aurea.telemetry.logging import configure
from aurea.types import Policy

__all__ = ["Embedded", "Guarded"]

T = TypeVar("T")
_STREAM_BUFFER = 64  # events the producer may run ahead of a slow reader


class Embedded:
    """Aurea's core in this process. ``settings`` default to what ``aurea serve`` would load
    ($AUREA_CONFIG and ``AUREA_*``). Start and stop with ``async with`` (or ``start``/``stop``)."""

    def __init__(self, settings: Settings | None = None, *, serve: bool = False) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.server = AureaServer(self.settings)
        self._serve = serve
        self._inference: Inference | None = None

    async def start(self) -> None:
        """Start the actors (and, with ``serve=True``, the gRPC server and HTTP door)."""
        if not structlog.is_configured():  # the host's own logging setup wins
            log = self.settings.log
            configure(log.level, log.format, log.redact_pii, cache_loggers=False)
        if self._serve:
            await self.server.start()
        self._inference = await self.server.start_core()

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain in-process (and remote) calls within ``grace_s``, then stop the actors."""
        await self.server.stop(grace_s=grace_s)

    async def __aenter__(self) -> Embedded:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(grace_s=0)

    @property
    def core(self) -> Inference:
        if self._inference is None:
            raise RuntimeError("Embedded is not started: use 'async with Embedded(...) as a:'")
        return self._inference

    @property
    def cached(self) -> CachedInference:
        """The core behind the response cache (what ``generate``/``stream``/``embed`` call)."""
        cached = self.server.cached
        if cached is None:
            raise RuntimeError("Embedded is not started: use 'async with Embedded(...) as a:'")
        return cached

    @property
    def cache(self) -> ResponseCache:
        """The server's response cache: hand it to ``aurea.cache.cache_llm_response`` and
        ``cache_embedding`` to cache your own functions in it (or pass this object itself)."""
        cache = self.cached.cache
        assert cache is not None
        return cache

    # -- the edge of an in-process call --------------------------------------------------------
    async def _call(self, operation: str, run: Callable[[str], Awaitable[T]]) -> T:
        """Run one in-process call in its own task (so its log context and record do not leak
        into the caller's), counted in flight and logged like a remote call."""
        return await asyncio.ensure_future(self._edge(operation, run))

    async def _edge(self, operation: str, run: Callable[[str], Awaitable[T]]) -> T:
        edge = self.server.edge
        started = edge.clock()
        edge.tracker.enter()
        status = "OK"
        rid = os.urandom(16).hex()
        try:
            request_id_var.set(rid)
            structlog.contextvars.bind_contextvars(request_id=rid, rpc=operation)
            if edge.observer is not None:
                edge.observer.opened(operation, {}, rid, "embedded")
            if edge.tracker.draining:
                raise ShuttingDown("Aurea is stopping; no new calls", retry_after_s=1.0)
            return await run(rid)
        except BaseException as exc:
            status = _status(exc)
            raise
        finally:
            edge.finish_call(status, started)

    def _deadline(self, timeout_s: float | None) -> float | None:
        return None if timeout_s is None else self.server.edge.clock() + timeout_s

    # -- generation ----------------------------------------------------------------------------
    def _generate_call(
        self,
        rid: str,
        prompt: str | None,
        messages: Sequence[MessageLike],
        system: str | None,
        model: str,
        max_tokens: int,
        temperature: float | None,
        top_p: float | None,
        stop: Sequence[str],
        seed: int | None,
        job_id: str,
        policy: Policy | str | None,
        fallbacks: Sequence[str],
        cache_bypass: bool,
        labels: Mapping[str, str] | None,
        deadline: float | None,
    ) -> GenerateCall:
        return GenerateCall(
            request_id=rid,
            messages=_messages(prompt, messages, system),
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=tuple(stop),
            seed=seed,
            job_id=job_id,
            policy=Policy(policy) if policy is not None else None,
            fallbacks=tuple(fallbacks),
            cache_bypass=cache_bypass,
            labels=dict(labels or {}),
            deadline=deadline,
        )

    async def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[MessageLike] = (),
        system: str | None = None,
        model: str = "",
        max_tokens: int = 0,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        job_id: str = "",
        policy: Policy | str | None = None,
        fallbacks: Sequence[str] = (),
        cache_bypass: bool = False,
        labels: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        cache: CacheMode | str = CacheMode.AUTO,
    ) -> Final:
        """One whole completion (``final.text``), routed and guarded as over gRPC. ``cache``:
        what the call does with the response cache (a hit has ``attempts`` 0, zero usage and
        cost; ``aurea.cache.cache_outcome()`` is not visible here, the call runs in its own
        task)."""
        deadline = self._deadline(timeout_s)

        async def run(rid: str) -> Final:
            call = self._generate_call(
                rid, prompt, messages, system, model, max_tokens, temperature, top_p, stop,
                seed, job_id, policy, fallbacks, cache_bypass, labels, deadline,
            )  # fmt: skip
            return await self.cached.generate(call, mode=CacheMode(cache))

        return await self._call("aurea.v1.InferenceService/Generate", run)

    async def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[MessageLike] = (),
        system: str | None = None,
        model: str = "",
        max_tokens: int = 0,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        job_id: str = "",
        policy: Policy | str | None = None,
        fallbacks: Sequence[str] = (),
        cache_bypass: bool = False,
        labels: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        cache: CacheMode | str = CacheMode.AUTO,
    ) -> AsyncIterator[GenEvent]:
        """The completion's events as they come (``Started``, ``FallbackEvent``, ``Delta``,
        ``UsageUpdate``, then ``Final``); a failure is raised instead of ``Final``. Leaving the
        loop early cancels the call."""
        deadline = self._deadline(timeout_s)
        queue: asyncio.Queue[GenEvent] = asyncio.Queue(maxsize=_STREAM_BUFFER)

        async def run(rid: str) -> Final:
            call = self._generate_call(
                rid, prompt, messages, system, model, max_tokens, temperature, top_p, stop,
                seed, job_id, policy, fallbacks, cache_bypass, labels, deadline,
            )  # fmt: skip
            final = await self.cached.stream(call, queue.put, mode=CacheMode(cache))
            await queue.put(final)
            return final

        producer = asyncio.ensure_future(
            self._edge("aurea.v1.InferenceService/GenerateStream", run)
        )
        try:
            while True:
                if queue.empty():
                    getter = asyncio.ensure_future(queue.get())
                    await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        if queue.empty():
                            producer.result()  # raises the call's error
                            return
                        continue
                    ev = getter.result()
                else:
                    ev = queue.get_nowait()
                yield ev
                if type(ev) is Final:
                    return
        finally:
            if not producer.done():
                producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)

    async def embed(
        self,
        inputs: str | Sequence[str],
        *,
        model: str = "",
        job_id: str = "",
        labels: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        cache: CacheMode | str = CacheMode.AUTO,
    ) -> EmbedResult:
        """One vector per input text, in order (cached: ``cache`` says how)."""
        texts = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        if not texts or any(not t for t in texts):
            raise InvalidRequest.field("inputs", "give one or more non-empty texts")
        deadline = self._deadline(timeout_s)

        async def run(rid: str) -> EmbedResult:
            call = EmbedCall(
                request_id=rid,
                inputs=texts,
                model=model,
                job_id=job_id,
                labels=dict(labels or {}),
                deadline=deadline,
            )
            return await self.cached.embed(call, mode=CacheMode(cache))

        return await self._call("aurea.v1.InferenceService/Embed", run)

    # -- the caller's own function ---------------------------------------------------------------
    async def guarded(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        job_id: str = "",
        usage: Callable[[T], Usage | None] | None = None,
        retry_on: tuple[type[BaseException], ...] = _DEFAULT_RETRY_ON,
        labels: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Guarded[T]:
        """Run ``fn`` (the caller's own model call) as attempts on catalog ``model``: every
        guard admits each attempt (allow/deny, the model's rate limits, the job's budget as the
        ledger lands), the model's provider admits it (its concurrency cap and circuit breaker),
        and an exception in ``retry_on`` counts as that provider failing (it feeds the breaker)
        and is retried by the server's retry settings. Any other exception ends the call as is.

        Usage is ``usage(value)`` when given (and not None), else the estimate
        ``input_tokens``/``output_tokens``; it is charged at the model's catalog prices."""
        deadline = self._deadline(timeout_s)
        spec = self.core._view.table.models.get(model)
        if spec is None:
            known = ", ".join(sorted(self.core._view.table.models))
            raise InvalidRequest.field("model", f"{model!r} is not in the catalog ({known})")
        cand = Candidate(model=spec, reason="guarded function")

        async def body(c: Candidate, attempt: Attempt) -> Guarded[T]:
            try:
                value = await fn()
            except retry_on as exc:
                raise ProviderConnectionError(
                    f"the guarded function failed: {type(exc).__name__}: {str(exc)[:200]}",
                    provider=c.model.provider,
                ) from exc
            reported = usage(value) if usage is not None else None
            spent = reported or Usage(
                input_tokens=input_tokens, output_tokens=output_tokens, estimated=True
            )
            cost = cost_nanos(c.model, spent)
            attempt.observe(spent, cost)
            return Guarded(
                value=value,
                model=c.model.name,
                provider=c.model.provider,
                usage=spent,
                cost_nanos=cost,
                attempts=attempt.number,
                request_id=request_id_var.get(),
            )

        async def run(rid: str) -> Guarded[T]:
            core = self.core
            record = CallRecord(
                request_id=rid, kind=CallKind.UNARY, job_id=job_id, labels=dict(labels or {})
            )
            current_record.set(record)
            t0 = core._clock()
            info = AttemptInfo(
                request_id=rid,
                kind=CallKind.UNARY,
                job_id=job_id,
                max_tokens=output_tokens,
                deadline=deadline,
                input_tokens=input_tokens,
                candidates=(cand,),
            )
            # The core's own bound (deadline, record finished and handed to the sinks) and its
            # attempt loop (guards, provider admission, retries): nothing here is a copy.
            async with core._bounded(deadline, record, t0) as bound:
                result = await core._loop.run(info, (cand,), body, record, deadline=bound)
                record.usage, record.cost_nanos = result.usage, result.cost_nanos
                record.outcome = CallOutcome.OK
                return result

        return await self._call("aurea.Embedded/Guarded", run)
