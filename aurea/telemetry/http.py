"""The HTTP side port (aiohttp, ``[telemetry] http_host``/``http_port``): ``/metrics`` in the
Prometheus text format (OpenMetrics when the scraper asks for it), ``/healthz`` (the process is
up) and ``/readyz`` (serving: started, not draining, and every readiness check passing).

The exposition is rendered on the event loop: collectors read loop-owned state (actor mailboxes)
and a scrape of a few hundred series takes well under a millisecond.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client.exposition import choose_encoder

from aurea.telemetry.metrics import REGISTRY

__all__ = ["ReadyCheck", "TelemetryHttp"]

log = structlog.get_logger("aurea.telemetry")

# name -> a coroutine returning None when ready, else why not (e.g. "redis unreachable")
ReadyCheck = Callable[[], Awaitable[str | None]]
CHECK_TIMEOUT_S = 2.0


class TelemetryHttp:
    """``start()`` binds (port 0 picks a free one; ``port`` tells which); ``stop()`` closes.
    ``ready`` says whether the server serves (started and not draining)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        ready: Callable[[], bool],
        checks: dict[str, ReadyCheck] | None = None,
        metrics: bool = True,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._ssl = ssl_context  # [tls]: HTTPS (and mTLS) like every other port
        self.host = host
        self.port = port
        self._ready = ready
        self.checks: dict[str, ReadyCheck] = checks if checks is not None else {}
        self._reuse_port = reuse_port
        app = web.Application()
        if metrics:
            app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._site: web.TCPSite | None = None

    async def start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.host,
            self.port,
            reuse_port=self._reuse_port,
            ssl_context=self._ssl,
        )
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self._site = site
        server = site._server  # the bound socket tells the port actually chosen
        sockets = getattr(server, "sockets", None) or ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()
        self._site = None

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        resp = web.Response(body=encoder(REGISTRY))
        resp.headers["Content-Type"] = content_type  # with its version and charset parameters
        return resp

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        problems: dict[str, str] = {}
        if not self._ready():
            problems["server"] = "not serving (starting or draining)"
        for name, check in self.checks.items():
            try:
                why = await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except Exception as exc:  # a failing check means not ready, never a 500
                why = f"check failed: {type(exc).__name__}"
            if why:
                problems[name] = why
        if problems:
            return web.json_response({"status": "unavailable", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})
