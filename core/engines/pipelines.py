"""Loaded diffusers pipelines: where they run and which stay loaded.

``Pipelines`` resolves the device (``auto``: CUDA, then MPS, then CPU) and dtype once, loads a
model (``tiny``, a local folder or a hub id from the local cache) on first use, keeps at most
``max_models`` of them (least recently used dropped first, the CUDA cache emptied) and hands out
each as a ``Loaded``: the pipeline, its A1111 short hash and the lock that serialises calls on it.
torch and diffusers are imported only when a model is loaded or the device resolved.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from core.engines.a1111 import a1111_sampling, model_hash
from core.ports import Sampling

__all__ = [
    "BUNDLED_MODEL",
    "Loaded",
    "ModelLoadError",
    "Pipelines",
    "bundled_model_path",
    "diffusers_module",
    "resolve_model",
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


def diffusers_module() -> Any:
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
class Loaded:
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


class Pipelines:
    """Loaded pipelines by source, at most ``max_models`` of them (see the module docstring)."""

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
        self.local_files_only = local_files_only
        self._models: OrderedDict[str, Loaded] = OrderedDict()
        self._load_lock = asyncio.Lock()
        self._device: str | None = None
        self._dtype: Any = None

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
    def loaded(self) -> tuple[str, ...]:
        """Sources of the loaded pipelines, least recently used first."""
        return tuple(self._models)

    def _load(self, source: str) -> Any:
        _quiet()
        import torch

        diffusers = diffusers_module()
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
                # Weights only from safetensors: a pickled ``.bin`` in a folder a preset names
                # would run code on load (torch's weights_only guard is not the place to rely on).
                "use_safetensors": True,
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

    def _evict(self, loaded: Loaded) -> None:
        # A call already holding this pipeline finishes on it; the memory goes when it returns.
        log.info("unloading %s", loaded.source)
        gc.collect()
        if self._device is not None and self._device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    async def get(self, model: str) -> Loaded:
        """The loaded pipeline for ``model``, loading it (and dropping the least recently used
        one past ``max_models``) when needed."""
        source = resolve_model(model)
        loaded = self._models.get(source)
        if loaded is not None:  # fast path: never wait behind another model's loading
            self._models.move_to_end(source)
            return loaded
        async with self._load_lock:
            loaded = self._models.get(source)
            if loaded is None:
                pipe = await asyncio.to_thread(self._load, source)
                loaded = Loaded(source, pipe, await asyncio.to_thread(self._hash, source, pipe))
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
