"""Long-running processes: ``onbrand worker`` and ``onbrand run``; and the CLI's wait for results.

SIGTERM and SIGINT stop them gracefully: no new jobs are claimed, the jobs in hand finish, and
the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from core.bootstrap import App, build_store, build_worker
from core.db import delivery as delivery_queries
from core.domain import Generation, GenerationStatus
from core.events import subscribe
from core.imaging import make_grid

log = logging.getLogger(__name__)


def _on_stop_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)


async def run_worker(app: App, *, drain: bool = False, **overrides: Any) -> None:
    worker = build_worker(app, **overrides)
    _on_stop_signals(worker.stop)
    log.info("worker started (max batch %d)", worker.config.max_batch)
    await worker.run(drain=drain)
    log.info("worker stopped after %d generations", worker.completed)


async def run_all(app: App, announce: Callable[[str], None]) -> None:
    """One machine: a worker plus every chat adapter whose credentials are configured."""
    worker = build_worker(app)
    stopping = asyncio.Event()

    def stop() -> None:
        worker.stop()
        stopping.set()

    _on_stop_signals(stop)
    adapters: dict[str, Coroutine[Any, Any, None]] = {}
    if app.settings.slack_enabled:
        from bots.slack import serve_slack

        adapters["slack"] = serve_slack(app, stopping)
    if app.settings.discord_enabled:
        from bots.discord import serve_discord

        adapters["discord"] = serve_discord(app, stopping)
    announce(
        "chat adapters: " + ", ".join(adapters)
        if adapters
        else "no chat adapter configured (set SLACK_BOT_TOKEN or DISCORD_TOKEN); "
        "serving the CLI (`onbrand imagine`) and the worker"
    )
    tasks = [asyncio.create_task(worker.run(), name="worker")] + [
        asyncio.create_task(coro, name=name) for name, coro in adapters.items()
    ]
    try:
        # Run until a signal, or until any part ends (an adapter with a refused token, say).
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
        log.info("%s stopped", task.get_name())


async def wait_for(
    app: App,
    ids: Sequence[uuid.UUID],
    on_progress: Callable[[float], None],
    *,
    poll_s: float = 0.5,
) -> list[Generation]:
    """Wait until every generation finished; report overall progress (0–1) as it changes."""
    pending = set(ids)
    async with subscribe(app.db.dsn) as events:
        while True:
            generations = [await app.service.generation(i) for i in ids]
            fractions = []
            for g in generations:
                if g.status.finished:
                    pending.discard(g.id)
                    fractions.append(1.0)
                else:
                    fractions.append(await delivery_queries.progress(app.db, g.id))
            on_progress(sum(fractions) / len(fractions))
            if not pending:
                return generations
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(events.get(), timeout=poll_s)


async def save_results(app: App, generations: Sequence[Generation], out: Path) -> list[Path]:
    """Write each generation's originals and its 2×2 grid under ``out/<generation id>/``."""
    import io

    from PIL import Image

    store = build_store(app.settings)
    written: list[Path] = []
    for generation in generations:
        if generation.status is not GenerationStatus.DONE:
            continue
        folder = out / str(generation.id)
        folder.mkdir(parents=True, exist_ok=True)
        images = []
        for index, key in enumerate(await delivery_queries.image_keys(app.db, generation.id), 1):
            data = await store.get(key)
            path = folder / f"{index}.png"
            path.write_bytes(data)
            written.append(path)
            images.append(Image.open(io.BytesIO(data)))
        if len(images) > 1:
            grid = folder / "grid.png"
            make_grid(images).save(grid)
            written.append(grid)
        await delivery_queries.mark_delivered(app.db, generation.id)
    return written
