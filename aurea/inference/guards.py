"""The guard seam: a ``Guard`` admits one attempt on one candidate and hands back a ``Permit``;
the attempt loop enters every permit with an ``AsyncExitStack``, so each is released, in reverse
order, on every exit path. Breakers, limiters and the ledger plug in here.

Ships with the allow/deny guard, which decides in memory without a mailbox hop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from aurea.actors.router import Candidate
from aurea.errors import ModelDenied
from aurea.inference.calls import CallKind
from aurea.providers._base import Usage


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptInfo:
    """What a guard may know of the call an attempt belongs to."""

    request_id: str
    kind: CallKind
    job_id: str = ""
    principal: str = ""
    max_tokens: int = 0  # 0: the model's default
    # For guards that wait or estimate (the rate limiter); the defaults mean "not known".
    deadline: float | None = None  # monotonic instant the whole call must end by
    input_tokens: int = 0  # an estimate of the prompt's tokens (actual usage corrects it)
    candidates: tuple[Candidate, ...] = ()  # the call's candidates, in order


class Permit(Protocol):
    """A grant for one attempt. ``observe`` is synchronous (called per usage update, so no ask
    per delta) and may raise to end the attempt; ``__aexit__`` settles or refunds and is never
    skipped."""

    def observe(self, usage: Usage, cost_nanos: int) -> None: ...

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Guard(Protocol):
    name: str

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> Permit:
        """A permit for this attempt, or raise the refusal (classified by the attempt loop)."""
        ...


class NoopPermit:
    """The permit of a guard that only decides at admission and has nothing to settle."""

    __slots__ = ()

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        pass

    async def __aenter__(self) -> NoopPermit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


NOOP_PERMIT = NoopPermit()


class AllowDenyGuard:
    """Refuses models the server's configuration denies (deny wins over allow; an empty allow
    list allows all). Applied to every attempt, so no path (explicit model, policy, fallback)
    can reach a denied model."""

    name = "allow_deny"

    def __init__(self, *, allowed: Iterable[str] = (), denied: Iterable[str] = ()) -> None:
        self._allowed = frozenset(allowed)
        self._denied = frozenset(denied)

    def permits(self, model: str) -> bool:
        return model not in self._denied and (not self._allowed or model in self._allowed)

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> Permit:
        name = candidate.model.name
        if not self.permits(name):
            raise ModelDenied(f"model {name!r} is denied by this server's configuration")
        return NOOP_PERMIT
