"""LoRAs on a loaded pipeline: loaded once per base model, activated per call.

A job names its LoRAs as ``(source, weight)`` pairs (``GenerateJob.loras``). ``activate`` runs on
the pipeline's thread under the model's lock, before the per-call pipeline is made (it shares the
denoiser and text encoders, so what is active on the loaded pipeline is active in the call):

- each source is loaded the first time any call asks for it (diffusers' ``load_lora_weights``,
  through peft), as an adapter named from the source, and stays loaded with the base model, so
  presets that share a base model share its weights and each LoRA is read from disk once;
- then exactly the call's LoRAs are active at the call's weights (``set_adapters``); a call with
  none disables the LoRA layers, so it gets the base model's pixels.

A source is a ``.safetensors`` file, a folder holding ``pytorch_lora_weights.safetensors``, or a
hub id in the local cache. A LoRA that does not fit the model (another family, a bad file) raises
``LoraLoadError`` naming the LoRA and the model.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["Lora", "LoraLoadError", "activate", "adapter_name"]

Lora = tuple[str, float]  # (source, weight)


class LoraLoadError(ValueError):
    """A LoRA could not be loaded onto a model."""


def adapter_name(source: str) -> str:
    """A stable adapter name for ``source`` (a file, a folder or a hub id); a file replaced on
    disk (another size or mtime) gets a new name, so it is loaded again."""
    path = Path(source).expanduser()
    key = source
    if path.exists():
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return "lora_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def _loaded(pipe: Any) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}


def _looks_like_a_path(source: str) -> bool:
    return (
        source.endswith(".safetensors")
        or source.startswith((".", "/", "~"))
        or (source.count("/") != 1)
    )


def _load(pipe: Any, source: str, name: str, local_files_only: bool) -> None:
    model = type(pipe).__name__
    path = Path(source).expanduser()
    if not path.exists() and _looks_like_a_path(source):
        raise LoraLoadError(f"LoRA {source!r} not found (no such file or folder)")
    kwargs: dict[str, Any]
    if path.is_file():
        where, kwargs = str(path.parent), {"weight_name": path.name}
    else:
        where, kwargs = (str(path) if path.is_dir() else source), {}
    if local_files_only:
        kwargs["local_files_only"] = True
    # a UNet-only LoRA makes diffusers warn that no text-encoder keys were found
    quiet = logging.getLogger("diffusers.loaders.lora_base")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # peft warns whenever a second adapter joins a model: several LoRAs are the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            # diffusers drops a half-loaded adapter itself when a LoRA does not fit
            warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")
            pipe.load_lora_weights(where, adapter_name=name, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        _forget(pipe, name)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        shapes = "its layers have other shapes than the model's: is it for another model family?"
        why = shapes if "size mismatch" in str(exc) else first
        raise LoraLoadError(f"could not load LoRA {source!r} onto {model}: {why}") from exc
    finally:
        quiet.setLevel(level)
    if name not in _loaded(pipe):  # diffusers only warns when no key fits
        raise LoraLoadError(
            f"LoRA {source!r} has no layer that fits {model}: is it for another model family?"
        )


def _forget(pipe: Any, name: str) -> None:
    """Drop what a failed load left behind, so later calls run on the base model."""
    if name in _loaded(pipe):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")
            pipe.delete_adapters(name)


def activate(pipe: Any, loras: Sequence[Lora], *, local_files_only: bool = False) -> None:
    """Make exactly ``loras`` active on ``pipe`` at their weights (none: LoRA layers off)."""
    if not loras:
        if _loaded(pipe):
            pipe.disable_lora()
        return
    names = [adapter_name(source) for source, _ in loras]
    loaded = _loaded(pipe)
    for (source, _), name in zip(loras, names, strict=True):
        if name not in loaded:
            _load(pipe, source, name, local_files_only)
    pipe.enable_lora()
    pipe.set_adapters(names, adapter_weights=[float(weight) for _, weight in loras])
