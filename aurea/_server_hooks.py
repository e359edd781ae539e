"""The callbacks ``AureaServer`` hands its parts: what breakers, limits, actors, calls and the
provisioner tell it, turned into system events and metrics, and what routing, the metrics
scrape and ``/readyz`` read of its state (a base class the server inherits)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from grpc_health.v1 import health_pb2

from aurea.actors.breaker import BreakerState
from aurea.actors.provider import ProviderBook, ProviderMsg
from aurea.api.health import CappedHealthServicer
from aurea.config import ModelSpec, Settings
from aurea.inference.calls import CallRecord
from aurea.ledger import LedgerBook
from aurea.limits import ModelLimits
from aurea.providers._base import FinishReason
from aurea.runtime import ActorRef
from aurea.telemetry import metrics
from aurea.telemetry.events import EventBus

__all__ = ["ServerHooks"]

_background: set[asyncio.Future[None]] = set()


class ServerHooks:
    """The server's callbacks; ``AureaServer`` sets the attributes in its ``__init__``."""

    settings: Settings
    clock: Callable[[], float]
    events: EventBus
    health: CappedHealthServicer
    provider_refs: dict[str, ActorRef[ProviderMsg]]
    provider_books: dict[str, ProviderBook]
    ledger: LedgerBook | None

    def _infra_event(self, kind: str, attributes: Mapping[str, str]) -> None:
        self.events.publish(kind, **attributes)

    # -- what breakers and limits tell (events and metrics) ------------------------------
    def _breaker_moved(self, provider: str, model: str, state: str) -> None:
        if self.settings.telemetry.metrics_enabled:
            metrics.breaker_transition(provider, model, state)
        name = "opened" if state == "open" else state
        self.events.publish(f"breaker.{name}", provider=provider, model=model)

    def _limits_changed(self, now: ModelLimits, previous: ModelLimits) -> None:
        self.events.publish(
            "limits.changed",
            model=now.model,
            rpm=now.rpm,
            tpm=now.tpm,
            max_concurrency=now.max_concurrency,
        )

    def _rate_limited(self, model: str, limit: str) -> None:
        if self.settings.telemetry.metrics_enabled:
            label = {"max_concurrency": "concurrency", "upstream": "other"}.get(limit, limit)
            metrics.ratelimit_refused(model, label)

    def _rate_waited(self, model: str, seconds: float) -> None:
        if self.settings.telemetry.metrics_enabled:
            metrics.ratelimit_waited(model, seconds)

    def _actor_restarted(self, name: str, exc: BaseException) -> None:
        self.events.publish("actor.restarted", actor=name, error=type(exc).__name__)

    def _actor_dead(self, name: str) -> None:
        self.events.publish("actor.dead", actor=name)
        # Routing survives a dead router (calls use its last published table); with every
        # provider's actor dead nothing can serve a call: tell load balancers.
        if name.startswith("provider:") and not any(r.alive for r in self.provider_refs.values()):
            for service in ("", "aurea.v1.InferenceService"):
                task = asyncio.ensure_future(
                    self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
                )
                _background.add(task)
                task.add_done_callback(_background.discard)

    def _budget_event(self, record: CallRecord) -> None:
        """A call refused or stopped by its job's budget is a system event."""
        if (
            record.error == "BUDGET_EXCEEDED"
            or record.finish_reason is FinishReason.BUDGET_EXCEEDED
        ):
            self.events.publish(
                "budget.exceeded",
                job_id=record.job_id,
                model=record.model,
                request_id=record.request_id,
            )

    def _breaker_open(self, model: ModelSpec) -> bool:
        """Whether ``model``'s breaker refuses every attempt now (open, no probe due yet): read
        by routing per call, so the closed case costs two lookups."""
        book = self.provider_books.get(model.provider)
        breaker = book.breakers.get(model.name) if book is not None else None
        if breaker is None or breaker.state is BreakerState.CLOSED:
            return False
        return breaker.view(self.clock()).state is BreakerState.OPEN

    def _breaker_states(self) -> list[tuple[str, str, str]]:
        """(provider, model, state) of every breaker, read at scrape time."""
        return [
            (name, model, str(breaker.state))
            for name, book in self.provider_books.items()
            for model, breaker in list(book.breakers.items())
        ]

    async def _ledger_ready(self) -> str | None:
        since = self.ledger.journal.failing_since if self.ledger is not None else None
        if since is None:
            return None
        return f"the ledger store has been failing for {self.clock() - since:.0f} s"

    async def _providers_ready(self) -> str | None:
        if any(r.alive for r in self.provider_refs.values()):
            return None
        return "no provider actor is running"
