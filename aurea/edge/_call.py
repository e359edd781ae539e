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
from aurea.edge._keys import KeyRing
from aurea.edge._scopes import Authenticator, check_scope
from aurea.errors import ResourceExhausted, ShuttingDown
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
        max_streams_per_key: int = 0,
        revoked_grace_s: float = 0.0,
    ) -> None:
        self.auth = Authenticator(KeyRing(keys, clock=clock))
        self.keys = self.auth.ring
        self.limits = limits if limits is not None else InputSettings()
        self.max_streams_per_key = max_streams_per_key  # 0: no limit
        self.revoked_grace_s = revoked_grace_s
        # The calls running on each key (not in open mode), so a disabled key's calls can be
        # ended and its streams counted.
        self._live: dict[str, set[_Live]] = {}
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
        _current_live.set(None)
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
        principal, match = self.auth.identify(headers)
        if principal.name:
            structlog.contextvars.bind_contextvars(api_key=principal.name)
        check_scope(principal, operation)
        task = _task()
        if match is not None and task is not None:
            live = _Live(task, principal.name, match.digest)
            self._live.setdefault(principal.name, set()).add(live)
            _current_live.set(live)
        scope = CallScope(
            request_id=rid,
            operation=operation,
            principal=principal.name,
            tenant=principal.tenant,
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
        live = _current_live.get()
        if live is not None:
            _current_live.set(None)
            calls = self._live.get(live.key)
            if calls is not None:
                calls.discard(live)
                if not calls:
                    del self._live[live.key]
        latency_s = self.clock() - started
        with contextlib.suppress(Exception):
            log.info("rpc_finished", status=status, latency_ms=round(latency_s * 1e3, 3))
        if self.observer is not None:
            with contextlib.suppress(Exception):
                self.observer.finished(status, latency_s)

    # -- per-key streams and revocation ---------------------------------------------------------

    def begin_stream(self) -> None:
        """The call being served is a stream: count it against its key's most open streams
        (``max_streams``, else ``server.max_streams_per_key``); ResourceExhausted when full."""
        live = _current_live.get()
        if live is None or live.stream:
            return
        key = self.keys.get(live.key)
        cap = (key.max_streams if key is not None else 0) or self.max_streams_per_key
        if cap:
            n = sum(1 for c in self._live.get(live.key, ()) if c.stream)
            if n >= cap:
                raise ResourceExhausted(
                    f"API key {live.key!r} has {n} streams open, the most it may hold at once "
                    f"({cap}: the key's max_streams, else server.max_streams_per_key)",
                    retry_after_s=1.0,
                )
        live.stream = True

    def streams_of(self, name: str) -> int:
        return sum(1 for c in self._live.get(name, ()) if c.stream)

    def revoke(self, name: str, digest: bytes | None = None) -> None:
        """End the calls running on key ``name`` (only those that showed ``digest``, when given)
        after ``revoked_grace_s``, unless by then the key is enabled again (a disable) or the
        secret valid again (never, for a rotation). Ended calls fail UNAUTHENTICATED."""
        loop = asyncio.get_running_loop()
        loop.call_later(self.revoked_grace_s, self._end_calls, name, digest)

    def _end_calls(self, name: str, digest: bytes | None) -> None:
        key = self.keys.get(name)
        if digest is None and key is not None and not key.disabled:
            return  # enabled again within the grace period
        for live in list(self._live.get(name, ())):
            if digest is None or live.digest == digest:
                live.revoked = True
                live.task.cancel()
        if self._live.get(name):
            log.info("api_key_calls_ended", api_key=name)


def _task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop (a synchronous caller): nothing to end later
        return None


def revoked_now() -> bool:
    """Whether the call this task serves was ended because its key was disabled or rotated out
    (its CancelledError is then the edge's doing, not the client leaving)."""
    live = _current_live.get()
    return live is not None and live.revoked


class _Live:
    """One call running on a key."""

    __slots__ = ("digest", "key", "revoked", "stream", "task")

    def __init__(self, task: asyncio.Task[object], key: str, digest: bytes) -> None:
        self.task = task
        self.key = key
        self.digest = digest
        self.stream = False
        self.revoked = False


_current_live: ContextVar[_Live | None] = ContextVar("aurea_live_call", default=None)


REVOKED = "the API key was disabled, or its secret rotated out, while this call ran"


def log_bug(exc: BaseException) -> None:
    """Log a call that ended INTERNAL (``rpc_bug``, with the traceback). Never raises."""
    with contextlib.suppress(Exception):
        log.error("rpc_bug", error=repr(exc)[:2000], exc_info=exc)
