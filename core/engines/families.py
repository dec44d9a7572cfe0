"""Per-family knowledge the diffusers engine needs at call time, and the models in the local
Hugging Face cache with their family (for ``onbrand doctor``).

Which family a folder holds and what a preset may ask of it is ``core.brand.families`` (read by
preset validation, torch-free); this module turns a loaded pipeline into the arguments its
``__call__`` takes. Every family's pipeline takes ``prompt``, ``guidance_scale``, per-image
generators and ``callback_on_step_end``; they differ in the negative prompt:

- SD 1.x/2.x, SDXL, SD3 and distilled UNet models take ``negative_prompt`` (a distilled model
  runs at guidance 0, where diffusers never encodes it).
- FLUX's and SD3's image-to-image take the output size as arguments (``image_size_kwargs``);
  SD's and SDXL's take it from the image.
- FLUX takes none (its guidance is embedded in the transformer, not classifier-free): the
  argument is left out, and a non-empty one is refused here, when the model is known, for a
  preset whose model was not in the cache when it was validated.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.brand.families import ModelFamily, detect_family, hub_cache_dir

__all__ = [
    "CachedModel",
    "cached_models",
    "image_size_kwargs",
    "prompt_kwargs",
    "takes_negative_prompt",
]


def takes_negative_prompt(pipe: Any) -> bool:
    """Whether ``pipe`` (a diffusers pipeline) has a classifier-free negative prompt."""
    return not type(pipe).__name__.startswith("Flux")


def prompt_kwargs(
    pipe: Any, prompts: Sequence[str], negatives: Sequence[str], guidance: float
) -> dict[str, Any]:
    """The prompt and guidance arguments of ``pipe``'s call, one prompt per image."""
    kwargs: dict[str, Any] = {"prompt": list(prompts), "guidance_scale": guidance}
    if takes_negative_prompt(pipe):
        kwargs["negative_prompt"] = list(negatives)
    elif any(negative.strip() for negative in negatives):
        raise ValueError(
            f"{type(pipe).__name__} takes no negative prompt (FLUX models have none); "
            "remove the negative prompt (and --no) for this model"
        )
    return kwargs


def image_size_kwargs(pipe: Any, width: int, height: int) -> dict[str, Any]:
    """``width``/``height`` for an image-to-image call that takes them (FLUX, SD3), which would
    otherwise make the model's default size instead of the source image's; SD and SDXL take the
    size from the image and have no such arguments."""
    parameters = inspect.signature(pipe.__call__).parameters
    return {"width": width, "height": height} if "height" in parameters else {}


@dataclass(frozen=True)
class CachedModel:
    """A model repository in the local Hugging Face cache."""

    repo_id: str
    family: ModelFamily | None  # None: no model_index.json (not a diffusers pipeline)
    size_on_disk: int
    path: Path

    @property
    def label(self) -> str:
        return self.family.label if self.family else "not a diffusers pipeline"


def cached_models(cache_dir: Path | None = None) -> list[CachedModel]:
    """The model repositories in the local hub cache (``hub_cache_dir()``), by id, each with
    its family read from its newest snapshot that has a ``model_index.json``."""
    from huggingface_hub import scan_cache_dir

    folder = cache_dir or hub_cache_dir()
    if not folder.is_dir():
        return []
    out = []
    for repo in scan_cache_dir(folder).repos:
        if repo.repo_type != "model":
            continue
        revisions = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
        pipelines = [r for r in revisions if (r.snapshot_path / "model_index.json").is_file()]
        family = detect_family(pipelines[0].snapshot_path, repo.repo_id) if pipelines else None
        chosen = (pipelines or revisions)[:1]
        path = chosen[0].snapshot_path if chosen else repo.repo_path
        out.append(CachedModel(repo.repo_id, family, repo.size_on_disk, path))
    return sorted(out, key=lambda m: m.repo_id.lower())
