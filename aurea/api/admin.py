"""AdminService: server info, process, host, actor and task pool metrics, system events,
providers and their stats, the response cache's figures and clearing."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import grpc
from google.protobuf import timestamp_pb2

from aurea.actors.provider import GetStats, ProviderMsg, ProviderStats
from aurea.api.cache import clear_cache, stats_pb
from aurea.api.ledger import metrics_summary_pb
from aurea.api.resilience import breakers_pb, list_model_limits, set_model_limits
from aurea.api.tasks import pool_pb
from aurea.cache import ResponseCache
from aurea.config import Settings
from aurea.errors import InvalidRequest, NotFound, Unavailable
from aurea.ledger import CallMetricsBook, LedgerBook
from aurea.limits import LimitsTable
from aurea.providers._base import ProviderSpec
from aurea.providers._urls import safe_url
from aurea.runtime import ActorRef, ActorSystem
from aurea.tasks import PoolStats
from aurea.telemetry.cpu import CpuWindow, host_memory_bytes, host_percent, process_cpu_s
from aurea.telemetry.events import Dropped, EventBus
from aurea.v1 import admin_pb2 as pb
from aurea.v1 import admin_pb2_grpc

_INT64_MAX = 2**63 - 1


def _i64(n: int) -> int:
    """A running total as an int64 field can carry it (saturating, never an encode error)."""
    return min(max(n, 0), _INT64_MAX)


def _ts(unix_s: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(unix_s * 1e9))
    return t


def _key_configured(spec: ProviderSpec) -> bool:
    """Whether the env vars holding the provider's credentials are set (values never read out)."""
    if spec.kind == "lambda":
        names = [
            str(spec.options.get("access_key_env", "AWS_ACCESS_KEY_ID")),
            str(spec.options.get("secret_key_env", "AWS_SECRET_ACCESS_KEY")),
        ]
    else:
        names = [spec.api_key_env] if spec.api_key_env else []
    return bool(names) and all(os.environ.get(n) for n in names)


