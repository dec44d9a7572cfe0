"""A worker in its own process, for the crash and shutdown tests: the real ``Worker`` on the
database at ``DATABASE_URL`` with a slow fake engine, so a test can kill it mid-job.

usage: python -m tests.integration.worker_process IMAGES_DIR STEP_DELAY HEARTBEAT_S
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from core.db import Database
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.jobs.worker import Worker, WorkerConfig
from core.settings import Settings
from core.storage.local import LocalImageStore


async def main(images: Path, step_delay: float, heartbeat_s: float) -> None:
    settings = Settings()
    assert settings.database_url is not None
    db = Database(settings.database_url.get_secret_value())
    engines = EngineRegistry()
    engines.put("fake", FakeEngine(step_delay=step_delay))
    worker = Worker(
        db,
        engines,
        LocalImageStore(images),
        {},
        WorkerConfig(max_batch=4, heartbeat_timeout_s=heartbeat_s, progress_interval_s=0.2),
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    print("worker ready", flush=True)
    await worker.run()
    print(f"worker stopped after {worker.completed}", flush=True)
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])))
