"""The small HTTP server every long-running process offers on ``ONBRAND_METRICS_PORT``.

* ``/metrics`` — ``core.ops.metrics``' registry, in Prometheus' text format (the queue depth is
  read when scraped).
* ``/healthz`` — 200 while the process and its event loop are alive.
* ``/readyz`` — 200 when every check of the process's ``Readiness`` passes, else 503; the body
  says which failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from core.ops.metrics import QUEUE_DEPTH, REGISTRY
from core.ops.readiness import Readiness

if TYPE_CHECKING:
    from core.db.database import Database
    from core.settings import Settings

log = logging.getLogger(__name__)


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (port 0: any free port)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        readiness: Readiness,
        db: Database | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.host, self.port = host, port
        self.db = db
        self.readiness = readiness
        self.registry = registry
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        if self.port == 0 and server is not None and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])
        log.info("metrics and health on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        if self.db is not None:
            await QUEUE_DEPTH.refresh(self.db)
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        results = await self.readiness.evaluate()
        ready = all(ok for ok, _ in results.values())
        body = {
            "ready": ready,
            "checks": {name: {"ok": ok, "detail": d} for name, (ok, d) in sorted(results.items())},
        }
        return web.Response(
            text=json.dumps(body), status=200 if ready else 503, content_type="application/json"
        )


@contextlib.asynccontextmanager
async def serve(
    settings: Settings, db: Database | None, readiness: Readiness
) -> AsyncIterator[MetricsServer | None]:
    """Run the metrics server (answering ``/readyz`` from ``readiness``) for the block when
    ``ONBRAND_METRICS_PORT`` is set."""
    if settings.metrics_port is None:
        yield None
        return
    server = MetricsServer(settings.metrics_host, settings.metrics_port, readiness=readiness, db=db)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
