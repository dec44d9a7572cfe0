"""``python -m bench overhead [--model tiny|PATH] [--size N] [--steps N] [--jobs N]``: images/s of
``onbrand imagine`` jobs through service + queue + worker + store vs a bare diffusers loop.

Both sides run in this process on the same model, size, steps and guidance, 4 images per job
(prompts repeated, one CPU ``torch.Generator`` per image, as the engine does):

- **bare**: ``AutoPipelineForText2Image.from_pretrained(path)`` called once per job;
- **onbrand**: a warm worker (``DiffusersEngine``, ``--max-batch`` images per engine call,
  default 4 = one job per call like the bare loop, the default batch window) runs continuously;
  the clock runs from the first ``Service.imagine`` (parse, policy, record + enqueue) to the last
  generation marked done (its 4 PNGs watermarked/tagged, stored durably, recorded, NOTIFY sent).

Each side is warmed up first (model loaded, one job run), then the two alternate for
``--rounds`` rounds; the ratio onbrand/bare is the median of the per-round ratios. Goal ≥ 0.95.
On a CUDA machine both sides use float16 on the GPU (the engine's default there).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

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
from core.db import Database
from core.db.events import Event, subscribe
from core.engines.diffusers import DiffusersEngine
from core.engines.registry import EngineRegistry
from core.jobs.worker import Worker, WorkerConfig
from core.service import Service
from core.storage.local import LocalImageStore

IMAGES_PER_JOB = 4


class BareLoop:
    """The diffusers pipeline called directly, the way a hand-written script would."""

    def __init__(self, source: str, *, size: int, steps: int, guidance: float) -> None:
        import diffusers.utils.logging
        import torch
        import transformers.utils.logging
        from diffusers import AutoPipelineForText2Image, DiffusionPipeline
        from diffusers.utils import is_accelerate_available

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        cuda = torch.cuda.is_available()
        self.torch = torch
        # diffusers renamed ``torch_dtype`` to ``dtype``; the old name now warns.
        renamed = hasattr(
            importlib.import_module("diffusers.utils.deprecation_utils"), "_resolve_dtype"
        )
        kwargs: dict[str, Any] = {
            "dtype" if renamed else "torch_dtype": torch.float16 if cuda else torch.float32,
            "low_cpu_mem_usage": is_accelerate_available(),
        }
        if "safety_checker" in DiffusionPipeline.load_config(source):  # as the engine does
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        self.pipe: Any = AutoPipelineForText2Image.from_pretrained(source, **kwargs).to(
            "cuda" if cuda else "cpu"
        )
        self.pipe.set_progress_bar_config(disable=True)
        self.size, self.steps, self.guidance = size, steps, guidance

    def job(self, prompt: str, seed: int) -> list[Any]:
        seeds = [seed + i for i in range(IMAGES_PER_JOB)]
        out = self.pipe(
            prompt=[prompt] * IMAGES_PER_JOB,
            negative_prompt=[""] * IMAGES_PER_JOB,
            width=self.size,
            height=self.size,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            generator=[self.torch.Generator(device="cpu").manual_seed(s) for s in seeds],
            output_type="pil",
        )
        return list(out.images)

    def run(self, jobs: int) -> float:
        """Images/s over ``jobs`` jobs."""
        start = time.perf_counter()
        for i in range(jobs):
            images = self.job(PROMPTS[i % len(PROMPTS)], 1000 + 10 * i)
            assert len(images) == IMAGES_PER_JOB
        return jobs * IMAGES_PER_JOB / (time.perf_counter() - start)


async def onbrand_round(service: Service, events: asyncio.Queue[Event], jobs: int) -> float:
    """Images/s: ``jobs`` imagine requests through the service until the ``done`` event of each
    (what a bot waits for) has arrived."""
    waiting: set[uuid.UUID] = set()
    start = time.perf_counter()
    for i in range(jobs):
        prompt = PROMPTS[i % len(PROMPTS)]
        ticket = await service.imagine(
            f"{prompt} --n {IMAGES_PER_JOB} --seed {1000 + 10 * i}", bench_actor(i), HERE
        )
        waiting.update(ticket.generation_ids)
    async with asyncio.timeout(3600):
        while waiting:
            event = await events.get()
            if event.type != "progress":
                assert event.type == "done", event
                waiting.discard(event.generation_id)
    return jobs * IMAGES_PER_JOB / (time.perf_counter() - start)


async def measure(args: argparse.Namespace, db: Database, images: Path) -> dict[str, list[float]]:
    source = model_source(args.model)
    preset = bench_preset(
        engine="diffusers",
        model=source,
        size=args.size,
        steps=args.steps,
        guidance=args.guidance,
    )
    service = bench_service(db, preset)
    engines = EngineRegistry()
    engines.put("diffusers", DiffusersEngine())
    worker = Worker(
        db,
        engines,
        LocalImageStore(images),
        {preset.name: preset},
        WorkerConfig(max_batch=args.max_batch),
    )
    bare = await asyncio.to_thread(
        BareLoop, source, size=args.size, steps=args.steps, guidance=args.guidance
    )
    rates: dict[str, list[float]] = {"bare": [], "onbrand": []}
    running = asyncio.create_task(worker.run())
    try:
        async with subscribe(db.dsn) as events:
            await bare_run(bare, 2)  # warm-up: first calls are slow (allocations, kernels)
            await onbrand_round(service, events, 2)
            for r in range(args.rounds):
                order = ("bare", "onbrand") if r % 2 == 0 else ("onbrand", "bare")
                for side in order:
                    if side == "bare":
                        rates["bare"].append(await bare_run(bare, args.jobs))
                    else:
                        rates["onbrand"].append(await onbrand_round(service, events, args.jobs))
    finally:
        worker.stop()
        await asyncio.wait_for(running, timeout=600)
    return rates


async def bare_run(bare: BareLoop, jobs: int) -> float:
    # In a thread, like the engine's calls, so the event loop (and the worker) stay idle.
    return await asyncio.to_thread(bare.run, jobs)


async def run(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database() as db:
            rates = await measure(args, db, Path(tmp) / "images")
    ratio = statistics.median(o / b for o, b in zip(rates["onbrand"], rates["bare"], strict=True))
    shape = f"{args.model} {args.size}px {args.steps} steps guidance {args.guidance}"
    report(
        "overhead",
        [
            Row(
                "bare diffusers loop",
                statistics.median(rates["bare"]),
                "images/s",
                {"rounds": " ".join(f"{v:.3g}" for v in rates["bare"])},
            ),
            Row(
                "onbrand imagine (service+queue+worker+store)",
                statistics.median(rates["onbrand"]),
                "images/s",
                {"rounds": " ".join(f"{v:.3g}" for v in rates["onbrand"])},
            ),
        ],
        ratios={"onbrand / bare": ratio},
        notes=(
            f"{shape}; {args.jobs} jobs x {IMAGES_PER_JOB} images per round, {args.rounds} "
            f"rounds alternating, after a warm-up; max batch {args.max_batch}; goal >= 0.95"
        ),
    )
    return {"onbrand / bare": ratio}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench overhead")
    p.add_argument("--model", default="tiny", help="tiny (bundled) or a diffusers model folder")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--jobs", type=int, default=8, help="jobs of 4 images per round and side")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-batch", type=int, default=IMAGES_PER_JOB)
    return p


def main(argv: list[str]) -> int:
    asyncio.run(run(parser().parse_args(argv)))
    return 0
