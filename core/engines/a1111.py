"""How AUTOMATIC1111 names what a diffusers pipeline ran, for the PNG ``parameters``: the sampler
and "Schedule type" of a scheduler (``a1111_sampling``, which documents the map) and the short
model hash of a loaded pipeline (``model_hash``). Nothing here imports torch or diffusers: a
scheduler and a pipeline are read through their class name, config and weights files.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

__all__ = ["a1111_sampling", "model_hash", "weights_files"]


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
