"""The local engine: Stable-Diffusion-style pipelines through 🤗 diffusers.

torch and diffusers are imported only when a model is first loaded, never at import time, so the
bot processes (and ``core``) stay torch-free.

How a call runs (after diffusers' "Create a server" guide):

- **Load once.** ``model`` is a hub id (from the local Hugging Face cache; huggingface_hub honours
  ``HF_HUB_OFFLINE``, and ``local_files_only=True`` forbids downloads for this engine alone), a
  local folder, or ``tiny`` (the checkpoint bundled in
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
- **What made the images.** Every result carries a ``Sampling``: the scheduler the call really
  ran, named as AUTOMATIC1111 names it (``a1111_sampling``, which documents the map), and the
  model's short hash (``model_hash``: the first 10 hex digits of the sha256 of the UNet's or
  transformer's weights file, computed once when the model is loaded).
- **Upscale.** Without ``upscaler``: Lanczos (``resampled:lanczos``). With one: a
  ``StableDiffusionUpscalePipeline`` (x4) is run and, for other factors, resampled to the asked
  size; any other model refines a Lanczos enlargement image-to-image at low strength. Either way
  the method is ``model:<upscaler>``.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import importlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Final, Literal

from PIL import Image

from core.engines import check_batch, check_size, vary_steps
from core.imaging.resize import resample_upscale, upscaled_size
from core.ports import (
    CancelledFn,
    GenerateJob,
    JobResult,
    ProgressFn,
    Sampling,
    UpscaleResult,
    VaryJob,
)

__all__ = [
    "BUNDLED_MODEL",
    "DiffusersEngine",
    "ModelLoadError",
    "a1111_sampling",
    "bundled_model_path",
    "model_hash",
    "resolve_model",
    "weights_files",
]

log = logging.getLogger(__name__)

BUNDLED_MODEL = "tiny"
DeviceName = Literal["auto", "cuda", "mps", "cpu"]
DTypeName = Literal["float16", "bfloat16", "float32"]


class ModelLoadError(RuntimeError):
    """A model could not be loaded (not in the local cache, not a pipeline folder, ...)."""


def bundled_model_path() -> Path:
    """The folder of the bundled ``tiny`` checkpoint."""
    return Path(str(files("core") / "engines" / BUNDLED_MODEL))


def resolve_model(model: str) -> str:
    """``tiny`` → the bundled folder; an existing folder → its absolute path; else a hub id."""
    if model == BUNDLED_MODEL:
        return str(bundled_model_path())
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return model


# --- A1111's names for diffusers' schedulers ------------------------------------------------------

# Scheduler class → A1111 sampler, where the class alone decides it (see ``a1111_sampling``).
_A1111_SAMPLERS: Final[Mapping[str, str]] = {
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "HeunDiscreteScheduler": "Heun",
    "LMSDiscreteScheduler": "LMS",
    "KDPM2DiscreteScheduler": "DPM2",
    "KDPM2AncestralDiscreteScheduler": "DPM2 a",
    "DPMSolverSDEScheduler": "DPM++ SDE",
    "DDIMScheduler": "DDIM",
    "UniPCMultistepScheduler": "UniPC",
    "LCMScheduler": "LCM",
    "EDMEulerScheduler": "Euler",
    "FlowMatchEulerDiscreteScheduler": "Euler",
    "FlowMatchHeunDiscreteScheduler": "Heun",
}
# Multistep solvers space ``linspace``/``leading`` timesteps over steps + 1 points, dropping the
# last (the others over ``steps`` points); the singlestep solver always does.
_STEPS_PLUS_ONE: Final = frozenset(
    {
        "DPMSolverMultistepScheduler",
        "UniPCMultistepScheduler",
        "DEISMultistepScheduler",
        "DPMSolverSinglestepScheduler",
    }
)
# Their timesteps come from their own grid (LCM's 50 "original" steps), not from a schedule.
_OWN_GRID: Final = frozenset({"LCMScheduler", "TCDScheduler"})


def _a1111_sampler(kind: str, config: Mapping[str, Any]) -> str:
    if kind in ("DPMSolverMultistepScheduler", "EDMDPMSolverMultistepScheduler"):
        algorithm = config.get("algorithm_type", "dpmsolver++")
        order = int(config.get("solver_order", 2))
        solver = config.get("solver_type", "midpoint")
        if algorithm == "dpmsolver++" and order == 2:
            return "DPM++ 2M"
        if algorithm == "sde-dpmsolver++" and order == 2:
            return "DPM++ 2M SDE Heun" if solver == "heun" else "DPM++ 2M SDE"
        if algorithm == "sde-dpmsolver++" and order == 3:
            return "DPM++ 3M SDE"
        return kind
    if kind == "DPMSolverSinglestepScheduler":
        ok = config.get("algorithm_type", "dpmsolver++") == "dpmsolver++"
        return "DPM++ SDE" if ok and int(config.get("solver_order", 2)) == 2 else kind
    if kind == "PNDMScheduler":
        return "PLMS" if config.get("skip_prk_steps", False) else kind
    return _A1111_SAMPLERS.get(kind, kind)


def _a1111_schedule(kind: str, config: Mapping[str, Any]) -> str | None:
    if kind in _OWN_GRID:
        return None
    if config.get("use_karras_sigmas") or config.get("sigma_schedule") == "karras":
        return "Karras"
    if config.get("use_exponential_sigmas") or config.get("sigma_schedule") == "exponential":
        return "Exponential"
    if config.get("use_beta_sigmas"):
        return "Beta"
    if config.get("use_lu_lambdas") or config.get("use_flow_sigmas"):
        return None  # no A1111 name
    spacing = config.get("timestep_spacing")
    if spacing is None:
        if kind == "DPMSolverSinglestepScheduler":
            return "SGM Uniform"
        if kind.startswith("FlowMatch"):
            return "Normal"
        return None
    if spacing == "trailing":
        return "Simple"
    if spacing == "linspace":
        return "SGM Uniform" if kind in _STEPS_PLUS_ONE else "Uniform"
    if spacing == "leading":
        return "DDIM"
    return None


def a1111_sampling(scheduler: Any) -> tuple[str, str | None]:
    """A1111's (sampler, "Schedule type") for a diffusers scheduler object, from its class and
    config. Where A1111 has no name, the sampler is the diffusers class name and the schedule
    type is ``None`` (left out of the PNG ``parameters``).

    ======================================  ===========================================
    diffusers scheduler (options)           A1111 sampler
    ======================================  ===========================================
    EulerDiscreteScheduler                  Euler
    EulerAncestralDiscreteScheduler         Euler a
    HeunDiscreteScheduler                   Heun
    LMSDiscreteScheduler                    LMS
    KDPM2DiscreteScheduler                  DPM2
    KDPM2AncestralDiscreteScheduler         DPM2 a
    DPMSolverMultistepScheduler             DPM++ 2M  (algorithm_type dpmsolver++, order 2)
      algorithm_type sde-dpmsolver++        DPM++ 2M SDE (order 2, solver_type midpoint)
      ... solver_type heun                  DPM++ 2M SDE Heun
      ... solver_order 3                    DPM++ 3M SDE
      anything else (dpmsolver, order 1/3)  DPMSolverMultistepScheduler
    DPMSolverSinglestepScheduler            DPM++ SDE (dpmsolver++, order 2: diffusers' own
                                            table), else the class name
    DPMSolverSDEScheduler                   DPM++ SDE
    DDIMScheduler                           DDIM
    PNDMScheduler (skip_prk_steps=True)     PLMS; with PRK steps: PNDMScheduler
    UniPCMultistepScheduler                 UniPC
    LCMScheduler                            LCM
    EDMEulerScheduler                       Euler
    EDMDPMSolverMultistepScheduler          as DPMSolverMultistepScheduler
    FlowMatchEulerDiscreteScheduler         Euler
    FlowMatchHeunDiscreteScheduler          Heun
    DEIS, DDPM, TCD, SA-Solver, ...         the class name (A1111 has none)
    ======================================  ===========================================

    ======================================  ===========================================
    scheduler option                        A1111 "Schedule type"
    ======================================  ===========================================
    use_karras_sigmas (EDM: karras)         Karras
    use_exponential_sigmas (EDM: exp.)      Exponential
    use_beta_sigmas                         Beta
    timestep_spacing "trailing"             Simple (first step at the last training
                                            timestep, stride T/steps; SGM Uniform is the
                                            same to within a timestep)
    timestep_spacing "linspace"             Uniform (``steps`` points from T-1 to 0); for
                                            the multistep solvers (DPM++ 2M, UniPC, DEIS)
                                            SGM Uniform (steps + 1 points, last dropped)
    timestep_spacing "leading"              DDIM (stride T//steps from steps_offset up)
    DPMSolverSinglestepScheduler            SGM Uniform (its fixed grid)
    FlowMatch* (no spacing option)          Normal (linspace in t from sigma_max to min)
    use_lu_lambdas, use_flow_sigmas, LCM,   left out (no A1111 name; LCM and TCD step
    TCD, unknown spacing                    on their own grid)
    ======================================  ===========================================
    """
    kind = type(scheduler).__name__
    config: Mapping[str, Any] = getattr(scheduler, "config", None) or {}
    return _a1111_sampler(kind, config), _a1111_schedule(kind, config)


# --- the model hash ------------------------------------------------------------------------------

_WEIGHTS: Final = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
_DENOISERS: Final = ("unet", "transformer", "prior")
_hashes: dict[tuple[tuple[str, int, int], ...], str] = {}
_hashes_lock = threading.Lock()


def weights_files(folder: Path) -> list[Path]:
    """The weights files diffusers loads from a model folder (no variant), shards in order."""
    for name in _WEIGHTS:
        single = folder / name
        if single.is_file():
            return [single]
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()
            return [folder / shard for shard in sorted(set(shards))]
    return []


def model_hash(pipe: Any) -> str | None:
    """A1111's short model hash for a loaded pipeline: the first 10 hex digits of the sha256 of
    its denoiser's (UNet's, else transformer's) weights file, the file diffusers loaded (a sharded
    one: of its shards' bytes in order). A1111 hashes the single checkpoint file; a diffusers
    folder has no such file, and the denoiser's weights are what tells one model from another.
    ``None`` when the files can't be found (a model built in memory). Cached per file (path,
    size, mtime), so reloading a model doesn't read it again."""
    for name in _DENOISERS:
        module = getattr(pipe, name, None)
        config = getattr(module, "config", None)
        folder = config.get("_name_or_path") if isinstance(config, Mapping) else None
        if folder and Path(folder).is_dir():
            paths = weights_files(Path(folder))
            if paths:
                return _short_hash(paths)
    return None


