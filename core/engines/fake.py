"""A deterministic engine without torch: the ``Engine`` port's fake.

Pictures are a function of (prompt, negative prompt, seed, size): a background colour from the
prompt, a disc and stripes placed by the seed. ``steps`` are honoured (``progress`` after each,
``cancelled`` polled before the run and after each step) with an optional sleep per step, so the
worker's progress and cancellation paths can be exercised in fast tests. Batch semantics match
``DiffusersEngine``: the run stops early only when every job in it is cancelled.

Its results say how they were made as every engine's do (``core.ports.Sampling``): the fake runs
no sampler, so it reports the sampler ``fake`` (``FAKE_SAMPLING``), with no schedule type and no
model hash (it has no weights); a test can pass another ``sampling`` to the constructor.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from core.engines import check_batch, check_size, vary_steps
from core.imaging.resize import resample_upscale, upscaled_size
from core.ports import (
    CancelledFn,
    GenerateJob,
    InpaintJob,
    JobResult,
    ProgressFn,
    Sampling,
    UpscaleResult,
    VaryJob,
)

__all__ = ["FAKE_SAMPLING", "FakeCall", "FakeEngine", "FakeEngineError"]

FAKE_SAMPLING = Sampling(sampler="fake")
"""What the fake reports: A1111-format readers need a sampler name, and "fake" is the truth."""


class FakeEngineError(RuntimeError):
    """Raised on purpose when a prompt contains one of ``FakeEngine.fail_on``."""


@dataclass(frozen=True)
class FakeCall:
    """One call the fake served, for tests that assert on batching."""

    method: str  # "generate" | "vary" | "upscale"
    model: str
    job_ids: tuple[str, ...]


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()


def _colour(data: bytes) -> tuple[int, int, int]:
    return (data[0], data[1], data[2])


def picture(prompt: str, negative_prompt: str, seed: int, width: int, height: int) -> Image.Image:
    """The fake's image for one seed: the same arguments always give the same pixels."""
    scene = _digest("scene", prompt, negative_prompt)
    varied = _digest("seed", prompt, negative_prompt, seed)
    image = Image.new("RGB", (width, height), _colour(scene))
    draw = ImageDraw.Draw(image)
    stripe = max(2, width // (4 + varied[3] % 8))
    for x in range(varied[4] % stripe, width, 2 * stripe):
        draw.rectangle((x, 0, x + stripe // 2, height), fill=_colour(scene[3:]))
    radius = max(2, min(width, height) // (3 + varied[5] % 3))
    cx, cy = varied[6] * width // 256, varied[7] * height // 256
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=_colour(varied))
    return image


class FakeEngine:
    """``Engine`` without torch. ``step_delay`` seconds are slept per step (default 0)."""

    name = "fake"

    def __init__(
        self,
        *,
        step_delay: float = 0.0,
        fail_on: Collection[str] = (),
        sampling: Sampling = FAKE_SAMPLING,
    ) -> None:
        self.step_delay = step_delay
        self.fail_on = tuple(fail_on)
        self.sampling = sampling
        self.calls: list[FakeCall] = []

    def _maybe_fail(self, *prompts: str) -> None:
        for prompt in prompts:
            for needle in self.fail_on:
                if needle in prompt:
                    raise FakeEngineError(f"fake engine failure: prompt contains {needle!r}")

    async def _run_steps(
        self,
        job_ids: Sequence[str],
        total: int,
        progress: ProgressFn | None,
        cancelled: CancelledFn | None,
    ) -> set[str]:
        """Step all jobs together; return the ids seen as cancelled (sticky, like diffusers)."""
        gone = {job_id for job_id in job_ids if cancelled is not None and cancelled(job_id)}
        for step in range(1, total + 1):
            if len(gone) == len(job_ids):
                break
            await asyncio.sleep(self.step_delay)
            for job_id in job_ids:
                if job_id in gone:
                    continue
                if progress is not None:
                    progress(job_id, step, total)
                if cancelled is not None and cancelled(job_id):
                    gone.add(job_id)
        return gone

    async def generate(
        self,
        model: str,
        jobs: Sequence[GenerateJob],
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> list[JobResult]:
        check_batch(jobs)
        if not jobs:
            return []
        self._maybe_fail(*(job.prompt for job in jobs))
        self.calls.append(FakeCall("generate", model, tuple(job.job_id for job in jobs)))
        gone = await self._run_steps(
            [job.job_id for job in jobs], jobs[0].steps, progress, cancelled
        )
        results = []
        for job in jobs:
            if job.job_id in gone:
                results.append(JobResult(job.job_id, (), cancelled=True))
                continue
            images = tuple(
                picture(job.prompt, job.negative_prompt, seed, job.width, job.height)
                for seed in job.seeds
            )
            results.append(JobResult(job.job_id, images, sampling=self.sampling))
        return results

    async def vary(
        self,
        model: str,
        job: VaryJob,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> JobResult:
        total = vary_steps(job.steps, job.strength)
        if not job.seeds:
            raise ValueError(f"job {job.job_id} has no seeds (one image per seed)")
        self._maybe_fail(job.prompt)
        self.calls.append(FakeCall("vary", model, (job.job_id,)))
        if await self._run_steps([job.job_id], total, progress, cancelled):
            return JobResult(job.job_id, (), cancelled=True)
        source = job.image.convert("RGB")
        width, height = source.size
        images = tuple(
            Image.blend(
                source,
                picture(job.prompt, job.negative_prompt, seed, width, height),
                max(job.strength, 0.05),
            )
            for seed in job.seeds
        )
        return JobResult(job.job_id, images, sampling=self.sampling)

    async def inpaint(
        self,
        model: str,
        job: InpaintJob,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> JobResult:
        """The fake picture where the mask is white, the image where it is black."""
        if not job.seeds:
            raise ValueError(f"job {job.job_id} has no seeds (one image per seed)")
        self._maybe_fail(job.prompt)
        self.calls.append(FakeCall("inpaint", model, (job.job_id,)))
        if await self._run_steps([job.job_id], job.steps, progress, cancelled):
            return JobResult(job.job_id, (), cancelled=True)
        source = job.image.convert("RGB")
        width, height = source.size
        images = tuple(
            Image.composite(
                picture(job.prompt, job.negative_prompt, seed, width, height),
                source,
                job.mask.convert("L"),
            )
            for seed in job.seeds
        )
        return JobResult(job.job_id, images, sampling=self.sampling)

    async def upscale(
        self, model: str, image: Image.Image, factor: int = 2, upscaler: str | None = None
    ) -> UpscaleResult:
        """Lanczos resampling; with ``upscaler`` the method names it (the fake has no model)."""
        upscaled_size(image, factor)
        check_size(image.width, image.height, multiple=1)
        self.calls.append(FakeCall("upscale", model, ()))
        await asyncio.sleep(0)
        big = resample_upscale(image.convert("RGB"), factor)
        return UpscaleResult(big, f"model:{upscaler}" if upscaler else "resampled:lanczos")
