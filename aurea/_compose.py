"""Builders for the composition root: the actors, inference core, cache, task scheduler and
shared (Redis) stores that ``AureaServer`` wires together when its core starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aurea.actors.provider import ProviderActor, ProviderBook
from aurea.actors.router import Router
from aurea.cache import CachedInference, ResponseCache
from aurea.config import ConfigError
from aurea.errors import AureaError
from aurea.inference import AllowDenyGuard, Inference
from aurea.inference.calls import CallRecord
from aurea.infra import Infra
from aurea.infra.pools import PoolResources, ResourceAutoscaler
from aurea.infra.tasks import resource_execute_kind
from aurea.ledger import LedgerGuard
from aurea.limits import LimiterGuard
from aurea.providers._base import Provider
from aurea.providers.registry import build_provider
from aurea.routing import RouterView, RoutingTable, StatsStore
from aurea.security._keyguard import KeyPolicyGuard
from aurea.stores.memory import MemoryLimiterStore
from aurea.telemetry import metrics
from aurea.telemetry.cpu import host_percent
from aurea.telemetry.logging import log_call_events
from aurea.telemetry.tracing import TracingGuard

if TYPE_CHECKING:
    from aurea.server import AureaServer


def build_actors(server: AureaServer) -> Inference:
    s = server.settings
    cap = s.runtime.mailbox_capacity
    server.router_view = RouterView(RoutingTable(models=s.models, settings=s.routing))
    stats = server.router_stats
    assert stats is not None, "start_core() opens the router's store first"
    server.router = server.system.spawn(
        "router",
        lambda: Router(
            models=s.models,
            settings=s.routing,
            view=server.router_view,
            store=stats.store,
            inbox=server.router_inbox,
            health=server._breaker_open,
            clock=server.clock,
            wall_clock=server.wall_clock,
        ),
        capacity=cap,
    )
    for name, spec in s.providers.items():
        try:
            provider = build_provider(spec)
        except (ValueError, TypeError, AureaError) as exc:
            # Adapters check their options when built: report them as config errors.
            text = exc.message if isinstance(exc, AureaError) else str(exc)
            raise ConfigError(f"providers.{name}", text) from exc
        server.providers[name] = provider

        book = server.provider_books[name] = ProviderBook()  # outlives actor restarts

        def factory(
            p: Provider = provider,
            k: str = spec.kind,
            n: int = spec.max_concurrency,
            b: ProviderBook = book,
        ) -> ProviderActor:
            return ProviderActor(
                provider=p,
                kind=k,
                max_concurrency=n,
                book=b,
                breaker=s.breaker,
                on_breaker=server._breaker_moved,
                clock=server.clock,
                wall_clock=server.wall_clock,
            )

        server.provider_refs[name] = server.system.spawn(f"provider:{name}", factory, capacity=cap)
    server.infra = Infra(s.infra, server.system, capacity=cap, publish=server._infra_event)
    inference = Inference(
        view=server.router_view,
        providers=server.provider_refs,
        retry=s.retry,
        ask_timeout_s=s.runtime.ask_timeout_s,
        guards=[
            # first, so the attempt span sees later guards' refusals as its outcome
            *([TracingGuard(server.tracing)] if server.tracing is not None else []),
            AllowDenyGuard(allowed=s.routing.allowed_models, denied=s.routing.denied_models),
            # the calling API key's models and own rpm/tpm, before the model's limits
            KeyPolicyGuard(
                keys=server.edge.keys,
                store=MemoryLimiterStore() if server.shared is None else server.shared.limiter,
                groups=dict(s.routing.groups),
                wall_clock=server.wall_clock,
            ),
            LimiterGuard(
                table=server.limits,
                store=MemoryLimiterStore() if server.shared is None else server.shared.limiter,
                max_wait_s=s.limits.max_wait_s,
                hold_max_s=s.limits.upstream_hold_max_s,
                wall_clock=server.wall_clock,
                on_refused=server._rate_limited,
                on_waited=server._rate_waited,
            ),
            # after the limiter (a refused attempt reserves nothing), before the
            # provider: no byte goes upstream unless the job can pay the worst case
            *([LedgerGuard(server.ledger)] if server.ledger is not None else []),
        ],
        timeouts={name: spec.timeouts for name, spec in s.providers.items()},
        default_call_timeout_s=s.server.default_call_timeout_s,
        sinks=server._record_sinks(),
    )
    server._build_tasks(inference)
    # Around the whole call: a hit skips routing's attempts and every guard. TTLs run on
    # ``clock`` (tests step it); calls' deadlines and latencies on the edge's clock.
    server.cache = ResponseCache.from_settings(
        s.cache,
        s.redis,
        tenants={k.name: k.tenant_name for k in s.api_keys},  # one namespace per tenant
        metrics_on=s.telemetry.metrics_enabled,
        clock=server.clock,
        redis_client=server.shared.client if server.shared is not None else None,
    )
    server.cached = CachedInference(inference, server.cache, sinks=server._record_sinks())
    return inference


def build_tasks(server: AureaServer, inference: Inference) -> None:
    """The task scheduler, with its kinds (built-in ones use ``inference``)."""
    s = server.settings
    registry = server.task_system.registry(inference=inference, providers=server.providers)
    autoscaler: ResourceAutoscaler | None = None
    if server.infra is not None:  # tasks that run a command in a provisioned resource
        timeout = s.runtime.ask_timeout_s
        pools = {
            p.name: PoolResources(p, server.infra.ref, ask_timeout_s=timeout)
            for p in s.tasks.resource_pools
        }
        registry.add(resource_execute_kind(server.infra.ref, ask_timeout_s=timeout, pools=pools))
        autoscaler = ResourceAutoscaler(pools) if pools else None
    server.task_system.spawn(
        server.system,
        registry=registry,
        cpu_percent=lambda: host_percent(server.host_cpu),
        ask_timeout_s=s.runtime.ask_timeout_s,
        mailbox_capacity=s.runtime.mailbox_capacity,
        autoscaler=autoscaler,
    )


def record_sinks(server: AureaServer) -> list[Callable[[CallRecord], None]]:
    """Who reads each call's record: the router's stats, metrics, the call's span."""
    sinks: list[Callable[[CallRecord], None]] = [server.router_inbox, server.call_metrics]
    sinks.append(log_call_events)  # fallback and budget lines
    if server.settings.telemetry.metrics_enabled:
        sinks.append(metrics.record_call)
    if server.tracing is not None:
        sinks.append(server.tracing.record_call)
    sinks.append(server._budget_event)
    return sinks


async def open_shared(server: AureaServer) -> None:
    """``[redis] url``: the limiter, ledger, router stats and task queue live in Redis, so
    every replica on it keeps one state (the in-process stores stay the default)."""
    from aurea.ledger import open_shared_ledger
    from aurea.stores.redis.state import SharedState  # the redis extra: only when set

    s = server.settings
    shared = server.shared = await SharedState.open(
        s.redis, aging_s_per_priority=s.tasks.aging_s_per_priority
    )
    server.router_stats = StatsStore(shared.router_stats)
    server.ledger = await open_shared_ledger(
        s.ledger,
        shared.ledger,
        settle_wait_s=s.runtime.ask_timeout_s,
        wall=server.wall_clock,
        clock=server.clock,
    )
    server.ready_checks["ledger"] = server._ledger_ready
    server.task_system.store = shared.tasks
