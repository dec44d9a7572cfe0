"""The local engine: Stable-Diffusion-style pipelines through 🤗 diffusers.

torch and diffusers are imported only when a model is first loaded, never at import time, so the
bot processes (and ``core``) stay torch-free.

How a call runs (after diffusers' "Create a server" guide):

- **Load once** (``core.engines.pipelines``). ``model`` is a hub id (from the local Hugging Face
  cache; huggingface_hub honours ``HF_HUB_OFFLINE``, and ``local_files_only=True`` forbids
  downloads for this engine alone), a local folder, or ``tiny`` (the checkpoint bundled in
  ``core/engines/tiny``). Loaded pipelines live in a small LRU (``max_models``); the least recently
  used one is dropped when another is needed (and the CUDA cache emptied).
- **Per call, fresh state.** Each call builds a new pipeline object around the shared weights
  (``from_pipe``) with a fresh scheduler made from the loaded one's config: schedulers keep
  per-run state and are not thread-safe. Variations use ``AutoPipelineForImage2Image.from_pipe``
  on the same weights.
- **Per image, its own generator.** Every image gets a CPU ``torch.Generator`` seeded with its
  seed (prompts repeated per image), so a seed gives the same picture alone or in a batch, on any
  device (bit for bit only for the same call on the same machine: kernels round differently
  by batch size and device).
- **Off the loop, one call per model at a time.** The pipeline runs in ``asyncio.to_thread`` under
  one lock per loaded model. ``progress`` is delivered on the caller's loop; ``cancelled`` is
  polled from the pipeline's thread after every step (``callback_on_step_end``).
- **Batch cancellation.** One pipeline call denoises all images of a batch together, so one job
  cannot stop alone. When *every* job in the call is cancelled the run is interrupted
  (``pipe._interrupt``) at the end of the current step; otherwise the call runs to the end, the
  cancelled jobs' images are dropped and they come back as ``JobResult(cancelled=True)``. Jobs
  already cancelled before the call starts are left out of it.
- **Device and dtype.** ``device="auto"`` picks CUDA, then MPS, then CPU. dtype: CUDA → float16
  (bfloat16 with ``prefer_bf16`` when the GPU supports it), MPS → float16, CPU → float32; both can
  be forced. Attention is PyTorch's SDPA (diffusers' default with torch 2). ``compile_unet`` and
  ``channels_last`` are opt-in (they pay off on GPUs, not on CPUs).
- **Brand looks.** A job's LoRAs (``core.engines.loras``) and reference images
  (``core.engines.ip_adapter``: an IP-Adapter loaded once per model, embeddings cached per style
  code) are made active on the loaded pipeline before the per-call one is built.
- **What made the images.** Every result carries a ``Sampling``: the scheduler the call really
  ran and the model's short hash, as AUTOMATIC1111 names them (``core.engines.a1111``; the hash
  is computed once when the model is loaded).
- **Upscale.** Without ``upscaler``: Lanczos (``resampled:lanczos``). With one: a
  ``StableDiffusionUpscalePipeline`` (x4) is run and, for other factors, resampled to the asked
  size; any other model refines a Lanczos enlargement image-to-image at low strength. Either way
  the method is ``model:<upscaler>``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Literal

from PIL import Image

from core.engines import check_batch, check_size, vary_steps
from core.engines.families import image_size_kwargs, prompt_kwargs
from core.engines.ip_adapter import style_kwargs
from core.engines.loras import activate as activate_loras
from core.engines.pipelines import DeviceName, DTypeName, Pipelines, diffusers_module
from core.imaging.resize import resample_upscale, upscaled_size
from core.ports import (
    CancelledFn,
    GenerateJob,
    InpaintJob,
    JobResult,
    ProgressFn,
    Sampling,
    StyleJob,
    UpscaleResult,
    VaryJob,
)

__all__ = ["DiffusersEngine"]

log = logging.getLogger(__name__)


class _StepWatch:
    """``callback_on_step_end``: progress per job, cancellation, interrupt when all are gone.

    Runs on the pipeline's thread; progress is handed to the caller's loop.
    """

    def __init__(
        self,
        job_ids: Sequence[str],
        loop: asyncio.AbstractEventLoop,
        progress: ProgressFn | None,
        cancelled: CancelledFn | None,
        gone: set[str],
    ) -> None:
        self.job_ids = tuple(job_ids)
        self.loop = loop
        self.progress = progress
        self.cancelled = cancelled
        self.gone = gone

    def __call__(self, pipe: Any, step_index: int, timestep: Any, kwargs: Any) -> dict[str, Any]:
        total = int(getattr(pipe, "num_timesteps", 0) or step_index + 1)
        for job_id in self.job_ids:
            if job_id in self.gone:
                continue
            if self.progress is not None:
                self.loop.call_soon_threadsafe(self.progress, job_id, step_index + 1, total)
            if self.cancelled is not None and self.cancelled(job_id):
                self.gone.add(job_id)
        if self.gone.issuperset(self.job_ids):
            pipe._interrupt = True
        return {}


def _split(
    images: Sequence[Image.Image], jobs: Sequence[tuple[str, int]]
) -> dict[str, tuple[Image.Image, ...]]:
    out: dict[str, tuple[Image.Image, ...]] = {}
    start = 0
    for job_id, count in jobs:
        out[job_id] = tuple(image.convert("RGB") for image in images[start : start + count])
        start += count
    return out


class DiffusersEngine:
    """``Engine`` on diffusers pipelines; see the module docstring for the rules it follows."""

    name = "diffusers"

    def __init__(
        self,
        *,
        device: DeviceName | str = "auto",
        dtype: DTypeName | None = None,
        prefer_bf16: bool = False,
        max_models: int = 2,
        compile_unet: bool = False,
        compile_mode: str | None = None,
        channels_last: bool = False,
        upscale_steps: int = 20,
        upscale_strength: float = 0.3,
        local_files_only: bool = False,
    ) -> None:
        self.pipelines = Pipelines(
            device=device,
            dtype=dtype,
            prefer_bf16=prefer_bf16,
            max_models=max_models,
            compile_unet=compile_unet,
            compile_mode=compile_mode,
            channels_last=channels_last,
            local_files_only=local_files_only,
        )
        self.upscale_steps = upscale_steps
        self.upscale_strength = upscale_strength

    @property
    def device(self) -> str:
        """The device pipelines run on (resolving it imports torch)."""
        return self.pipelines.device

    @property
    def dtype(self) -> str:
        """The dtype of the weights, e.g. ``float16`` (resolving it imports torch)."""
        return self.pipelines.dtype

    @property
    def loaded_models(self) -> tuple[str, ...]:
        """Sources of the loaded pipelines, least recently used first."""
        return self.pipelines.loaded

    async def unload(self, model: str | None = None) -> None:
        """Drop one loaded model (or all of them)."""
        await self.pipelines.unload(model)

    # --- per-call pipelines ----------------------------------------------------------------------

    @staticmethod
    def _fresh(pipe: Any, task: Literal["text2image", "image2image", "inpaint"]) -> Any:
        """A new pipeline object on the shared weights, with its own scheduler."""
        diffusers = diffusers_module()
        scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config)
        # The Auto* classes' from_pipe share the modules as they are (DiffusionPipeline.from_pipe
        # would also cast them, to float32 unless told otherwise).
        if task == "text2image":
            auto = diffusers.AutoPipelineForText2Image
        elif task == "inpaint":
            auto = diffusers.AutoPipelineForInpainting
        else:
            auto = diffusers.AutoPipelineForImage2Image
        fresh = auto.from_pipe(pipe, scheduler=scheduler)
        fresh.set_progress_bar_config(disable=True)
        return fresh

    @staticmethod
    def _generators(seeds: Sequence[int]) -> list[Any]:
        import torch

        return [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]

    def _text2image(
        self, pipe: Any, jobs: Sequence[GenerateJob], watch: _StepWatch
    ) -> tuple[list[Any], Any]:
        """The images, and the scheduler that made them."""
        first = jobs[0]
        prompts = [job.prompt for job in jobs for _ in job.seeds]
        negatives = [job.negative_prompt for job in jobs for _ in job.seeds]
        seeds = [seed for job in jobs for seed in job.seeds]
        local = self.pipelines.local_files_only
        activate_loras(pipe, first.loras, local_files_only=local)
        style = style_kwargs(pipe, first.style, first.guidance, local_files_only=local)
        fresh = self._fresh(pipe, "text2image")
        out = fresh(
            **prompt_kwargs(fresh, prompts, negatives, first.guidance),
            **style,
            width=first.width,
            height=first.height,
            num_inference_steps=first.steps,
            generator=self._generators(seeds),
            callback_on_step_end=watch,
            callback_on_step_end_tensor_inputs=[],
            output_type="pil",
        )
        return list(out.images), fresh.scheduler

    def _image2image(
        self,
        pipe: Any,
        image: Image.Image,
        prompt: str,
        negative_prompt: str,
        steps: int,
        guidance: float,
        strength: float,
        seeds: Sequence[int],
        watch: _StepWatch | None,
        loras: Sequence[tuple[str, float]] = (),
        style: StyleJob | None = None,
    ) -> tuple[list[Image.Image], Any]:
        """The images, and the scheduler that made them."""
        local = self.pipelines.local_files_only
        activate_loras(pipe, loras, local_files_only=local)
        styled = style_kwargs(pipe, style, guidance, local_files_only=local)
        source = image.convert("RGB")
        width, height = source.size
        fit = (width - width % 8, height - height % 8)
        check_size(*fit)
        if fit != source.size:
            source = source.resize(fit, Image.Resampling.LANCZOS)
        fresh = self._fresh(pipe, "image2image")
        out = fresh(
            **prompt_kwargs(fresh, [prompt] * len(seeds), [negative_prompt] * len(seeds), guidance),
            image=[source] * len(seeds),
            **image_size_kwargs(fresh, *source.size),
            **styled,
            strength=strength,
            num_inference_steps=steps,
            generator=self._generators(seeds),
            callback_on_step_end=watch,
            callback_on_step_end_tensor_inputs=[],
            output_type="pil",
        )
        images = [img.convert("RGB") for img in out.images]
        if fit != (width, height):
            images = [img.resize((width, height), Image.Resampling.LANCZOS) for img in images]
        return images, fresh.scheduler

    def _inpaint(
        self, pipe: Any, job: InpaintJob, watch: _StepWatch
    ) -> tuple[list[Image.Image], Any]:
        """Generate under the white of ``job.mask``. With a 4-channel UNet (``tiny``, most
        checkpoints) diffusers' inpaint pipeline blends the kept latents back after each step
        (the masked-latent path); a 9-channel inpainting UNet is fed image and mask instead."""
        source = job.image.convert("RGB")
        check_size(*source.size)
        styled = style_kwargs(pipe, None, job.guidance)  # an adapter loaded: at scale 0
        fresh = self._fresh(pipe, "inpaint")
        width, height = source.size
        out = fresh(
            **styled,
            prompt=[job.prompt] * len(job.seeds),
            negative_prompt=[job.negative_prompt] * len(job.seeds),
            image=source,
            mask_image=job.mask.convert("L"),
            width=width,
            height=height,
            strength=1.0,
            num_inference_steps=job.steps,
            guidance_scale=job.guidance,
            generator=self._generators(job.seeds),
            callback_on_step_end=watch,
            callback_on_step_end_tensor_inputs=[],
            output_type="pil",
        )
        return [img.convert("RGB") for img in out.images], fresh.scheduler

    # --- the Engine port -------------------------------------------------------------------------

    async def generate(
        self,
        model: str,
        jobs: Sequence[GenerateJob],
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> list[JobResult]:
        check_batch(jobs)
        gone = {job.job_id for job in jobs if cancelled is not None and cancelled(job.job_id)}
        active = [job for job in jobs if job.job_id not in gone]
        images: dict[str, tuple[Image.Image, ...]] = {}
        sampling: Sampling | None = None
        if active:
            loaded = await self.pipelines.get(model)
            if loaded.is_upscaler:
                raise ValueError(f"model {model!r} is an upscaler, not a text-to-image model")
            watch = _StepWatch(
                [job.job_id for job in active],
                asyncio.get_running_loop(),
                progress,
                cancelled,
                gone,
            )
            async with loaded.lock:
                flat, scheduler = await asyncio.to_thread(
                    self._text2image, loaded.pipe, active, watch
                )
            images = _split(flat, [(job.job_id, len(job.seeds)) for job in active])
            sampling = loaded.sampling(scheduler)
        return [
            JobResult(job.job_id, (), cancelled=True)
            if job.job_id in gone
            else JobResult(job.job_id, images[job.job_id], sampling=sampling)
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
        vary_steps(job.steps, job.strength)
        if not job.seeds:
            raise ValueError(f"job {job.job_id} has no seeds (one image per seed)")
        gone: set[str] = set()
        if cancelled is not None and cancelled(job.job_id):
            return JobResult(job.job_id, (), cancelled=True)
        loaded = await self.pipelines.get(model)
        watch = _StepWatch([job.job_id], asyncio.get_running_loop(), progress, cancelled, gone)
        async with loaded.lock:
            images, scheduler = await asyncio.to_thread(
                self._image2image,
                loaded.pipe,
                job.image,
                job.prompt,
                job.negative_prompt,
                job.steps,
                job.guidance,
                job.strength,
                job.seeds,
                watch,
                job.loras,
                job.style,
            )
        if job.job_id in gone:
            return JobResult(job.job_id, (), cancelled=True)
        return JobResult(job.job_id, tuple(images), sampling=loaded.sampling(scheduler))

    async def inpaint(
        self,
        model: str,
        job: InpaintJob,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> JobResult:
        """The scene around what ``job.mask`` keeps (product shots), one image per seed."""
        if not job.seeds:
            raise ValueError(f"job {job.job_id} has no seeds (one image per seed)")
        if job.image.size != job.mask.size:
            raise ValueError(f"job {job.job_id}: image {job.image.size} ≠ mask {job.mask.size}")
        if cancelled is not None and cancelled(job.job_id):
            return JobResult(job.job_id, (), cancelled=True)
        gone: set[str] = set()
        loaded = await self.pipelines.get(model)
        watch = _StepWatch([job.job_id], asyncio.get_running_loop(), progress, cancelled, gone)
        async with loaded.lock:
            images, scheduler = await asyncio.to_thread(self._inpaint, loaded.pipe, job, watch)
        if job.job_id in gone:
            return JobResult(job.job_id, (), cancelled=True)
        return JobResult(job.job_id, tuple(images), sampling=loaded.sampling(scheduler))

    async def upscale(
        self, model: str, image: Image.Image, factor: int = 2, upscaler: str | None = None
    ) -> UpscaleResult:
        size = upscaled_size(image, factor)
        if upscaler is None:
            big = await asyncio.to_thread(resample_upscale, image.convert("RGB"), factor)
            return UpscaleResult(big, "resampled:lanczos")
        loaded = await self.pipelines.get(upscaler)
        async with loaded.lock:
            if loaded.is_upscaler:
                big = await asyncio.to_thread(self._model_upscale, loaded.pipe, image, size)
            else:
                enlarged = resample_upscale(image.convert("RGB"), factor)
                steps = max(self.upscale_steps, 1)
                vary_steps(steps, self.upscale_strength)
                refined, _ = await asyncio.to_thread(
                    self._image2image,
                    loaded.pipe,
                    enlarged,
                    "",
                    "",
                    steps,
                    1.0,
                    self.upscale_strength,
                    (0,),
                    None,
                )
                big = refined[0]
        return UpscaleResult(big, f"model:{upscaler}")

    def _model_upscale(self, pipe: Any, image: Image.Image, size: tuple[int, int]) -> Image.Image:
        """A diffusers upscaler pipeline (x4), then resampled to ``size`` when that differs."""
        scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config)
        fresh = pipe.__class__(**{**pipe.components, "scheduler": scheduler})
        fresh.set_progress_bar_config(disable=True)
        out = fresh(
            prompt="",
            image=image.convert("RGB"),
            num_inference_steps=max(self.upscale_steps, 1),
            generator=self._generators([0])[0],
            output_type="pil",
        )
        big: Image.Image = out.images[0].convert("RGB")
        if big.size != size:
            big = big.resize(size, Image.Resampling.LANCZOS)
        return big
