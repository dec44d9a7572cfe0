"""Model families: which kind of diffusers model a folder holds, and what it can be asked for.

A diffusers model folder says what it is in its ``model_index.json`` (``_class_name``, the
pipeline class) and its components' configs; nothing here imports torch or diffusers, so preset
validation and ``onbrand doctor`` can read them anywhere.

==========  ==========================================  ==================  ========================
family      how it is recognised                        negative prompt     guidance
==========  ==========================================  ==================  ========================
``sd1``     ``StableDiffusion*Pipeline``, UNet without  yes                 classifier-free (CFG)
            linear projections (SD 1.x)
``sd2``     the same with linear projections or 1024-d  yes                 CFG
            cross-attention (SD 2.x)
``sdxl``    ``StableDiffusionXL*`` or a UNet fed added  yes                 CFG
            time ids (``addition_embed_type=text_time``)
``sd3``     ``StableDiffusion3*`` (three text encoders) yes                 CFG
``flux``    ``Flux*``                                   no                  embedded in the model
==========  ==========================================  ==================  ========================

A **distilled** model (SD-Turbo, SDXL-Turbo, Lightning, LCM, Hyper-SD, FLUX.1-schnell) runs in a
few steps without classifier-free guidance: guidance above 1 and a negative prompt mean nothing
to it. Distillation leaves the layout as it was, so it is recognised from the model's name (the
hub id or folder name says ``turbo``, ``lightning``, ``lcm`` or ``hyper``), an LCM UNet's guidance
embedding (``time_cond_proj_dim``), or a FLUX transformer without guidance embeddings (schnell).

A model is found where the engine finds it (``core.engines.pipelines.resolve_model``): ``tiny``
(the bundled checkpoint), a local folder, or a hub id in the local Hugging Face cache
(``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME``/hub, ``~/.cache/huggingface/hub``).
A hub id not in the cache has an unknown family: the engine checks it when it loads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DISTILLED_MARKS",
    "Family",
    "ModelFamily",
    "detect_family",
    "family_of",
    "hub_cache_dir",
    "model_folder",
    "refusals",
]

Family = Literal["sd1", "sd2", "sdxl", "sd3", "flux", "upscaler", "other"]
# Words in a model's name that mark a distilled (few-step, guidance-free) model.
DISTILLED_MARKS = ("turbo", "lightning", "lcm", "hyper")
_BUNDLED = "tiny"


@dataclass(frozen=True)
class ModelFamily:
    """What kind of model a folder holds (see the module docstring for the rules)."""

    family: Family
    pipeline: str  # model_index.json's _class_name
    distilled: bool = False

    @property
    def negative_prompt(self) -> bool:
        """Whether a negative prompt does anything."""
        return self.family not in ("flux", "upscaler") and not self.distilled

    @property
    def guidance(self) -> Literal["cfg", "embedded", "none"]:
        """How ``guidance`` acts: classifier-free, embedded in the model, or not at all."""
        if self.distilled or self.family == "upscaler":
            return "none"
        return "embedded" if self.family == "flux" else "cfg"

    @property
    def label(self) -> str:
        """E.g. ``sdxl`` or ``sd2, distilled``."""
        return f"{self.family}, distilled" if self.distilled else self.family


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def detect_family(folder: Path, name: str | None = None) -> ModelFamily | None:
    """The family of the diffusers model in ``folder`` (``None``: no ``model_index.json``).

    ``name`` is what the model is called (a hub id); the folder's own name when not given.
    """
    index = _json(folder / "model_index.json")
    if not index:
        return None
    pipeline = str(index.get("_class_name", ""))
    unet = _json(folder / "unet" / "config.json")
    transformer = _json(folder / "transformer" / "config.json")
    called = (name or folder.name).lower()
    distilled = any(mark in called for mark in DISTILLED_MARKS)
    family: Family
    if "Upscale" in pipeline:
        family = "upscaler"
    elif pipeline.startswith("Flux"):
        family = "flux"
        distilled = distilled or transformer.get("guidance_embeds") is False
    elif pipeline.startswith("StableDiffusion3"):
        family = "sd3"
    elif pipeline.startswith("StableDiffusionXL") or unet.get("addition_embed_type") == "text_time":
        family = "sdxl"
    elif pipeline.startswith(("StableDiffusion", "AltDiffusion")) or unet:
        sd2 = unet.get("use_linear_projection") is True or unet.get("cross_attention_dim") == 1024
        family = "sd2" if sd2 else "sd1"
    else:
        family = "other"
    if unet.get("time_cond_proj_dim") is not None:  # LCM: guidance is an input of the UNet
        distilled = True
    return ModelFamily(family, pipeline, distilled)


def hub_cache_dir() -> Path:
    """The local Hugging Face hub cache, by huggingface_hub's own rules."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        value = os.environ.get(variable)
        if value:
            return Path(value).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def _cached_snapshot(repo_id: str) -> Path | None:
    """The snapshot folder of ``repo_id`` in the hub cache that holds a model_index.json."""
    repo = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    try:
        main = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        main = ""
    if main and (snapshots / main / "model_index.json").is_file():
        return snapshots / main
    found = [s for s in snapshots.iterdir() if (s / "model_index.json").is_file()]
    return max(found, key=lambda s: s.stat().st_mtime) if found else None


def model_folder(model: str) -> Path | None:
    """Where ``model`` is on this machine: the bundled ``tiny``, a folder, or a cached hub id;
    ``None`` when it is in none of them."""
    if model == _BUNDLED:
        return Path(str(files("core") / "engines" / _BUNDLED))
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        return _cached_snapshot(model)
    return None


def family_of(model: str) -> ModelFamily | None:
    """The family of ``model`` (a name as presets and the engine take it), when it is found."""
    folder = model_folder(model)
    if folder is None:
        return None
    cached = folder.parent.name == "snapshots"  # a hub cache snapshot is named by its commit
    return detect_family(folder, model if cached else None)


def refusals(
    family: ModelFamily, *, model: str, negative_prompt: str, guidance: float
) -> list[tuple[tuple[str, ...], str]]:
    """What a preset asks of ``family`` that it cannot do: (key path, why and what to change)."""
    out: list[tuple[tuple[str, ...], str]] = []
    what = f"{model!r} is a {family.label} model"
    if family.family == "upscaler":
        out.append(
            (
                ("engine", "model"),
                f"{what}, not a text-to-image model; name it as engine.upscaler instead",
            )
        )
        return out
    if negative_prompt.strip() and not family.negative_prompt:
        why = "takes no negative prompt" if family.family == "flux" else "runs without guidance"
        out.append(
            (
                ("negative_prompt",),
                f"{what} and {why}, so a negative prompt would do nothing; remove negative_prompt "
                "(put what to avoid in banned_terms, or say what to show in prompt)",
            )
        )
    if family.guidance == "none" and guidance > 1.0:
        out.append(
            (
                ("engine", "guidance"),
                f"{what} and runs without classifier-free guidance, so guidance {guidance:g} "
                "means nothing; set engine.guidance: 0",
            )
        )
    return out
