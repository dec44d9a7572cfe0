"""``python -m bench queue [--jobs N]``: jobs/s through onbrand's queue and worker vs pgqueuer bare.

Side by side in one run on one database: (a) pgqueuer alone draining N jobs into a no-op
entrypoint; (b) onbrand's worker (claim, mark running, engine, store the image, record it, NOTIFY)
draining N generations with an engine that returns a 8×8 image at once, with 1 and with 4 workers.
The ratio (b)/(a) is the headline; the goal is ≥ 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from pgqueuer import Queries, QueueManager
from pgqueuer.types import QueueExecutionMode
from PIL import Image

from bench._setup import HERE, bench_actor, bench_preset, bench_service, scratch_database
from bench.runner import Row, report
from core.db import Database
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.ports import GenerateJob, JobResult
from core.storage import LocalImageStore
from core.worker import Worker, WorkerConfig


class InstantEngine(FakeEngine):
    """A no-op engine: an 8×8 image per seed, no steps."""

    async def generate(
        self, model: str, jobs: Sequence[GenerateJob], **_: object
    ) -> list[JobResult]:
        return [
            JobResult(job.job_id, tuple(Image.new("RGB", (8, 8)) for _ in job.seeds))
            for job in jobs
        ]


async def bare_pgqueuer(db: Database, jobs: int) -> float:
    conn = await asyncpg.connect(db.dsn)
    queries = Queries.from_asyncpg_connection(conn)
    await queries.enqueue(["bare"] * jobs, [b"x"] * jobs, [0] * jobs)
    manager = QueueManager(Queries.from_asyncpg_connection(await asyncpg.connect(db.dsn)))
    done = 0

    @manager.entrypoint("bare", accepts_context=False)
    async def noop(job: object) -> None:
        nonlocal done
        done += 1

    start = time.perf_counter()
    await manager.run(batch_size=4, max_concurrent_tasks=8, mode=QueueExecutionMode.drain)
    elapsed = time.perf_counter() - start
    assert done == jobs, (done, jobs)
    await conn.close()
    return jobs / elapsed


async def onbrand_workers(db: Database, jobs: int, workers: int, images: Path) -> float:
    preset = bench_preset(size=32)
    service = bench_service(db, preset)
    for i in range(jobs):
        await service.imagine(f"job {i} --n 1", bench_actor(i), HERE)
    pool = []
    for _ in range(workers):
        engines = EngineRegistry()
        engines.put("fake", InstantEngine())
        pool.append(
            Worker(
                db,
                engines,
                LocalImageStore(images),
                {},
                WorkerConfig(max_batch=4, batch_window_s=0),
            )
        )
    start = time.perf_counter()
    await asyncio.gather(*(w.run(drain=True) for w in pool))
    elapsed = time.perf_counter() - start
    completed = sum(w.completed for w in pool)
    assert completed == jobs, (completed, jobs)
    return jobs / elapsed


def _target():
    from bench._setup import HERE

    return HERE


async def run(jobs: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database() as db:
            bare = await bare_pgqueuer(db, jobs)
        async with scratch_database() as db:
            one = await onbrand_workers(db, jobs, 1, Path(tmp) / "a")
        async with scratch_database() as db:
            four = await onbrand_workers(db, jobs, 4, Path(tmp) / "b")
    report(
        "queue",
        [
            Row("pgqueuer bare, no-op", bare, "jobs/s"),
            Row("onbrand, 1 worker", one, "jobs/s"),
            Row("onbrand, 4 workers", four, "jobs/s"),
        ],
        ratios={"1 worker / bare": one / bare, "4 workers / bare": four / bare},
        notes=f"{jobs} jobs each; onbrand jobs store a PNG and record it; goal >= 0.8",
    )
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench queue")
    parser.add_argument("--jobs", type=int, default=400)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.jobs))
