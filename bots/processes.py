"""Long-running processes: ``onbrand worker`` and ``onbrand run``.

SIGTERM and SIGINT stop them gracefully: no new jobs are claimed, the jobs in hand finish, the
results are delivered, and the process exits 0 — within ``ONBRAND_SHUTDOWN_GRACE_S`` (default 30),
after which it exits anyway with ``EXIT_GRACE_EXCEEDED``. With ``ONBRAND_METRICS_PORT`` set, both
serve ``/metrics``, ``/healthz`` and ``/readyz`` (``core.ops.server``), ready by the app's
``Readiness``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from core.bootstrap import App, build_worker
from core.delivery.sweep import wait_until_delivered
from core.errors import ConfigError
from core.memory.indexer import indexing
from core.ops import server
from core.ops.readiness import database_check, engines_check, tcp_check, worker_check

log = logging.getLogger(__name__)


class StopSignals:
    """SIGTERM/SIGINT from a process's first moment. A stop that arrives while the process is
    still starting (migrating, loading) is kept and honoured as soon as ``on_stop`` names what
    stopping means, so a stop during start-up is as graceful as one during work."""

    def __init__(self) -> None:
        self._stop: Callable[[], None] | None = None
        self.requested = False

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._signalled)

    def on_stop(self, stop: Callable[[], None]) -> None:
        self._stop = stop
        if self.requested:
            stop()

    def _signalled(self) -> None:
        self.requested = True
        if self._stop is not None:
            self._stop()


def _on_stop_signals(stop: Callable[[], None], signals: StopSignals | None) -> None:
    if signals is None:
        signals = StopSignals()
        signals.install()
    signals.on_stop(stop)


EXIT_GRACE_EXCEEDED = 3
"""Exit status when the work in hand did not finish within ``ONBRAND_SHUTDOWN_GRACE_S``."""


class _Shutdown:
    """The stop signal and the grace period that starts with it."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.requested = asyncio.Event()
        self._deadline: float | None = None

    def request(self) -> None:
        if not self.requested.is_set():
            log.info("stopping: finishing the work in hand (grace period %g s)", self.grace_s)
            self._deadline = asyncio.get_running_loop().time() + self.grace_s
            self.requested.set()

    def remaining(self) -> float:
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self.grace_s
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    async def wait_any(self, tasks: Sequence[asyncio.Task[Any]]) -> None:
        """Until a stop is requested or any of ``tasks`` ends."""
        stopping = asyncio.create_task(self.requested.wait())
        try:
            await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()

    async def finish(self, tasks: Sequence[asyncio.Task[Any]], what: str) -> None:
        """Wait for ``tasks`` within the grace period; past it, cancel them and exit non-zero."""
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.remaining())
        if not pending:
            return
        names = ", ".join(sorted(t.get_name() for t in pending))
        log.error(
            "%s did not stop within the %g s grace period (ONBRAND_SHUTDOWN_GRACE_S): "
            "interrupting %s; jobs in hand are claimed again by another worker after the "
            "heartbeat timeout, undelivered results are posted by the next bot",
            what,
            self.grace_s,
            names,
        )
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=5)
        # Cleanup may still block on a thread (a GPU step): don't let it hold the exit.
        threading.Timer(10, os._exit, (EXIT_GRACE_EXCEEDED,)).start()
        raise SystemExit(EXIT_GRACE_EXCEEDED)


