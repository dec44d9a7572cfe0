"""The ``Engine`` contract: one suite that every engine runs (like diffusers' PipelineTesterMixin).

Subclass ``EngineContract`` in a ``test_*.py`` module, name the class ``Test...``, and provide two
fixtures: ``engine`` (the engine under test; module scope keeps a loaded model across tests) and
``model`` (the model name to pass it). Turn off what the engine cannot promise with the class
flags below instead of overriding tests; adjust sizes and steps for its speed.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from PIL import Image, ImageChops

from core.imaging.resize import MAX_RESAMPLE_FACTOR
from core.ports import Engine, GenerateJob, JobResult, VaryJob


def max_diff(a: Image.Image, b: Image.Image) -> int:
    """Largest absolute difference of any channel of any pixel (uint8), sizes must match."""
    assert a.size == b.size, f"sizes differ: {a.size} vs {b.size}"
    extrema = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getextrema()
    return max(high for _, high in extrema)  # type: ignore[misc]


class ProgressLog:
    """Records ``progress`` calls per job; ``cancel_at[job] = step`` turns a job's cancel on
    once that step's progress has arrived, ``cancel_on_check[job] = n`` at the engine's n-th
    question. Engines that run in a thread hand progress to the loop (``call_soon_threadsafe``)
    and may finish more steps before it arrives, so for them only the second is a deadline."""

    def __init__(self) -> None:
        self.steps: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.cancel_at: dict[str, int] = {}
        self.cancel_on_check: dict[str, int] = {}
        self.checks: dict[str, int] = defaultdict(int)
        self.cancel_now: set[str] = set()

    def progress(self, job_id: str, step: int, total: int) -> None:
        self.steps[job_id].append((step, total))
        at = self.cancel_at.get(job_id)
        if at is not None and step >= at:
            self.cancel_now.add(job_id)

    def cancelled(self, job_id: str) -> bool:
        self.checks[job_id] += 1
        on = self.cancel_on_check.get(job_id)
        if on is not None and self.checks[job_id] >= on:
            self.cancel_now.add(job_id)
        return job_id in self.cancel_now

    def last_step(self, job_id: str) -> int:
        return self.steps[job_id][-1][0] if self.steps[job_id] else 0


class EngineContract:
    """Tests every ``core.ports.Engine`` must pass. Not collected itself (no ``Test`` prefix)."""

    # Size and effort of the jobs. Sizes must be valid for the engine; ``alt_size`` is not square.
    width: ClassVar[int] = 64
    height: ClassVar[int] = 64
    alt_size: ClassVar[tuple[int, int]] = (96, 64)
    steps: ClassVar[int] = 3
    guidance: ClassVar[float] = 5.0
    # Capabilities an engine may lack.
    deterministic: ClassVar[bool] = True  # same seed → same picture (alone or in a batch)
    batch_tolerance: ClassVar[int] = 1  # max uint8 difference allowed between batched and alone
    supports_step_progress: ClassVar[bool] = True  # progress after every step, cancel mid-run
    supports_vary: ClassVar[bool] = True
    supports_negative_prompt: ClassVar[bool] = True  # FLUX has none
    upscale_factor: ClassVar[int] = 2
    upscaler: ClassVar[str | None] = None  # passed to upscale(); None means Lanczos

    # --- fixtures subclasses provide -----------------------------------------------------------

    @pytest.fixture
    def engine(self) -> Engine:
        raise NotImplementedError("subclasses provide the engine under test")

    @pytest.fixture
    def model(self) -> str:
        raise NotImplementedError("subclasses provide the model name")

    # --- helpers -------------------------------------------------------------------------------

    def job(self, job_id: str = "a", **changes: Any) -> GenerateJob:
        fields: dict[str, Any] = {
            "job_id": job_id,
            "prompt": "red circle on blue background",
            "negative_prompt": "",
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "guidance": self.guidance,
            "seeds": (7,),
        }
        fields.update(changes)
        return GenerateJob(**fields)

    async def one(self, engine: Engine, model: str, job: GenerateJob) -> JobResult:
        (result,) = await engine.generate(model, [job])
        return result

    def require(self, flag: bool, why: str) -> None:
        if not flag:
            pytest.skip(why)

    # --- generate ------------------------------------------------------------------------------

    async def test_result_shape(self, engine: Engine, model: str) -> None:
        result = await self.one(engine, model, self.job(seeds=(1, 2, 3)))
        assert result.job_id == "a"
        assert not result.cancelled
        assert len(result.images) == 3
        for image in result.images:
            assert isinstance(image, Image.Image)
            assert image.size == (self.width, self.height)
            assert image.mode == "RGB"

    async def test_sizes_honoured(self, engine: Engine, model: str) -> None:
        width, height = self.alt_size
        result = await self.one(engine, model, self.job(width=width, height=height))
        assert [image.size for image in result.images] == [(width, height)]

    async def test_results_in_job_order(self, engine: Engine, model: str) -> None:
        jobs = [self.job("j2", seeds=(1,)), self.job("j0", seeds=(2, 3)), self.job("j1")]
        results = await engine.generate(model, jobs)
        assert [r.job_id for r in results] == ["j2", "j0", "j1"]
        assert [len(r.images) for r in results] == [1, 2, 1]

    async def test_no_jobs_no_results(self, engine: Engine, model: str) -> None:
        assert await engine.generate(model, []) == []

    @pytest.mark.parametrize(
        "change", [{"width": 128}, {"height": 128}, {"steps": 2}, {"guidance": 1.5}]
    )
    async def test_incompatible_jobs_refused(
        self, engine: Engine, model: str, change: dict[str, Any]
    ) -> None:
        with pytest.raises(ValueError, match="share"):
            await engine.generate(model, [self.job("a"), self.job("b", **change)])

    async def test_same_seed_same_pixels(self, engine: Engine, model: str) -> None:
        self.require(self.deterministic, "the engine does not promise determinism")
        first = await self.one(engine, model, self.job())
        again = await self.one(engine, model, self.job())
        assert max_diff(first.images[0], again.images[0]) == 0

    async def test_different_seeds_differ(self, engine: Engine, model: str) -> None:
        result = await self.one(engine, model, self.job(seeds=(1, 2)))
        assert max_diff(*result.images) > 0

    async def test_batch_equivalence(self, engine: Engine, model: str) -> None:
        """B in a batch with A gives the pixels of B alone: each image has its own generator."""
        self.require(self.deterministic, "the engine does not promise determinism")
        negative = "blurry" if self.supports_negative_prompt else ""
        a = self.job("a", prompt="green square on yellow background", seeds=(11, 12))
        b = self.job("b", negative_prompt=negative, seeds=(5, 6))
        alone = await self.one(engine, model, b)
        _, together = await engine.generate(model, [a, b])
        for solo, batched in zip(alone.images, together.images, strict=True):
            assert max_diff(solo, batched) <= self.batch_tolerance
        # and image i of a job is image i re-made alone from its seed
        (second,) = (
            await self.one(engine, model, self.job("b", negative_prompt=negative, seeds=(6,)))
        ).images
        assert max_diff(second, alone.images[1]) <= self.batch_tolerance

    # --- progress and cancellation ---------------------------------------------------------------

    async def test_progress_monotonic_to_total(self, engine: Engine, model: str) -> None:
        self.require(self.supports_step_progress, "the engine reports no step progress")
        log = ProgressLog()
        jobs = [self.job("a"), self.job("b", seeds=(3, 4))]
        await engine.generate(model, jobs, progress=log.progress, cancelled=log.cancelled)
        for job in jobs:
            calls = log.steps[job.job_id]
            steps = [step for step, _ in calls]
            totals = {total for _, total in calls}
            assert steps == sorted(set(steps)), f"not strictly rising: {steps}"
            assert len(totals) == 1
            assert steps[-1] == totals.pop() == self.steps

    async def test_cancel_mid_run_stops_within_a_step(self, engine: Engine, model: str) -> None:
        self.require(self.supports_step_progress, "the engine cannot stop mid-run")
        steps = max(self.steps, 6)
        log = ProgressLog()
        log.cancel_on_check["a"] = 2  # before the run or after step 1, then after step 1 or 2
        (result,) = await engine.generate(
            model, [self.job(steps=steps)], progress=log.progress, cancelled=log.cancelled
        )
        assert result.cancelled
        assert result.images == ()
        assert 1 <= log.last_step("a") <= 2
        assert log.checks["a"] <= 3  # it stopped asking: the job is gone

    async def test_cancel_before_start(self, engine: Engine, model: str) -> None:
        log = ProgressLog()
        log.cancel_now.add("a")
        (result,) = await engine.generate(
            model, [self.job()], progress=log.progress, cancelled=log.cancelled
        )
        assert result == JobResult("a", (), cancelled=True)
        assert log.steps["a"] == []

    async def test_cancel_one_job_of_a_batch(self, engine: Engine, model: str) -> None:
        """The cancelled job comes back empty; the other one finishes with all its steps."""
        log = ProgressLog()
        if self.supports_step_progress:
            log.cancel_on_check["a"] = 2
        else:
            log.cancel_now.add("a")
        jobs = [self.job("a"), self.job("b", seeds=(8, 9))]
        a, b = await engine.generate(model, jobs, progress=log.progress, cancelled=log.cancelled)
        assert a.cancelled
        assert a.images == ()
        assert not b.cancelled
        assert len(b.images) == 2
        if self.supports_step_progress:
            assert log.last_step("a") <= 2
            assert log.last_step("b") == self.steps

    async def test_concurrent_calls(self, engine: Engine, model: str) -> None:
        """Calls from several tasks at once each get their own, correct results."""
        jobs = [self.job(f"c{i}", seeds=(i,)) for i in range(3)]
        results = await asyncio.gather(*(engine.generate(model, [job]) for job in jobs))
        assert [r.job_id for (r,) in results] == ["c0", "c1", "c2"]
        if self.deterministic:
            again = await self.one(engine, model, jobs[1])
            assert max_diff(results[1][0].images[0], again.images[0]) == 0

    # --- vary and upscale ------------------------------------------------------------------------

    async def source_image(self, engine: Engine, model: str) -> Image.Image:
        return (await self.one(engine, model, self.job(seeds=(21,)))).images[0]

    def vary_job(self, image: Image.Image, seeds: Sequence[int] = (31,)) -> VaryJob:
        return VaryJob(
            job_id="v",
            image=image,
            prompt="green square on yellow background",
            negative_prompt="",
            steps=max(self.steps, 4),
            guidance=self.guidance,
            strength=0.75,
            seeds=tuple(seeds),
        )

    async def test_vary_same_size_and_differs(self, engine: Engine, model: str) -> None:
        self.require(self.supports_vary, "the engine makes no variations")
        source = await self.source_image(engine, model)
        result = await engine.vary(model, self.vary_job(source, seeds=(31, 32)))
        assert result.job_id == "v"
        assert not result.cancelled
        assert len(result.images) == 2
        for image in result.images:
            assert image.size == source.size
            assert max_diff(image, source) > 0
        assert max_diff(*result.images) > 0

    async def test_vary_deterministic(self, engine: Engine, model: str) -> None:
        self.require(self.supports_vary and self.deterministic, "no deterministic variations")
        source = await self.source_image(engine, model)
        first = await engine.vary(model, self.vary_job(source))
        again = await engine.vary(model, self.vary_job(source))
        assert max_diff(first.images[0], again.images[0]) == 0

    async def test_vary_progress_and_cancel(self, engine: Engine, model: str) -> None:
        self.require(self.supports_vary and self.supports_step_progress, "no vary progress")
        source = await self.source_image(engine, model)
        log = ProgressLog()
        await engine.vary(model, self.vary_job(source), progress=log.progress)
        steps = [step for step, _ in log.steps["v"]]
        assert steps
        assert steps == sorted(set(steps))
        assert steps[-1] == log.steps["v"][-1][1]
        log = ProgressLog()
        log.cancel_now.add("v")
        result = await engine.vary(
            model, self.vary_job(source), progress=log.progress, cancelled=log.cancelled
        )
        assert result.cancelled
        assert result.images == ()

    @pytest.mark.parametrize("factor", [0, MAX_RESAMPLE_FACTOR + 1])
    async def test_upscale_takes_the_factors_every_engine_takes(
        self, engine: Engine, model: str, factor: int
    ) -> None:
        source = Image.new("RGB", (64, 64), "red")
        with pytest.raises(ValueError, match=f"upscale factor must be between 1 and .* {factor}$"):
            await engine.upscale(model, source, factor, upscaler=self.upscaler)

    async def test_upscale_multiplies_size(self, engine: Engine, model: str) -> None:
        source = await self.source_image(engine, model)
        result = await engine.upscale(model, source, self.upscale_factor, upscaler=self.upscaler)
        factor = self.upscale_factor
        assert result.image.size == (source.width * factor, source.height * factor)
        if self.upscaler is None:
            assert result.method == "resampled:lanczos"
        else:
            assert result.method == f"model:{self.upscaler}"
