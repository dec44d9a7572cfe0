"""Finishing has its own threads: a busy default executor (where the engines' calls run) does
not hold it up, and the worker claims three batches' worth of jobs by default."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from core.db.jobs import StartedJob
from core.domain import GenerationKind, Params
from core.imaging.metadata import read_parameters
from core.jobs.finishing import finishing_pool, store_images
from core.jobs.worker import WorkerConfig
from core.storage.local import LocalImageStore


async def test_finishing_does_not_wait_for_the_default_executor(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    engine_threads = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(engine_threads)
    release = threading.Event()
    busy = asyncio.create_task(asyncio.to_thread(release.wait, 30))  # the engine's long call
    try:
        params = Params("a cat", "", 64, 64, 4, 5.0, 2, 7, "fake", "m", "p", "v")
        job = StartedJob(uuid.uuid4(), GenerationKind.IMAGINE, "cli", params, 1, None, None)
        pictures = [Image.new("RGB", (64, 64), (i * 90, 40, 200)) for i in range(2)]
        store = LocalImageStore(tmp_path)
        stored = await asyncio.wait_for(store_images(store, job, None, pictures), timeout=20)
        assert not busy.done()  # finished while the default executor's only thread was taken
    finally:
        release.set()
        await busy
    assert [s.index for s in stored] == [1, 2]
    for s, picture in zip(stored, pictures, strict=True):
        data = await store.get(s.storage_key)
        assert "a cat" in (read_parameters(data) or "")
        assert Image.open(io.BytesIO(data)).size == picture.size


def test_the_finishing_pool_is_one_thread_per_core_and_shared() -> None:
    pool = finishing_pool()
    assert pool is finishing_pool()
    assert pool._max_workers == len(os.sched_getaffinity(0))  # the cores this process may use


def test_three_batches_in_flight_by_default() -> None:
    assert WorkerConfig(max_batch=8).in_flight == 24
    assert WorkerConfig(max_batch=8, batches_in_flight=5).in_flight == 40
    assert WorkerConfig(max_batch=8, max_in_flight=10).in_flight == 16  # two claims at least
    assert WorkerConfig(max_batch=4, max_in_flight=12).in_flight == 12
