"""``python -m bench pipeline [--ms 5,20,100] [--jobs 400] [--max-batch 8] [--size 128]``: how
close one worker comes to the engine-only bound when the engine is a GPU-like black box.

The engine here is simulated (``SimulatedEngine``, benchmarks only): a call for ``n`` images
sleeps ``base + per_image × n`` ms in a thread, releasing the GIL as a CUDA call does, and returns
ready-made pictures of the requested size. Everything else is onbrand's real path: the jobs are
recorded and queued through ``Service.imagine`` (before the clock starts), then one ``Worker``
claims them from PostgreSQL, batches up to ``--max-batch`` images per engine call, and finishes
every image (brand logo, PNG parameters + XMP/IPTC, content-hash store, the database rows, the
``done`` NOTIFY) with every finishing step the preset can switch on.

The clock runs from the engine's first call to the last ``done`` event. The engine-only bound is
``1 / per-image time`` (the engine busy all the time, nothing else costing anything); the ratio
is onbrand's images/s over that bound, one line per engine time, side by side in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageFilter

from bench._setup import HERE, PROMPTS, bench_actor, bench_service, scratch_database
from bench.runner import Row, report
from core.brand.preset_files import load_preset
from core.brand.presets import Preset
from core.db import Database
from core.db.events import Event, subscribe
from core.engines.fake import FAKE_SAMPLING
from core.engines.registry import EngineRegistry
from core.imaging.resize import resample_upscale, upscaled_size
from core.jobs import finishers
from core.jobs.worker import Worker, WorkerConfig
from core.ports import CancelledFn, GenerateJob, JobResult, ProgressFn, UpscaleResult, VaryJob
from core.storage.local import LocalImageStore

LOGO = Path(__file__).resolve().parents[1] / "presets" / "logos" / "acme.png"


def _pictures(width: int, height: int, count: int = 8) -> list[Image.Image]:
    """Photo-like pictures (smooth colour fields with grain): they compress like real output,
    unlike flat colours (too easy) or white noise (too hard)."""
    rng = random.Random(7)
    out = []
    for _ in range(count):
        small = Image.frombytes(
            "RGB", (8, 8), bytes(rng.randrange(256) for _ in range(8 * 8 * 3))
        ).resize((width, height), Image.Resampling.BICUBIC)
        grain = Image.effect_noise((width, height), 24).convert("RGB")
        out.append(Image.blend(small, grain, 0.08).filter(ImageFilter.SMOOTH))
    return out


class SimulatedEngine:
    """``Engine`` whose calls take ``base_ms + per_image_ms × images`` in a thread."""

    name = "simulated"

    def __init__(self, per_image_ms: float, base_ms: float = 0.0) -> None:
        self.per_image_s = per_image_ms / 1000
        self.base_s = base_ms / 1000
        self.first_call: float | None = None
        self.last_return = 0.0  # when the latest call handed its pictures back
        self.waited_s = 0.0  # between one call's return and the next call (the engine idle)
        self.busy_s = 0.0
        self.calls = 0
        self.images = 0
        self._pictures: dict[tuple[int, int], list[Image.Image]] = {}

    def _picture(self, width: int, height: int, seed: int) -> Image.Image:
        pool = self._pictures.get((width, height))
        if pool is None:
            pool = self._pictures[(width, height)] = _pictures(width, height)
        return pool[seed % len(pool)].copy()

    async def _busy(self, images: int) -> None:
        now = time.perf_counter()
        if self.first_call is None:
            self.first_call = now
        else:
            self.waited_s += now - self.last_return
        seconds = self.base_s + self.per_image_s * images
        await asyncio.to_thread(time.sleep, seconds)
        self.last_return = time.perf_counter()
        self.busy_s += seconds
        self.calls += 1
        self.images += images

    async def generate(
        self,
        model: str,
        jobs: Sequence[GenerateJob],
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> list[JobResult]:
        await self._busy(sum(len(job.seeds) for job in jobs))
        return [
            JobResult(
                job.job_id,
                tuple(self._picture(job.width, job.height, seed) for seed in job.seeds),
                sampling=FAKE_SAMPLING,
            )
            for job in jobs
        ]

    async def vary(
        self,
        model: str,
        job: VaryJob,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> JobResult:
        await self._busy(len(job.seeds))
        width, height = job.image.size
        images = tuple(self._picture(width, height, seed) for seed in job.seeds)
        return JobResult(job.job_id, images, sampling=FAKE_SAMPLING)

    async def upscale(
        self, model: str, image: Image.Image, factor: int = 2, upscaler: str | None = None
    ) -> UpscaleResult:
        await self._busy(1)
        return UpscaleResult(resample_upscale(image, upscaled_size(image.size, factor)), "lanczos")


def _preset(folder: Path, size: int) -> Preset:
    """A preset with every finishing step on: the brand logo, palette, parameters, XMP/IPTC."""
    (folder / "logos").mkdir(parents=True, exist_ok=True)
    shutil.copy(LOGO, folder / "logos" / "acme.png")
    path = folder / "bench.yaml"
    path.write_text(
        f"""
