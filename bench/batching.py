"""``python -m bench batching [--model tiny|PATH] [--size N] [--steps N] [--jobs N]``: images/s
through the real worker at ``--max-batch 1`` vs 4 (and 8 on CUDA) on the same jobs.

The jobs are one image each (``--n 1``), so batching has to happen across jobs, as it does when
many people ask at once. Per configuration: the jobs are enqueued through the service first, then
a worker with that ``max_batch`` (default batch window) drains them; the clock covers the drain
(claim, batch, engine, store, record). One ``DiffusersEngine`` serves every configuration and is
warmed up first (model loaded, one call per batch size), so all of them see the same pipeline.
Configurations rotate for ``--rounds`` rounds; speed-ups are medians of per-round ratios.

Runs unchanged on a GPU with a full-size model folder, e.g.
``python -m bench batching --model /models/sd-turbo --size 512 --steps 4 --guidance 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench._setup import (
    HERE,
    PROMPTS,
    bench_actor,
    bench_preset,
    bench_service,
    model_source,
    scratch_database,
)
from bench.runner import Row, report
from core.brand.presets import Preset
from core.db import Database
from core.engines.diffusers import DiffusersEngine
from core.engines.registry import EngineRegistry
from core.jobs.worker import Worker, WorkerConfig
from core.ports import GenerateJob
from core.service import Service
from core.storage.local import LocalImageStore


async def drain(
    db: Database,
    service: Service,
    engine: DiffusersEngine,
    preset: Preset,
    images: Path,
    jobs: int,
    max_batch: int,
) -> tuple[float, list[int]]:
    """Images/s of ``jobs`` one-image jobs drained by a worker with ``max_batch``."""
    for i in range(jobs):
        prompt = PROMPTS[i % len(PROMPTS)]
        await service.imagine(f"{prompt} --n 1 --seed {2000 + i}", bench_actor(i), HERE)
    engines = EngineRegistry()
    engines.put("diffusers", engine)
    worker = Worker(
        db,
        engines,
        LocalImageStore(images),
        {preset.name: preset},
        WorkerConfig(max_batch=max_batch),
    )
    start = time.perf_counter()
    await worker.run(drain=True)
    elapsed = time.perf_counter() - start
    assert worker.completed == jobs, (worker.completed, jobs)
    return jobs / elapsed, worker.batcher.batch_sizes


async def warm_up(engine: DiffusersEngine, preset: Preset, side: int, sizes: list[int]) -> None:
    """Load the model and run each batch size once (first calls allocate, pick kernels)."""
    params = preset.engine
    for size in sizes:
        await engine.generate(
            params.model,
            [
                GenerateJob(
                    f"warm-{size}",
                    PROMPTS[0],
                    "",
                    side,
                    side,
                    params.steps,
                    params.guidance,
                    tuple(range(size)),
                )
            ],
        )


async def run(args: argparse.Namespace) -> dict[str, float]:
    engine = DiffusersEngine()
    sizes = [1, 4, 8] if engine.device.startswith("cuda") else [1, 4]
    preset = bench_preset(
        engine="diffusers",
        model=model_source(args.model),
        size=args.size,
        steps=args.steps,
        guidance=args.guidance,
    )
    rates: dict[int, list[float]] = {size: [] for size in sizes}
    calls: dict[int, list[int]] = {size: [] for size in sizes}
    await warm_up(engine, preset, args.size, sizes)
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database() as db:
            service = bench_service(db, preset)
            for r in range(args.rounds):
                for size in sizes[r % len(sizes) :] + sizes[: r % len(sizes)]:
                    rate, batches = await drain(
                        db, service, engine, preset, Path(tmp) / "images", args.jobs, size
                    )
                    rates[size].append(rate)
                    calls[size] = batches
    base = rates[1]
    rows = [
        Row(
            f"max-batch {size}",
            statistics.median(values),
            "images/s",
            {
                "rounds": " ".join(f"{v:.3g}" for v in values),
                "batches": ",".join(map(str, calls[size])),
            },
        )
        for size, values in rates.items()
    ]
    ratios = {
        f"max-batch {size} / max-batch 1": statistics.median(
            v / b for v, b in zip(values, base, strict=True)
        )
        for size, values in rates.items()
        if size != 1
    }
    report(
        "batching",
        rows,
        ratios=ratios,
        notes=(
            f"{args.model} {args.size}px {args.steps} steps guidance {args.guidance} on "
            f"{engine.device} ({engine.dtype}); {args.jobs} one-image jobs per configuration, "
            f"{args.rounds} rounds rotating; batches: images per engine call, last round"
        ),
    )
    return ratios


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench batching")
    p.add_argument("--model", default="tiny", help="tiny (bundled) or a diffusers model folder")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--jobs", type=int, default=16, help="one-image jobs per configuration")
    p.add_argument("--rounds", type=int, default=2)
    return p


def main(argv: list[str]) -> int:
    asyncio.run(run(parser().parse_args(argv)))
    return 0
