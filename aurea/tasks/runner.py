"""One attempt of one claimed task: run its kind's handler under the attempt's timeout, then
record the outcome in the store (ack, retry with backoff, or fail) and publish the change.

An attempt ends in exactly one of these ways: its handler returned (ack), raised (retry while
attempts remain and the error is retryable, else fail), ran past its timeout (TIMED_OUT, retried
like an error), was cancelled by CancelTask (CANCELLED), lost its lease to another worker
(nothing is recorded: the task is someone else's now), or was interrupted because the scheduler
stopped (requeued at once while attempts remain).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Any

import structlog

from aurea.errors import AureaError, BudgetExceeded, ProviderError
from aurea.errors import InvalidRequest as _InvalidRequest
from aurea.errors import NotFound as _NotFound
from aurea.errors import PermissionDenied as _PermissionDenied
from aurea.runtime.context import request_id_var
from aurea.stores import TaskQueueStore, TaskRecord, TaskState, WallClock, wall_clock
from aurea.tasks.context import TaskContext
from aurea.tasks.events import TaskHub
from aurea.tasks.model import Failure, Reason, Status, encode_error, split_envelope
from aurea.tasks.registry import TaskRegistry

__all__ = ["Attempt", "Runner"]

log = structlog.get_logger("aurea.tasks")

# Errors another attempt cannot fix: the request itself, a permission, a budget.
_PERMANENT: tuple[type[AureaError], ...] = (
    _InvalidRequest,
    _NotFound,
    _PermissionDenied,
    BudgetExceeded,
)


def retryable(exc: AureaError) -> bool:
    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, ProviderError):
        return exc.retryable
    return True


class Attempt:
    """A running attempt as the scheduler sees it: cancellable with a reason."""

    __slots__ = ("cancel_reason", "handler", "record")

    def __init__(self, record: TaskRecord) -> None:
        self.record = record
        self.handler: asyncio.Future[Any] | None = None
        self.cancel_reason: Reason | None = None

    def cancel(self, reason: Reason) -> None:
        """Stop the handler; the first reason given is the one recorded."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
        if self.handler is not None:
            self.handler.cancel()


