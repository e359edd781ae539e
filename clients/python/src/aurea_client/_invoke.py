"""One place that makes calls, for the asyncio and the blocking client alike: the API key on
every call, a deadline per call that bounds its retries too, retries on ``UNAVAILABLE`` by the
``RetryPolicy`` (a stream only before its first message), and grpc errors raised as the client's
typed exceptions."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import grpc

from aurea_client._errors import AureaError, from_rpc_error
from aurea_client._options import RetryPolicy

T = TypeVar("T")
Method = Callable[..., Any]  # a generated stub's multi-callable


class _Base:
    def __init__(
        self,
        *,
        metadata: tuple[tuple[str, str], ...],
        retry: RetryPolicy,
        timeout_s: float | None,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.metadata = metadata
        self.retry = retry
        self.timeout_s = timeout_s
        self.clock = clock
        self.jitter = jitter
        self.retries = 0  # retries made, over the invoker's life
        self.waited_s = 0.0  # seconds slept before them

    def deadline(self, timeout_s: float | None) -> float | None:
        t = self.timeout_s if timeout_s is None else timeout_s
        return None if t is None else self.clock() + t

    def remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(deadline - self.clock(), 0.0)

    def next_delay(self, attempt: int, err: AureaError, deadline: float | None) -> float | None:
        delay = self.retry.delay_s(attempt, err, self.jitter())
        if delay is None or (deadline is not None and self.clock() + delay >= deadline):
            return None
        return delay


class AioInvoker(_Base):
    """Calls through ``grpc.aio`` stubs."""

    async def unary(self, method: Method, request: Any, timeout_s: float | None = None) -> Any:
        deadline = self.deadline(timeout_s)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await method(
                    request, metadata=self.metadata, timeout=self.remaining(deadline)
                )
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                delay = self.next_delay(attempt, err, deadline)
                if delay is None:
                    raise err from exc
            self.retries += 1
            self.waited_s += delay
            await asyncio.sleep(delay)

    async def stream(
        self,
        method: Method,
        request: Any,
        convert: Callable[[Any], T | None],
        timeout_s: float | None = None,
    ) -> AsyncIterator[T]:
        """The converted messages of a server stream (None from ``convert`` is skipped)."""
        deadline = self.deadline(timeout_s)
        attempt = 0
        while True:
            attempt += 1
            call = method(request, metadata=self.metadata, timeout=self.remaining(deadline))
            received = False
            try:
                async for message in call:
                    received = True
                    item = convert(message)
                    if item is not None:
                        yield item
                return
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                delay = None if received else self.next_delay(attempt, err, deadline)
                if delay is None:
                    raise err from exc
            finally:
                call.cancel()  # a no-op once the stream ended; stops it if the reader left
            self.retries += 1
            self.waited_s += delay
            await asyncio.sleep(delay)


class SyncInvoker(_Base):
    """Calls through blocking grpc stubs."""

    def unary(self, method: Method, request: Any, timeout_s: float | None = None) -> Any:
        deadline = self.deadline(timeout_s)
        attempt = 0
        while True:
            attempt += 1
            try:
                return method(request, metadata=self.metadata, timeout=self.remaining(deadline))
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                delay = self.next_delay(attempt, err, deadline)
                if delay is None:
                    raise err from exc
            self.retries += 1
            self.waited_s += delay
            time.sleep(delay)

    def stream(
        self,
        method: Method,
        request: Any,
        convert: Callable[[Any], T | None],
        timeout_s: float | None = None,
    ) -> Iterator[T]:
        deadline = self.deadline(timeout_s)
        attempt = 0
        while True:
            attempt += 1
            call = method(request, metadata=self.metadata, timeout=self.remaining(deadline))
            received = False
            try:
                for message in call:
                    received = True
                    item = convert(message)
                    if item is not None:
                        yield item
                return
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                delay = None if received else self.next_delay(attempt, err, deadline)
                if delay is None:
                    raise err from exc
            finally:
                call.cancel()
            self.retries += 1
            self.waited_s += delay
            time.sleep(delay)
