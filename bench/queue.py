"""``python -m bench queue [--jobs N] [--rounds R] [--no-processes]``: jobs/s through onbrand's
queue and worker vs pgqueuer bare.

Side by side in one run on one database, repeated ``--rounds`` times in rotating order (the
machine is shared; the median of the per-round ratios is the headline):

- pgqueuer alone draining N jobs into a no-op entrypoint (the same ``batch_size`` and
  ``max_concurrent_tasks`` as an onbrand worker);
- onbrand's worker draining N generations (claim, mark running, engine, watermark/tag/encode the
  PNG, store it durably, record it and mark done, NOTIFY) with an engine that returns an 8×8 image
  at once: 1 worker, 4 workers in this process, and 4 worker processes (``--no-processes`` skips
  them). Workers use their defaults (``WorkerConfig(max_batch=4)``) with no batch window.

The goal is ≥ 0.8 of bare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from pgqueuer import Queries, QueueManager
from pgqueuer.types import QueueExecutionMode
from PIL import Image

from bench._setup import HERE, bench_actor, bench_preset, bench_service, scratch_database
from bench.runner import Row, report
from core.db import Database
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.jobs.worker import Worker, WorkerConfig
from core.ports import GenerateJob, JobResult
from core.storage.local import LocalImageStore

ROOT = Path(__file__).resolve().parents[1]


class InstantEngine(FakeEngine):
    """A no-op engine: an 8×8 image per seed, no steps."""

    async def generate(
        self, model: str, jobs: Sequence[GenerateJob], **_: object
    ) -> list[JobResult]:
        return [
            JobResult(job.job_id, tuple(Image.new("RGB", (8, 8)) for _ in job.seeds))
            for job in jobs
        ]


def worker_config() -> WorkerConfig:
    return WorkerConfig(max_batch=4, batch_window_s=0)


def make_worker(db: Database, images: Path) -> Worker:
    engines = EngineRegistry()
    engines.put("fake", InstantEngine())
    return Worker(db, engines, LocalImageStore(images), {}, worker_config())


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

    config = worker_config()
    start = time.perf_counter()
    await manager.run(
        batch_size=config.claim_size,
        max_concurrent_tasks=config.in_flight,
        mode=QueueExecutionMode.drain,
    )
    elapsed = time.perf_counter() - start
    assert done == jobs, (done, jobs)
    await conn.close()
    return jobs / elapsed


async def enqueue_generations(db: Database, jobs: int) -> None:
    service = bench_service(db, bench_preset(size=32))
    for i in range(jobs):
        await service.imagine(f"job {i} --n 1", bench_actor(i), HERE)


async def onbrand_workers(db: Database, jobs: int, workers: int, images: Path) -> float:
    await enqueue_generations(db, jobs)
    pool = [make_worker(db, images) for _ in range(workers)]
    start = time.perf_counter()
    await asyncio.gather(*(w.run(drain=True) for w in pool))
    elapsed = time.perf_counter() - start
    completed = sum(w.completed for w in pool)
    assert completed == jobs, (completed, jobs)
    return jobs / elapsed


async def onbrand_processes(db: Database, jobs: int, processes: int, images: Path) -> float:
    """``processes`` worker processes; timed from the go signal to the last one's end."""
    await enqueue_generations(db, jobs)
    env = os.environ | {"DATABASE_URL": db.dsn}
    command = [sys.executable, "-m", "bench.queue", "--serve", str(images)]
    procs = [
        await asyncio.create_subprocess_exec(
            *command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            assert line.strip() == b"ready", line
        start = time.time()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        outputs = [await asyncio.wait_for(proc.communicate(), timeout=600) for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
    results = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    completed = sum(r["completed"] for r in results)
    assert completed == jobs, (completed, jobs)
    return jobs / (max(r["ended"] for r in results) - start)


async def serve(images: Path) -> None:
    """One worker process of ``onbrand_processes``: ready, wait for go, drain, report."""
    db = Database(os.environ["DATABASE_URL"])
    worker = make_worker(db, images)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await worker.run(drain=True)
    print(json.dumps({"completed": worker.completed, "ended": time.time()}), flush=True)
    await db.dispose()


Measure = Callable[[Database, int, Path], Coroutine[Any, Any, float]]


async def run(jobs: int, rounds: int, processes: bool) -> dict[str, float]:
    configs: dict[str, Measure] = {
        "pgqueuer bare, no-op": lambda db, n, _: bare_pgqueuer(db, n),
        "onbrand, 1 worker": lambda db, n, p: onbrand_workers(db, n, 1, p),
        "onbrand, 4 workers (1 process)": lambda db, n, p: onbrand_workers(db, n, 4, p),
    }
    if processes:
        configs["onbrand, 4 worker processes"] = lambda db, n, p: onbrand_processes(db, n, 4, p)
    names = list(configs)
    rates: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database() as db:
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    rate = await configs[name](db, jobs, Path(tmp) / f"images-{r}")
                    rates[name].append(rate)
    bare = rates[names[0]]
    rows = [
        Row(
            name,
            statistics.median(values),
            "jobs/s",
            {"rounds": " ".join(f"{v:.0f}" for v in values)},
        )
        for name, values in rates.items()
    ]
    ratios = {
        f"{name.removeprefix('onbrand, ')} / bare": statistics.median(
            v / b for v, b in zip(values, bare, strict=True)
        )
        for name, values in rates.items()
        if name != names[0]
    }
    report(
        "queue",
        rows,
        ratios=ratios,
        notes=(
            f"{jobs} jobs per configuration, {rounds} rounds in rotating order, medians "
            f"(ratios: median of per-round ratios); {os.cpu_count()} CPUs; "
            "onbrand jobs store a PNG durably and record it; goal >= 0.8"
        ),
    )
    return ratios


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench queue")
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-processes", action="store_true", help="skip the 4-worker-process configuration"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # a worker process
    args = parser.parse_args(argv)
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return 0
    asyncio.run(run(args.jobs, args.rounds, not args.no_processes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
