"""The server's HTTP listeners beside gRPC: the telemetry side port (/metrics, /healthz,
/readyz) and the OpenAI-compatible door, started and stopped for ``AureaServer``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog

from aurea.cache import CachedInference
from aurea.config import DEFAULT_HTTP_PORT, ConfigError
from aurea.http import HttpDoor
from aurea.telemetry import metrics
from aurea.telemetry.http import TelemetryHttp

if TYPE_CHECKING:
    from aurea.server import AureaServer

log = structlog.get_logger("aurea.server")
DEFAULT_METRICS_PORT = 9464  # [telemetry] http_port's default


async def start_telemetry_http(server: AureaServer) -> None:
    """The side port. As with the HTTP door: if the default port is taken the side port is
    skipped with an error line (the service runs on); any other port must be free."""
    t = server.settings.telemetry
    side = TelemetryHttp(
        host=t.http_host,
        port=t.http_port,
        ready=lambda: server._server is not None and not server.draining,
        checks=server.ready_checks,
        metrics=t.metrics_enabled,
        reuse_port=server.settings.server.reuse_port,
        ssl_context=server.tls.ssl_context() if server.tls is not None else None,
    )
    try:
        server.metrics_port = await side.start()
    except OSError as exc:
        if t.http_port != DEFAULT_METRICS_PORT:  # a port chosen on purpose must be had
            raise ConfigError(
                "telemetry.http_port",
                f"cannot listen on {t.http_host}:{t.http_port} (in use, or not an address here)",
            ) from exc
        log.error(
            "telemetry_http_unavailable",
            host=t.http_host,
            port=t.http_port,
            error=f"{type(exc).__name__}: {exc.strerror or exc}",
            hint="the default port is taken; set [telemetry] http_port (0 picks a free one)",
        )
        return
    server.telemetry_http = side


async def start_http(server: AureaServer, inference: CachedInference) -> None:
    """The OpenAI-compatible door on the same edge, core and actors. The default port
    being taken only skips the door (an error log line); a port the operator chose must
    be free, like the gRPC port."""
    s = server.settings.http
    if not s.enabled:
        return
    host = s.host
    door = HttpDoor(settings=s, edge=server.edge, inference=inference, view=server.router_view)
    try:
        ssl_context = server.tls.ssl_context() if server.tls is not None else None
        server.http_port = await door.start(host, s.port, ssl_context=ssl_context)
    except OSError as exc:
        if s.port != DEFAULT_HTTP_PORT:
            await server.stop(grace_s=0)
            raise ConfigError(
                "http.port", f"cannot listen on {host}:{s.port} ({exc.strerror or exc})"
            ) from exc
        log.error("http_door_unavailable", host=host, port=s.port, error=str(exc))
        return
    server.http = door


async def stop_telemetry(server: AureaServer) -> None:
    if server.telemetry_http is not None:
        await server.telemetry_http.stop()
    metrics.unwatch_actors(server.system)
    metrics.unwatch_breakers(server._breaker_states)
    if server.tracing is not None:  # flush queued spans; a dead collector must not hold exit
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(server.tracing.shutdown), 5.0)