name: bench
brand: Bench
prompt: "{{prompt}}, product photo"
palette: ["#0A3D62", "#F8C291", "#FFFFFF"]
aspect_ratios: {{"1:1": [{size}, {size}]}}
default_aspect: "1:1"
engine: {{kind: fake, model: simulated-1, steps: 4, guidance: 5.0}}
watermark: {{logo: logos/acme.png, position: bottom-right, opacity: 0.8, scale: 0.12}}
limits: {{images_per_user_per_day: 1000000, queued_per_user: 1000000}}
"""
    )
    return load_preset(path)


async def _enqueue(db: Database, preset: Preset, jobs: int) -> set[uuid.UUID]:
    service = bench_service(db, preset)
    waiting: set[uuid.UUID] = set()
    for i in range(jobs):
        prompt = PROMPTS[i % len(PROMPTS)]
        ticket = await service.imagine(f"{prompt} --n 1 --seed {1000 + i}", bench_actor(i), HERE)
        waiting.update(ticket.generation_ids)
    return waiting


async def one_case(args: argparse.Namespace, per_image_ms: float, scratch: Path) -> Row:
    folder = scratch / f"case-{per_image_ms:g}"
    preset = _preset(folder / "presets", args.size)
    engine = SimulatedEngine(per_image_ms, args.base_ms)
    engines = EngineRegistry()
    engines.put("fake", engine)  # the preset names kind "fake"; this engine serves it
    async with scratch_database() as db:
        waiting = await _enqueue(db, preset, args.jobs)
        worker = Worker(
            db,
            engines,
            LocalImageStore(folder / "images"),
            {preset.name: preset},
            WorkerConfig(
                max_batch=args.max_batch,
                max_in_flight=args.in_flight,
                batches_in_flight=args.batches_in_flight,
            ),
        )
        await finishers.warm()  # the finishing processes start before the clock does
        async with subscribe(db.dsn) as events:
            running = asyncio.create_task(worker.run())
            try:
                last = await _until_done(events, waiting)
            finally:
                worker.stop()
                await asyncio.wait_for(running, timeout=120)
    assert engine.first_call is not None
    elapsed = last - engine.first_call
    tail = last - engine.last_return
    rate = args.jobs / elapsed
    bound = (
        1000 / per_image_ms
        if not args.base_ms
        else 1 / ((args.base_ms / args.max_batch + per_image_ms) / 1000)
    )
    return Row(
        f"{per_image_ms:g} ms/image",
        rate,
        "images/s",
        {
            "bound": f"{bound:.4g}",
            "engine busy": f"{engine.busy_s / elapsed:.3f}",
            "calls": engine.calls,
            "images": engine.images,
            "images/call": f"{engine.images / max(engine.calls, 1):.2f}",
            # where the rest of the time went: the engine waiting between calls, the calls
            # taking longer than their sleep (thread hand-off), the last batch's finishing
            "between calls": f"{engine.waited_s:.3f}s",
            "call overrun": f"{elapsed - engine.busy_s - engine.waited_s - tail:.3f}s",
            "after last call": f"{tail:.3f}s",
            "ratio": f"{rate / bound:.3f}",
        },
    )


async def _until_done(events: asyncio.Queue[Event], waiting: set[uuid.UUID]) -> float:
    last = time.perf_counter()
    async with asyncio.timeout(600):
        while waiting:
            event = await events.get()
            if event.type == "progress":
                continue
            assert event.type == "done", event
            waiting.discard(event.generation_id)
            last = time.perf_counter()
    return last


async def run(args: argparse.Namespace) -> dict[str, float]:
    finishers.configure(args.finishing_processes)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ms in args.ms:
            rows.append(await one_case(args, ms, Path(tmp)))
    ratios = {r.name: float(r.extra["ratio"]) for r in rows}
    report(
        "pipeline",
        rows,
        ratios=ratios,
        notes=(
            f"one worker, {args.jobs} one-image jobs queued before the clock starts, max batch "
            f"{args.max_batch}, {args.size}px, finishing in {_finishing(args)}, simulated engine "
            f"(base {args.base_ms:g} ms per call); finishing: logo, palette, PNG parameters, "
            "XMP/IPTC, store, rows, NOTIFY; "
            "goal >= 0.97 at 20 ms, >= 0.99 at 100 ms"
        ),
    )
    return ratios


def _finishing(args: argparse.Namespace) -> str:
    if args.finishing_processes == 0:
        return f"{finishers.cores()} threads"
    return f"{args.finishing_processes or finishers.cores()} processes"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench pipeline")
    p.add_argument(
        "--ms",
        type=lambda s: [float(v) for v in s.split(",")],
        default=[5.0, 20.0, 100.0],
        help="engine milliseconds per image, comma-separated (default 5,20,100)",
    )
    p.add_argument("--base-ms", type=float, default=0.0, help="fixed engine ms per call")
    p.add_argument("--jobs", type=int, default=400)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument(
        "--in-flight", type=int, default=0, help="jobs claimed at once (0: --batches-in-flight)"
    )
    p.add_argument(
        "--batches-in-flight",
        type=int,
        default=WorkerConfig.batches_in_flight,
        help="batches' worth of jobs claimed at once (the worker's default)",
    )
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument(
        "--finishing-processes",
        type=int,
        default=None,
        help="finishing processes (default: one per core; 0: threads in the worker's process)",
    )
    return p


def main(argv: list[str]) -> int:
    asyncio.run(run(parser().parse_args(argv)))
    return 0
