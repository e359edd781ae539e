"""The composition root: builds the actor system, providers and the gRPC server, and runs the
server's lifecycle (start, drain on SIGTERM, stop). The only module that imports everything."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from grpc_health.v1 import health_pb2

from aurea import _compose, _ports
from aurea._grpc_services import grpc_server
from aurea._ports import DEFAULT_METRICS_PORT as DEFAULT_METRICS_PORT
from aurea._server_hooks import ServerHooks, _background
from aurea._services import _SERVICES as _SERVICES
from aurea._services import SERVICE_NAMES
from aurea.actors.provider import ProviderBook, ProviderMsg
from aurea.actors.router import RouterMsg
from aurea.api.health import CappedHealthServicer
from aurea.cache import CachedInference, ResponseCache
from aurea.config import ConfigError, Settings, is_loopback
from aurea.edge import Edge
from aurea.http import HttpDoor
from aurea.inference import Inference
from aurea.inference.calls import CallRecord
from aurea.infra import Infra
from aurea.ledger import CallMetricsBook, LedgerBook, default_job, open_ledger
from aurea.limits import LimitsTable
from aurea.providers._base import Provider
from aurea.providers._tokens import preload
from aurea.routing import RecordInbox, RouterView, StatsStore, open_stats_store
from aurea.runtime import ActorRef, ActorSystem, RestartPolicy
from aurea.security import TlsFiles
from aurea.security._keyadmin import KeyAdmin
from aurea.tasks import PoolStats
from aurea.tasks.setup import TaskSystem
from aurea.telemetry import metrics
from aurea.telemetry.cpu import CpuWindow, host_cpu_window
from aurea.telemetry.events import EventBus
from aurea.telemetry.http import ReadyCheck, TelemetryHttp
from aurea.telemetry.observer import CallTelemetry
from aurea.telemetry.tracing import Tracing, build_tracing

if TYPE_CHECKING:  # the redis extra is imported only when [redis] url is set
    from aurea.stores.redis.state import SharedState

log = structlog.get_logger("aurea.server")

try:
    VERSION = metadata.version("aurea")
except metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "0.0.0+src"


class AureaServer(ServerHooks):
    """One Aurea server. ``async with AureaServer(settings) as s:`` serves on ``s.port``."""

    router_view: RouterView  # set by start_core() (_compose.build_actors)

    def __init__(
        self,
        settings: Settings,
        *,
        span_exporter: Any = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        # The clocks of the circuit breakers (monotonic) and the rate limits (wall, as stores
        # keep it); tests inject fake ones to step through open timeouts and limit windows.
        self.clock = clock
        self.wall_clock = wall_clock
        self.limits = LimitsTable(
            models=settings.models, settings=settings.limits, on_change=self._limits_changed
        )
        # Tracing (``[telemetry] otlp_endpoint``, or this exporter: tests pass an in-memory one)
        self.tracing: Tracing | None = build_tracing(
            settings.telemetry, version=VERSION, exporter=span_exporter
        )
        self.telemetry_http: TelemetryHttp | None = None
        self.metrics_port = 0  # the side port (/metrics, /healthz, /readyz); 0: not serving
        self.http: HttpDoor | None = None  # the OpenAI-compatible door ([http])
        self.http_port = 0  # 0: not serving
        self.inference: Inference | None = None  # built by start_core()
        # The response cache and the core behind it, which every door calls (start_core()).
        self.cache: ResponseCache | None = None
        self.cached: CachedInference | None = None
        self.infra: Infra | None = None  # the provisioner ([infra]); built with the actors
        # /readyz runs these (None: ready, else why not); stores add theirs before start()
        self.ready_checks: dict[str, ReadyCheck] = {"providers": self._providers_ready}
        self.events = EventBus(clock=wall_clock)  # system events (AdminService.WatchEvents)
        self.task_system = TaskSystem(
            settings.tasks, events=self.events, wall=wall_clock, clock=clock
        )
        self.system = ActorSystem(
            policy=RestartPolicy(), on_restart=self._actor_restarted, on_dead=self._actor_dead
        )
        self.edge = Edge(
            keys=settings.api_keys,
            limits=settings.input,
            max_streams_per_key=settings.server.max_streams_per_key,
            revoked_grace_s=settings.server.revoked_key_grace_s,
        )
        # Run-time key changes (AdminService key RPCs); route groups stand for their members.
        self.key_admin = KeyAdmin(
            self.edge,
            models={*settings.models, *(name for name, _ in settings.routing.groups)},
            set_budget=self._set_key_budget,
        )
        self.tls: TlsFiles | None = None  # [tls]: read by start()
        self.tracker = self.edge.tracker
        self.providers: dict[str, Provider] = {}
        self.provider_refs: dict[str, ActorRef[ProviderMsg]] = {}
        self.provider_books: dict[str, ProviderBook] = {}
        self.router: ActorRef[RouterMsg] | None = None
        self.router_inbox = RecordInbox()  # every call's record, for the router to learn from
        self.router_stats: StatsStore | None = None  # opened by start_core()
        self.ledger: LedgerBook | None = None  # opened by start_core()
        self.shared: SharedState | None = None  # [redis] url: the stores replicas share
        # Calls since start (GetMetricsSummary): counted from every call's record.
        self.call_metrics = CallMetricsBook({m.name: m.provider for m in settings.models.values()})
        self.health = CappedHealthServicer(max_watches=settings.server.max_health_watches)
        self.cpu = CpuWindow()
        self.host_cpu = host_cpu_window()  # task admission and system metrics read it
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._stopped = asyncio.Event()
        self._stopping = False

    @property
    def draining(self) -> bool:
        return self.tracker.draining

    def _build_actors(self) -> Inference:
        return _compose.build_actors(self)

    def _build_tasks(self, inference: Inference) -> None:
        """The task scheduler, with its kinds (built-in ones use ``inference``)."""
        _compose.build_tasks(self, inference)

    async def _task_pools(self) -> tuple[PoolStats, ...]:
        tasks = self.task_system.tasks
        return await tasks.pools() if tasks is not None else ()

    def _record_sinks(self) -> list[Callable[[CallRecord], None]]:
        return _compose.record_sinks(self)

    async def _start_telemetry_http(self) -> None:
        await _ports.start_telemetry_http(self)

    def _features(self) -> list[str]:
        kinds = {spec.kind for spec in self.settings.providers.values()}
        return sorted({"simulated"} & kinds | ({"local_model"} if "local" in kinds else set()))

    async def start(self) -> int:
        """Start actors and the gRPC server; returns the bound port. Idempotent."""
        if self._server is not None:
            return self.port
        s = self.settings
        host = s.server.host
        if not s.api_keys:
            # Settings refuse open mode off loopback unless forced; checked again here for
            # settings built by hand.
            if not is_loopback(host) and not s.server.allow_open_on_any_interface:
                raise ConfigError("server.host", "open mode (no API keys) only on loopback")
            log.warning(
                "open_mode",
                host=host,
                hint="no API keys configured: every caller reaching this port has full access",
            )
        if s.tls.cert_file and self.tls is None:  # before anything starts: bad files stop it
            self.tls = TlsFiles(s.tls)
        if s.telemetry.metrics_enabled or self.tracing is not None:
            self.edge.observer = CallTelemetry(
                metrics_on=s.telemetry.metrics_enabled, tracing=self.tracing
            )
        if s.telemetry.metrics_enabled:
            metrics.set_catalog(s.models, s.providers)
            metrics.build_info(VERSION)
            metrics.watch_actors(self.system)
            metrics.watch_breakers(self._breaker_states)
        await self.start_core()
        inference = self.cached
        assert inference is not None
        server = grpc_server(self, inference, version=VERSION)
        address = f"[{host}]:{s.server.port}" if ":" in host else f"{host}:{s.server.port}"
        try:
            if self.tls is not None:
                self.port = server.add_secure_port(address, self.tls.grpc_credentials())
            else:
                self.port = server.add_insecure_port(address)
        except RuntimeError as exc:
            await self.system.stop(grace_s=0)
            raise ConfigError(
                "server.port", f"cannot listen on {address} (in use, or not an address here)"
            ) from exc
        await server.start()
        self._server = server
        self.cpu.start()
        self.host_cpu.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        try:
            await self._start_telemetry_http()
        except ConfigError:
            await server.stop(0)
            await self.system.stop(grace_s=0)
            raise
        await self._start_http(inference)
        log.info(
            "server_started",
            host=host,
            port=self.port,
            http_port=self.http_port,
            version=VERSION,
            providers=sorted(s.providers),
            models=len(s.models),
        )
        return self.port

    def reload_tls(self) -> bool:
        """Read the ``[tls]`` files again (SIGHUP): new connections on every port use them.
        A failed reload keeps the files already in use; returns whether it reloaded."""
        if self.tls is None:
            return False
        try:
            self.tls.reload()
        except ConfigError as exc:
            log.error("tls_reload_failed", error=str(exc), hint="still serving the old files")
            return False
        log.info("tls_reloaded", reloads=self.tls.reloads)
        return True

    async def _open_shared(self) -> None:
        await _compose.open_shared(self)

    async def start_core(self) -> Inference:
        """Build and start the actors and the inference core, without any transport (what
        ``aurea.Embedded`` runs in-process; ``start`` calls it first). Idempotent."""
        if self.inference is None:
            s = self.settings
            if s.redis.url and self.shared is None:
                await self._open_shared()
            if self.router_stats is None:
                self.router_stats = await open_stats_store(s.routing)
            if self.ledger is None:  # before the guards: every call is charged to it
                self.ledger = await open_ledger(
                    s.ledger,
                    settle_wait_s=s.runtime.ask_timeout_s,
                    wall=self.wall_clock,
                    clock=self.clock,
                )
                self.ready_checks["ledger"] = self._ledger_ready
            self.inference = self._build_actors()
            # Load tokenizers off the loop now, so the first estimate does not stall a call.
            await asyncio.to_thread(preload, sorted({m.upstream for m in s.models.values()}))
            await self.task_system.open()
            await self.system.start()
            for key in s.api_keys:  # a key's budget is its default job's
                if key.budget_nanos is not None:
                    await self._set_key_budget(key.name, key.budget_nanos)
        return self.inference

    async def _set_key_budget(self, name: str, budget_nanos: int) -> None:
        if self.ledger is not None:
            await self.ledger.set_budget(default_job(name), budget_nanos)

    async def _start_http(self, inference: CachedInference) -> None:
        await _ports.start_http(self, inference)

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: refuse new calls (health NOT_SERVING), let in-flight calls finish within the
        grace period, cancel the rest, then stop actors in reverse order. Idempotent."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        self.cpu.stop()
        self.host_cpu.stop()
        grace = self.settings.server.grace_s if grace_s is None else grace_s
        self.tracker.draining = True
        self.task_system.drain()  # task watches and waits would hold the drain: end them
        self.events.close()
        await self.health.enter_graceful_shutdown()
        log.info("server_draining", in_flight=self.tracker.in_flight, grace_s=grace)
        if self.tracker.in_flight:
            try:
                await asyncio.wait_for(self.tracker.wait_idle(), timeout=grace)
            except TimeoutError:
                log.warning("drain_timeout", in_flight=self.tracker.in_flight)
        if self._server is not None:
            await self._server.stop(0.5)
        if self.http is not None:
            await self.http.stop()
        if self.cache is not None:  # shared calls still in flight, then the backend
            await self.cache.aclose()
        await self.system.stop(grace_s=2.0)
        await self.task_system.close()  # after the scheduler's last writes
        if self.ledger is not None:  # every call has settled: write out what is queued
            await self.ledger.stop()
        if self.router_stats is not None:  # after the router wrote what it still held
            await self.router_stats.close()
        if self.shared is not None:  # after every store on it has stopped
            await self.shared.aclose()
        if self.infra is not None:
            await self.infra.aclose()
        self.key_admin.close()
        await self._stop_telemetry()
        log.info("server_stopped")
        self._stopped.set()

    async def _stop_telemetry(self) -> None:
        await _ports.stop_telemetry(self)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def __aenter__(self) -> AureaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(grace_s=0)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain and return (exit code 0)."""
    server = AureaServer(settings)
    try:
        await server.start()
    except asyncio.CancelledError:  # Ctrl-C before the signal handlers below are installed
        await server.stop(grace_s=0)
        raise
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        log.info("signal_received", signal=sig.name)
        task = asyncio.ensure_future(server.stop())
        _background.add(task)
        task.add_done_callback(_background.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
    await server.wait_stopped()