def _raise_failures(tasks: Sequence[asyncio.Task[Any]]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        log.info("%s stopped", task.get_name())


async def run_worker(
    app: App, *, drain: bool = False, signals: StopSignals | None = None, **overrides: Any
) -> None:
    """A worker until SIGTERM/SIGINT (or, with ``drain``, an empty queue); metrics and health
    on ``ONBRAND_METRICS_PORT`` when set."""
    worker = build_worker(app, **overrides)
    shutdown = _Shutdown(app.settings.shutdown_grace_s)
    readiness = app.readiness
    kinds = {preset.engine.kind for preset in app.service.presets.values()}
    readiness.add_check("database", database_check(app.db))
    readiness.add_check("engines", engines_check(app.engines, kinds))

    def stop() -> None:
        worker.stop()
        readiness.set("worker", False, "stopping")
        shutdown.request()

    _on_stop_signals(stop, signals)
    if shutdown.requested.is_set():
        log.info("stopped while starting: no job was taken")
        return
    async with (
        server.serve(app.settings, app.db, readiness),
        indexing(app.db, app.store, embedder=app.embedder),
    ):
        readiness.add_check("worker", worker_check(worker))
        log.info("worker started (max batch %d)", worker.config.max_batch)
        task = asyncio.create_task(worker.run(drain=drain), name="worker")
        await shutdown.wait_any([task])
        if not task.done():
            stop()
        await shutdown.finish([task], "the worker")
        _raise_failures([task])
    log.info("worker stopped after %d generations", worker.completed)


async def run_all(
    app: App, announce: Callable[[str], None], *, signals: StopSignals | None = None
) -> None:
    """One machine: a worker plus every chat adapter whose credentials are configured.

    SIGTERM: the worker finishes its batch, the results are delivered, then the adapters stop;
    all within ``ONBRAND_SHUTDOWN_GRACE_S`` or the process exits with ``EXIT_GRACE_EXCEEDED``.
    ``ONBRAND_RUN_WORKER=false`` runs the adapters alone (bots on CPU machines)."""
    from core.domain import Platform

    settings = app.settings
    worker = build_worker(app) if settings.run_worker else None
    shutdown = _Shutdown(settings.shutdown_grace_s)
    adapters_stop = asyncio.Event()  # the adapters' own stop: no more commands, then return
    readiness = app.readiness
    readiness.add_check("database", database_check(app.db))

    def stop() -> None:
        if worker is not None:
            worker.stop()
        readiness.set("stopping", False, "shutting down")
        shutdown.request()

    _on_stop_signals(stop, signals)
    if shutdown.requested.is_set():
        log.info("stopped while starting: no adapter or worker was started")
        return
    adapters: dict[str, Coroutine[Any, Any, None]] = {}
    platforms: list[Platform] = []
    if settings.slack_enabled:
        from bots.slack import serve_slack

        adapters["slack"] = serve_slack(app, adapters_stop)
        platforms.append(Platform.SLACK)
    if settings.discord_enabled:
        from bots.discord import OnbrandBot, serve_discord

        bot = OnbrandBot(app.service, guild_ids=settings.discord_guild_ids)
        adapters["discord"] = serve_discord(app, adapters_stop, bot=bot)
        platforms.append(Platform.DISCORD)

        async def discord_ready() -> tuple[bool, str]:
            if bot.is_ready() and not bot.is_closed():
                return True, "gateway connected"
            return False, "gateway not connected"

        readiness.add_check("discord", discord_ready)
    announce(
        "chat adapters: " + ", ".join(adapters)
        if adapters
        else "no chat adapter configured (set SLACK_BOT_TOKEN or DISCORD_TOKEN); "
        "serving the CLI (`onbrand imagine`) and the worker"
    )
    if worker is None and not adapters:
        raise ConfigError("ONBRAND_RUN_WORKER=false and no chat adapter configured: nothing to run")
    async with (
        server.serve(settings, app.db, readiness),
        indexing(app.db, app.store, enabled=worker is not None, embedder=app.embedder),
    ):
        working = [asyncio.create_task(worker.run(), name="worker")] if worker is not None else []
        chatting = [asyncio.create_task(coro, name=name) for name, coro in adapters.items()]
        if worker is not None:
            kinds = {preset.engine.kind for preset in app.service.presets.values()}
            readiness.add_check("engines", engines_check(app.engines, kinds))
            readiness.add_check("worker", worker_check(worker))
        if "slack" in adapters:
            slack_task = chatting[list(adapters).index("slack")]
            if settings.slack_app_token is None:
                readiness.add_check(
                    "slack", _alive_and(slack_task, settings.http_host, settings.http_port)
                )
            else:
                readiness.add_check("slack", _alive_and(slack_task))
        # Run until a signal, or until any part ends (an adapter with a refused token, say).
        await shutdown.wait_any([*working, *chatting])
        stop()  # also when a part ended by itself: the others stop too
        await shutdown.finish(working, "the worker")
        if chatting and not any(t.done() for t in chatting):
            within = min(10.0, shutdown.remaining() / 2)
            if not await wait_until_delivered(app.db, platforms, within):
                log.warning("stopping with results not yet delivered; the next start posts them")
        adapters_stop.set()
        await shutdown.finish(chatting, "the chat adapters")
        _raise_failures([*working, *chatting])


def _alive_and(task: asyncio.Task[None], host: str | None = None, port: int = 0) -> Any:
    """Readiness of an adapter: its task runs (and, in HTTP mode, its port answers)."""
    listening = tcp_check(host, port) if host is not None else None

    async def check() -> tuple[bool, str]:
        if task.done():
            return False, "adapter stopped"
        if listening is not None:
            return await listening()
        return True, "running"

    return check