class Runner:
    """Runs attempts; ``running`` (task id -> Attempt) is what CancelTask and the heartbeat
    loop act on."""

    def __init__(
        self,
        *,
        store: TaskQueueStore,
        registry: TaskRegistry,
        hub: TaskHub,
        max_result_bytes: int,
        on_requeued: Callable[[str, float], None] = lambda pool, delay_s: None,
        wall: WallClock = wall_clock,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._registry = registry
        self._hub = hub
        self._max_result_bytes = max_result_bytes
        self._on_requeued = on_requeued
        self._wall = wall
        self._clock = clock
        self._jitter = jitter
        self.running: dict[str, Attempt] = {}

    async def run(self, record: TaskRecord) -> None:
        """Run one claimed attempt to its recorded end. Raises only CancelledError (when the
        calling worker is cancelled: the attempt is then requeued as INTERRUPTED)."""
        attempt = Attempt(record)
        self.running[record.task_id] = attempt
        token = request_id_var.set(f"task-{record.task_id}-{record.attempts}")
        try:
            try:
                outcome = await self._execute(attempt)
            except asyncio.CancelledError:
                await self._interrupted(record)
                raise
            finally:
                self.running.pop(record.task_id, None)
            await self._settle(record, outcome)
        finally:
            request_id_var.reset(token)

    async def _execute(self, attempt: Attempt) -> str | Failure:
        """The handler's result as JSON text, or how the attempt failed."""
        rec = attempt.record
        kind = self._registry.get(rec.kind)
        if kind is None:
            return Failure(
                Reason.KIND_NOT_FOUND,
                f"no task kind {rec.kind!r} is registered on this server",
                retryable=False,
            )
        timeout_s, payload_text = split_envelope(rec.payload)
        timeout_s = timeout_s or kind.timeout_s
        try:
            payload = json.loads(payload_text) if payload_text else {}
        except ValueError as exc:
            return Failure(Reason.BAD_PAYLOAD, f"the stored payload is not JSON: {exc}", False)
        ctx = TaskContext(
            task_id=rec.task_id,
            kind=rec.kind,
            pool=rec.pool,
            job_id=rec.job_id,
            attempt=rec.attempts,
            max_attempts=rec.max_attempts,
            request_id=request_id_var.get(),
            deadline=self._clock() + timeout_s,
            _report=lambda f, m: self._hub.progressed(rec, f, m),
            _clock=self._clock,
        )
        handler = attempt.handler = asyncio.ensure_future(kind.invoke(payload, ctx))
        if attempt.cancel_reason is not None:
            handler.cancel()
        bound = asyncio.timeout(timeout_s)
        try:
            async with bound:
                value = await handler
        except TimeoutError as exc:
            if bound.expired():
                return Failure(
                    Reason.TIMED_OUT, f"the attempt ran longer than its {timeout_s:g} s", True
                )
            return Failure(Reason.HANDLER_ERROR, _describe(exc), True)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                if not handler.done():
                    handler.cancel()
                raise
            reason = attempt.cancel_reason or Reason.HANDLER_ERROR
            return Failure(reason, _cancel_message(reason), False)
        except AureaError as exc:
            return Failure(exc.reason, exc.message, retryable(exc))
        except Exception as exc:
            return Failure(Reason.HANDLER_ERROR, _describe(exc), True)
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            return Failure(Reason.BAD_RESULT, f"the handler's result is not JSON: {exc}", False)
        if len(text.encode()) > self._max_result_bytes:
            return Failure(
                Reason.BAD_RESULT,
                f"the handler's result is {len(text.encode())} bytes of JSON, over the "
                f"{self._max_result_bytes} bytes allowed (tasks.max_result_bytes)",
                False,
            )
        return text

    async def _settle(self, rec: TaskRecord, outcome: str | Failure) -> None:
        now = self._wall()
        if isinstance(outcome, str):
            done = await self._store.ack(rec.task_id, rec.attempts, outcome, now=now)
        elif outcome.reason == Reason.LEASE_LOST:
            log.warning("task_lease_lost", task_id=rec.task_id, attempt=rec.attempts)
            self._hub.forget_progress(rec.task_id)
            return
        else:
            retry_at: float | None = None
            delay_s = 0.0
            if outcome.retryable and rec.attempts < rec.max_attempts:
                kind = self._registry.get(rec.kind)
                if kind is not None:
                    delay_s = kind.retry.delay_s(rec.attempts, self._jitter())
                    retry_at = now + delay_s
            error = encode_error(outcome.reason, outcome.message)
            done = await self._store.nack(
                rec.task_id, rec.attempts, error, retry_at=retry_at, now=now
            )
            if done is not None and done.state is TaskState.QUEUED:
                self._on_requeued(rec.pool, delay_s)
        if done is None:  # the lease had expired and the task moved on without us
            log.warning("task_attempt_superseded", task_id=rec.task_id, attempt=rec.attempts)
            return
        self._hub.changed(done, Status.RUNNING)

    async def _interrupted(self, rec: TaskRecord) -> None:
        """The scheduler is stopping mid-attempt: requeue the task at once (the attempt counts),
        so the next start (or another replica) runs it without waiting for the lease."""
        now = self._wall()
        error = encode_error(Reason.INTERRUPTED, "the server stopped during the attempt")
        try:
            done = await self._store.nack(rec.task_id, rec.attempts, error, retry_at=now, now=now)
        except Exception as exc:  # the lease expires instead; nothing is lost
            log.warning("task_requeue_failed", task_id=rec.task_id, error=repr(exc))
            return
        if done is not None:
            self._hub.changed(done, Status.RUNNING)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cancel_message(reason: Reason) -> str:
    if reason == Reason.CANCELLED:
        return "cancelled by CancelTask"
    if reason == Reason.LEASE_LOST:
        return "the task's lease was lost to another worker"
    return "the handler was cancelled"