def _short_hash(paths: Sequence[Path]) -> str:
    resolved = [path.resolve() for path in paths]  # the hub cache links to blobs
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in resolved)
    with _hashes_lock:
        cached = _hashes.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    for path in resolved:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    short = digest.hexdigest()[:10]
    with _hashes_lock:
        _hashes[key] = short
    return short


def _diffusers() -> Any:
    """The diffusers package, typed ``Any``: our boundary with an untyped library."""
    return importlib.import_module("diffusers")


_quiet_once = threading.Lock()
_quiet_done = False


class _DropTorchvisionNotice(logging.Filter):
    """transformers 5 announces its Pillow fallback for image processors we never use."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


def _quiet() -> None:
    """Silence the noise of loading: progress bars, the torchvision notice (FINDINGS.md)."""
    global _quiet_done
    with _quiet_once:
        if _quiet_done:
            return
        logging.getLogger("transformers.utils.import_utils").addFilter(_DropTorchvisionNotice())
        importlib.import_module("diffusers.utils.logging").disable_progress_bar()
        importlib.import_module("transformers.utils.logging").disable_progress_bar()
        _quiet_done = True


@dataclass
class _Loaded:
    """A loaded pipeline, its short hash and the lock that serialises calls on it."""

    source: str
    pipe: Any
    model_hash: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def sampling(self, scheduler: Any) -> Sampling:
        """What a call on this model that ran ``scheduler`` reports."""
        sampler, schedule = a1111_sampling(scheduler)
        return Sampling(sampler, schedule, self.model_hash)

    @property
    def is_upscaler(self) -> bool:
        return "Upscale" in type(self.pipe).__name__


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
        if max_models < 1:
            raise ValueError(f"max_models must be at least 1, got {max_models}")
        self.requested_device = device
        self.requested_dtype = dtype
        self.prefer_bf16 = prefer_bf16
        self.max_models = max_models
        self.compile_unet = compile_unet
        self.compile_mode = compile_mode
        self.channels_last = channels_last
        self.upscale_steps = upscale_steps
        self.upscale_strength = upscale_strength
        self.local_files_only = local_files_only
        self._models: OrderedDict[str, _Loaded] = OrderedDict()
        self._load_lock = asyncio.Lock()
        self._device: str | None = None
        self._dtype: Any = None

    # --- device, dtype, loading ----------------------------------------------------------------

    def _placement(self) -> tuple[str, Any]:
        """Resolve (device, torch dtype) once; imports torch."""
        if self._device is None:
            import torch

            device = self.requested_device
            if device == "auto":
                if torch.cuda.is_available():
                    device = "cuda"
                elif torch.backends.mps.is_available():
                    device = "mps"
                else:
                    device = "cpu"
            kind = torch.device(device).type
            if self.requested_dtype is not None:
                dtype = getattr(torch, self.requested_dtype)
            elif kind == "cuda":
                bf16 = self.prefer_bf16 and torch.cuda.is_bf16_supported()
                dtype = torch.bfloat16 if bf16 else torch.float16
            elif kind == "mps":
                dtype = torch.float16
            else:
                dtype = torch.float32
            self._device, self._dtype = device, dtype
        return self._device, self._dtype

    @property
    def device(self) -> str:
        """The device pipelines run on (resolving it imports torch)."""
        return self._placement()[0]

    @property
    def dtype(self) -> str:
        """The dtype of the weights, e.g. ``float16`` (resolving it imports torch)."""
        return str(self._placement()[1]).removeprefix("torch.")

    @property
    def loaded_models(self) -> tuple[str, ...]:
        """Sources of the loaded pipelines, least recently used first."""
        return tuple(self._models)

    def _load(self, source: str) -> Any:
        _quiet()
        import torch

        diffusers = _diffusers()
        utils = importlib.import_module("diffusers.utils")
        device, dtype = self._placement()
        # diffusers renamed ``torch_dtype`` to ``dtype``; the old name now warns.
        renamed = hasattr(
            importlib.import_module("diffusers.utils.deprecation_utils"), "_resolve_dtype"
        )
        try:
            offline = {"local_files_only": True} if self.local_files_only else {}
            config = diffusers.DiffusionPipeline.load_config(source, **offline)
            kwargs: dict[str, Any] = {
                "dtype" if renamed else "torch_dtype": dtype,
                "low_cpu_mem_usage": utils.is_accelerate_available(),
                **offline,
            }
            if "safety_checker" in config:
                kwargs.update(safety_checker=None, requires_safety_checker=False)
            if "Upscale" in str(config.get("_class_name", "")):
                pipe = diffusers.DiffusionPipeline.from_pretrained(source, **kwargs)
            else:
                pipe = diffusers.AutoPipelineForText2Image.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not load model {source!r}: {exc}") from exc
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        unet = getattr(pipe, "unet", None)
        if unet is not None and self.channels_last:
            unet.to(memory_format=torch.channels_last)
        if unet is not None and self.compile_unet:
            unet.compile(mode=self.compile_mode)
        log.info("loaded %s on %s as %s", source, device, dtype)
        return pipe

    @staticmethod
    def _hash(source: str, pipe: Any) -> str | None:
        try:
            return model_hash(pipe)
        except (OSError, ValueError, KeyError) as exc:  # a hash is nice to have, not needed
            log.warning("could not hash the weights of %s: %s", source, exc)
            return None

    def _evict(self, loaded: _Loaded) -> None:
        # A call already holding this pipeline finishes on it; the memory goes when it returns.
        log.info("unloading %s", loaded.source)
        gc.collect()
        if self._device is not None and self._device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    async def _get(self, model: str) -> _Loaded:
        source = resolve_model(model)
        loaded = self._models.get(source)
        if loaded is not None:  # fast path: never wait behind another model's loading
            self._models.move_to_end(source)
            return loaded
        async with self._load_lock:
            loaded = self._models.get(source)
            if loaded is None:
                pipe = await asyncio.to_thread(self._load, source)
                loaded = _Loaded(source, pipe, await asyncio.to_thread(self._hash, source, pipe))
                self._models[source] = loaded
                while len(self._models) > self.max_models:
                    _, old = self._models.popitem(last=False)
                    self._evict(old)
            self._models.move_to_end(source)
            return loaded

    async def unload(self, model: str | None = None) -> None:
        """Drop one loaded model (or all of them)."""
        async with self._load_lock:
            sources = [resolve_model(model)] if model is not None else list(self._models)
            for source in sources:
                loaded = self._models.pop(source, None)
                if loaded is not None:
                    self._evict(loaded)

    # --- per-call pipelines ----------------------------------------------------------------------

    @staticmethod
    def _fresh(pipe: Any, task: Literal["text2image", "image2image"]) -> Any:
        """A new pipeline object on the shared weights, with its own scheduler."""
        diffusers = _diffusers()
        scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config)
        # The Auto* classes' from_pipe share the modules as they are (DiffusionPipeline.from_pipe
        # would also cast them, to float32 unless told otherwise).
        if task == "text2image":
            auto = diffusers.AutoPipelineForText2Image
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
        fresh = self._fresh(pipe, "text2image")
        out = fresh(
            prompt=prompts,
            negative_prompt=negatives,
            width=first.width,
            height=first.height,
            num_inference_steps=first.steps,
            guidance_scale=first.guidance,
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
    ) -> tuple[list[Image.Image], Any]:
        """The images, and the scheduler that made them."""
        source = image.convert("RGB")
        width, height = source.size
        fit = (width - width % 8, height - height % 8)
        check_size(*fit)
        if fit != source.size:
            source = source.resize(fit, Image.Resampling.LANCZOS)
        fresh = self._fresh(pipe, "image2image")
        out = fresh(
            prompt=[prompt] * len(seeds),
            negative_prompt=[negative_prompt] * len(seeds),
            image=[source] * len(seeds),
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=self._generators(seeds),
            callback_on_step_end=watch,
            callback_on_step_end_tensor_inputs=[],
            output_type="pil",
        )
        images = [img.convert("RGB") for img in out.images]
        if fit != (width, height):
            images = [img.resize((width, height), Image.Resampling.LANCZOS) for img in images]
        return images, fresh.scheduler

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
            loaded = await self._get(model)
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
        loaded = await self._get(model)
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
            )
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
        loaded = await self._get(upscaler)
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
