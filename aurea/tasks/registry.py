"""Task kinds: named handlers with a default pool, timeout and retry policy, registered with the
``@task`` decorator and loaded from the modules named in ``tasks.modules``.

::

    from aurea.tasks import task

    @task("compute.sum", pool="general", timeout_s=10, retries=2)
    async def compute_sum(payload: dict, ctx: TaskContext) -> int:
        return sum(payload["numbers"])

A handler takes the payload (a JSON object) and a ``TaskContext`` and returns a JSON value. A
plain (non-async) function runs on a worker thread; a timeout or cancellation then abandons it,
as threads cannot be stopped, so long work belongs in async handlers.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aurea.config import ConfigError
from aurea.tasks.context import TaskContext
from aurea.tasks.schema import check_schema

__all__ = [
    "DEFAULT_REGISTRY",
    "MAX_ATTEMPTS",
    "MAX_TIMEOUT_S",
    "Handler",
    "RetryPolicy",
    "TaskKind",
    "TaskRegistry",
    "load_modules",
    "task",
]

Handler = Callable[[dict[str, Any], TaskContext], Any]
F = TypeVar("F", bound=Handler)

MAX_ATTEMPTS = 20
MAX_TIMEOUT_S = 86_400.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,127}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Attempts a task gets, and the wait before each retry: ``backoff_s`` doubling per retry
    up to ``backoff_max_s``, with equal jitter (between half and all of it)."""

    max_attempts: int = 1
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS:
            raise ValueError(f"max_attempts must be in [1, {MAX_ATTEMPTS}]")
        for name in ("backoff_s", "backoff_max_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= MAX_TIMEOUT_S):
                raise ValueError(f"{name} must be in [0, {MAX_TIMEOUT_S:g}] seconds")
        if self.backoff_s > self.backoff_max_s:
            raise ValueError("backoff_s must not exceed backoff_max_s")

    def delay_s(self, attempt: int, jitter: float) -> float:
        """The wait after failed attempt ``attempt`` (from 1); ``jitter`` in [0, 1)."""
        full = min(self.backoff_s * 2.0 ** min(attempt - 1, 60), self.backoff_max_s)
        return full * (0.5 + 0.5 * jitter)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskKind:
    name: str
    handler: Handler
    pool: str = "general"
    timeout_s: float = 300.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    description: str = ""
    payload_schema: Mapping[str, Any] | None = None
    # Extra checks at submission (raise InvalidRequest), for what a schema cannot say.
    validate: Callable[[dict[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"task kind {self.name!r}: a name is 1-128 characters of a-z 0-9 _ . - "
                "starting with a letter or digit"
            )
        if not _NAME.match(self.pool) or len(self.pool) > 64:
            raise ValueError(f"task kind {self.name!r}: bad pool name {self.pool!r}")
        if not (math.isfinite(self.timeout_s) and 0 < self.timeout_s <= MAX_TIMEOUT_S):
            raise ValueError(
                f"task kind {self.name!r}: timeout_s must be in (0, {MAX_TIMEOUT_S:g}]"
            )
        if not callable(self.handler):
            raise TypeError(f"task kind {self.name!r}: the handler is not callable")
        if self.payload_schema is not None:
            check_schema(self.payload_schema)

    async def invoke(self, payload: dict[str, Any], ctx: TaskContext) -> Any:
        if _is_async(self.handler):
            return await self.handler(payload, ctx)
        result = await asyncio.to_thread(self.handler, payload, ctx)
        if inspect.isawaitable(result):  # a plain function that returned a coroutine
            return await result
        return result


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


class TaskRegistry:
    """Kinds by name. Registering a second kind under a taken name is an error, unless it is
    the same handler again (a module imported twice)."""

    def __init__(self, kinds: Iterable[TaskKind] = ()) -> None:
        self._kinds: dict[str, TaskKind] = {}
        for kind in kinds:
            self.add(kind)

    def add(self, kind: TaskKind) -> TaskKind:
        old = self._kinds.get(kind.name)
        if old is not None and _same_function(old.handler, kind.handler):
            return old
        if old is not None:
            raise ValueError(f"task kind {kind.name!r} is already registered")
        self._kinds[kind.name] = kind
        return kind

    def get(self, name: str) -> TaskKind | None:
        return self._kinds.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[TaskKind]:
        return iter(sorted(self._kinds.values(), key=lambda k: k.name))

    def __len__(self) -> int:
        return len(self._kinds)

    def task(
        self,
        name: str,
        *,
        pool: str = "general",
        timeout_s: float = 300.0,
        retries: int = 0,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        description: str | None = None,
        payload_schema: Mapping[str, Any] | None = None,
        validate: Callable[[dict[str, Any]], None] | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as task kind ``name``; ``retries`` extra attempts
        (so ``retries + 1`` in all) after a failed or timed-out one."""

        def register(fn: F) -> F:
            doc = (inspect.getdoc(fn) or "").strip().splitlines()
            self.add(
                TaskKind(
                    name=name,
                    handler=fn,
                    pool=pool,
                    timeout_s=timeout_s,
                    retry=RetryPolicy(
                        max_attempts=retries + 1, backoff_s=backoff_s, backoff_max_s=backoff_max_s
                    ),
                    description=description if description is not None else (doc[0] if doc else ""),
                    payload_schema=payload_schema,
                    validate=validate,
                )
            )
            return fn

        return register


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    if a is b:
        return True
    # The same function object from a module imported again (``importlib.reload``).
    names = [(getattr(f, "__module__", None), getattr(f, "__qualname__", None)) for f in (a, b)]
    return None not in names[0] and names[0] == names[1]


DEFAULT_REGISTRY = TaskRegistry()
"""Where ``@task`` registers; the server serves these kinds plus its built-in ones."""

task = DEFAULT_REGISTRY.task


def load_modules(names: Iterable[str]) -> None:
    """Import each module (its ``@task`` functions register themselves); a module that does not
    import is a configuration error naming it."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or the module itself failing
            raise ConfigError(
                "tasks.modules", f"module {name!r} does not import: {type(exc).__name__}: {exc}"
            ) from exc