def _rss_bytes() -> int:
    # /proc is a memory file system: reading it does not block on disk.
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        *,
        settings: Settings,
        system: ActorSystem,
        providers: Mapping[str, ActorRef[ProviderMsg]],
        version: str,
        features: list[str],
        draining: Callable[[], bool],
        cpu: CpuWindow | None = None,
        limits: LimitsTable | None = None,
        host_cpu: CpuWindow | None = None,
        events: EventBus | None = None,
        pools: Callable[[], Awaitable[Sequence[PoolStats]]] | None = None,
        call_metrics: CallMetricsBook | None = None,
        ledger: LedgerBook | None = None,
        tasks_processed: Callable[[], int] | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        self._cache = cache  # the response cache (None: the server runs without one)
        # GetMetricsSummary: calls counted from their records, spend from the ledger's settles
        self._call_metrics = call_metrics if call_metrics is not None else CallMetricsBook()
        self._ledger = ledger
        self._tasks_processed = tasks_processed
        self._host_cpu = host_cpu
        self._events = events if events is not None else EventBus()
        self._pools = pools
        self._cpu = cpu if cpu is not None else CpuWindow()
        self._limits = limits or LimitsTable(models=settings.models, settings=settings.limits)
        self._settings = settings
        self._system = system
        self._providers = providers
        self._version = version
        self._features = sorted(features)
        self._draining = draining
        self._started_wall = time.time()
        self._started = time.monotonic()
        self._timeout = settings.runtime.ask_timeout_s

    async def GetMetricsSummary(
        self, request: pb.GetMetricsSummaryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricsSummaryResponse:
        return metrics_summary_pb(
            self._call_metrics,
            self._ledger.totals if self._ledger is not None else {},
            started_at=self._started_wall,
            tasks_processed=self._tasks_processed() if self._tasks_processed else 0,
        )

    async def GetInfo(
        self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInfoResponse:
        return pb.GetInfoResponse(
            name="aurea",
            version=self._version,
            status=pb.SERVING_STATUS_DRAINING if self._draining() else pb.SERVING_STATUS_SERVING,
            uptime_ms=int((time.monotonic() - self._started) * 1e3),
            features=self._features,
            provider_count=len(self._settings.providers),
            model_count=len(self._settings.models),
            start_time=_ts(self._started_wall),
        )

    async def GetSystemMetrics(
        self, request: pb.GetSystemMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSystemMetricsResponse:
        rss = _rss_bytes()
        total, available = host_memory_bytes()
        pools: Sequence[PoolStats] = ()
        if self._pools is not None:
            try:
                pools = await self._pools()
            except Unavailable:  # the scheduler is down or its store is: report the rest
                pools = ()
        return pb.GetSystemMetricsResponse(
            host_cpu_percent=host_percent(self._host_cpu) if self._host_cpu else 0.0,
            host_memory_total_bytes=total,
            host_memory_available_bytes=available,
            pools=[pool_pb(p) for p in pools],
            cpu_percent=self._cpu.percent(),
            cpu_time_ms=int(process_cpu_s() * 1e3),
            memory_rss_bytes=rss,
            actors=[
                pb.ActorMetrics(
                    name=s.name,
                    mailbox_depth=s.depth,
                    mailbox_capacity=s.capacity,
                    restarts=s.restarts,
                    processed=s.processed,
                    avg_handling_ms=s.handling_seconds_total * 1e3 / s.processed
                    if s.processed
                    else 0.0,
                )
                for s in self._system.stats()
            ],
        )

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        if len(request.types) > 64:
            raise InvalidRequest.field("types", "must hold at most 64 types")
        with self._events.watch(request.types) as sub:
            while True:  # ends by the caller leaving, or ShuttingDown at drain
                item = await sub.get()
                if isinstance(item, Dropped):
                    yield pb.WatchEventsResponse(dropped=pb.EventsDropped(count=item.count))
                    continue
                yield pb.WatchEventsResponse(
                    event=pb.SystemEvent(
                        type=item.type,
                        event_time=_ts(item.time_s),
                        attributes=dict(item.attributes),
                        sequence=item.sequence,
                    )
                )

    def _models_of(self, provider: str) -> list[str]:
        return sorted(m.name for m in self._settings.models.values() if m.provider == provider)

    async def _stats(self, name: str) -> ProviderStats | None:
        """The provider's stats, or None when its actor is down."""
        try:
            stats: ProviderStats = await self._providers[name].ask(
                GetStats(), timeout_s=self._timeout
            )
        except Unavailable:
            return None
        return stats

    async def ListProviders(
        self, request: pb.ListProvidersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProvidersResponse:
        if not 0 <= request.page_size <= 1000:
            raise InvalidRequest.field("page_size", "must be between 0 and 1000")
        names = sorted(self._settings.providers)
        start = 0
        if request.page_token:
            if request.page_token not in names:
                raise InvalidRequest.field("page_token", "is not a token this RPC returned")
            start = names.index(request.page_token)
        size = request.page_size or 100
        page = names[start : start + size]
        out = []
        for name in page:
            spec = self._settings.providers[name]
            st = await self._stats(name)
            state, breakers = breakers_pb(st.breakers if st else (), self._models_of(name))
            out.append(
                pb.Provider(
                    name=name,
                    kind=spec.kind,
                    base_url=safe_url(spec.base_url),
                    healthy=st is not None and st.last_ok is not False,
                    circuit_state=state,
                    models=self._models_of(name),
                    api_key_configured=_key_configured(spec),
                    breakers=breakers,
                )
            )
        nxt = names[start + size] if start + size < len(names) else ""
        return pb.ListProvidersResponse(providers=out, next_page_token=nxt)

    async def GetProviderStats(
        self, request: pb.GetProviderStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProviderStatsResponse:
        if request.provider and request.provider not in self._providers:
            raise NotFound(
                f"provider {request.provider!r} is not configured; known: "
                f"{', '.join(sorted(self._providers))}"
            )
        names = [request.provider] if request.provider else sorted(self._providers)
        out = []
        for name in names:
            s = await self._stats(name)
            if s is None:  # its actor is down: report it with no numbers rather than fail
                out.append(pb.ProviderStats(provider=name))
                continue
            done = s.successes + s.failures
            msg = pb.ProviderStats(
                provider=name,
                requests=_i64(s.requests),
                successes=_i64(s.successes),
                failures=_i64(s.failures),
                cancelled=_i64(s.cancelled),
                success_rate=s.successes / done if done else 0.0,
                input_tokens=_i64(s.input_tokens),
                output_tokens=_i64(s.output_tokens),
                cost_nanos=_i64(s.cost_nanos),
                avg_latency_ms=s.total_latency_s * 1e3 / done if done else 0.0,
                rejected=_i64(s.rejected),
            )
            state, breakers = breakers_pb(s.breakers, self._models_of(name))
            msg.circuit_state = state
            msg.breakers.extend(breakers)
            if s.last_request_unix_s is not None:
                msg.last_request_time.CopyFrom(_ts(s.last_request_unix_s))
            out.append(msg)
        return pb.GetProviderStatsResponse(providers=out)

    async def GetCacheStats(
        self, request: pb.GetCacheStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCacheStatsResponse:
        if self._cache is None:
            return pb.GetCacheStatsResponse(enabled=False)
        return stats_pb(await self._cache.stats())

    async def ClearCache(
        self, request: pb.ClearCacheRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClearCacheResponse:
        reply = await clear_cache(self._cache, request)
        self._events.publish(
            "cache.cleared", entries=reply.entries_removed, bytes=reply.bytes_freed
        )
        return reply

    async def SetModelLimits(
        self, request: pb.SetModelLimitsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetModelLimitsResponse:
        return set_model_limits(self._limits, request)

    async def ListModelLimits(
        self, request: pb.ListModelLimitsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelLimitsResponse:
        return list_model_limits(self._limits, request)
