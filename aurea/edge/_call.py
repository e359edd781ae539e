"""One call's life at the edge, whatever the transport: request id, draining, authentication,
the operation's scope, in-flight counting and the one canonical ``rpc_finished`` log line.

A transport adapter (the gRPC interceptor, later the HTTP door) brackets every call::

    started = edge.clock()
    status = "OK"
    try:
        scope = edge.open_call(operation, headers, deadline)  # may raise an AureaError
        ...                                                    # serve; set ``status`` on failure
    finally:
        edge.finish_call(status, started)

``open_call`` counts the call in flight and sets the request id before anything can fail, so
``finish_call`` must run exactly once for every ``open_call``, whether it returned or raised;
after a refusal the request id is still in ``request_id_var`` for the error reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Protocol

import structlog

from aurea.config import ApiKey, InputSettings
from aurea.edge._scopes import Authenticator, check_scope
from aurea.errors import ShuttingDown
from aurea.runtime.context import request_id_var
from aurea.security._limits import current_limits
from aurea.types import CallScope

__all__ = [
    "DRAIN_EXEMPT",
    "CallTracker",
    "Edge",
    "current_scope",
    "log_bug",
    "valid_request_id",
]

log = structlog.get_logger("aurea.api")

# The scope of the call the current task serves; servicers read it (None outside a call).
current_scope: ContextVar[CallScope | None] = ContextVar("aurea_call_scope", default=None)

# Calls still answered while draining, so operators can watch the drain.
DRAIN_EXEMPT = frozenset({"aurea.v1.AdminService/GetInfo"})

_NO_LABELS: Mapping[str, str] = MappingProxyType({})


def valid_request_id(value: str) -> bool:
    """A client-chosen request id is kept when it is 1-128 printable ASCII characters, no space."""
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable() and " " not in value


class CallObserver(Protocol):
    """Telemetry around each call (``aurea.telemetry.observer.CallTelemetry``): ``opened`` and
    ``finished`` run once per call, in its task; neither may raise."""

    def opened(
        self, operation: str, headers: Mapping[str, str], request_id: str, transport: str
    ) -> None: ...

    def finished(self, status: str, latency_s: float) -> None: ...


class CallTracker:
    """Counts calls in flight so a drain can wait for them; ``draining`` refuses new ones."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class Edge:
    """What every transport does around a call; one per server, shared by its transports."""

    def __init__(
        self,
        *,
        keys: Iterable[ApiKey],
        tracker: CallTracker | None = None,
        clock: Callable[[], float] = time.monotonic,
        limits: InputSettings | None = None,
    ) -> None:
        self.auth = Authenticator(keys)
        self.limits = limits if limits is not None else InputSettings()
        self.tracker = tracker if tracker is not None else CallTracker()
        self.clock = clock
        self.observer: CallObserver | None = None  # set by the server when telemetry is on

    @property
    def draining(self) -> bool:
        return self.tracker.draining

    def open_call(
        self,
        operation: str,
        headers: Mapping[str, str],
        deadline: float | None = None,
        *,
        transport: str = "grpc",
    ) -> CallScope:
        """Admit one call of ``operation`` ("aurea.v1.InferenceService/Generate").

        ``headers`` has lower-case names; ``deadline`` is a ``clock()`` instant or None. Sets
        ``request_id_var``, the log context and ``current_scope``; raises ShuttingDown while
        draining, Unauthenticated or PermissionDenied.
        """
        self.tracker.enter()
        current_limits.set(self.limits)
        rid = headers.get("x-request-id", "")
        if not valid_request_id(rid):
            rid = os.urandom(16).hex()
        request_id_var.set(rid)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=rid, rpc=operation.rpartition("/")[2] or operation
        )
        if self.observer is not None:  # before any refusal, so refusals are counted and traced
            with contextlib.suppress(Exception):
                self.observer.opened(operation, headers, rid, transport)
        if self.tracker.draining and operation not in DRAIN_EXEMPT:
            raise ShuttingDown(
                "the server is draining for shutdown; retry on another replica", retry_after_s=1.0
            )
        principal = self.auth.authenticate(headers)
        if principal.name:
            structlog.contextvars.bind_contextvars(api_key=principal.name)
        check_scope(principal, operation)
        scope = CallScope(
            request_id=rid,
            operation=operation,
            principal=principal.name,
            scopes=principal.scopes,
            deadline=deadline,
            transport=transport,
            labels=_NO_LABELS,
        )
        current_scope.set(scope)
        return scope

    def finish_call(self, status: str, started: float) -> None:
        """End the call ``open_call`` admitted: one ``rpc_finished`` line with the status the
        client received. Never raises: a failing log sink must not fail or wedge a call."""
        self.tracker.leave()
        latency_s = self.clock() - started
        with contextlib.suppress(Exception):
            log.info("rpc_finished", status=status, latency_ms=round(latency_s * 1e3, 3))
        if self.observer is not None:
            with contextlib.suppress(Exception):
                self.observer.finished(status, latency_s)


def log_bug(exc: BaseException) -> None:
    """Log a call that ended INTERNAL (``rpc_bug``, with the traceback). Never raises."""
    with contextlib.suppress(Exception):
        log.error("rpc_bug", error=repr(exc)[:2000], exc_info=exc)
