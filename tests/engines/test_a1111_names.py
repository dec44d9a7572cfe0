"""A1111's names for diffusers' schedulers, and the model hash (no model loaded, no downloads)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

diffusers = pytest.importorskip("diffusers")

from core.engines.a1111 import a1111_sampling, model_hash, weights_files  # noqa: E402
from core.engines.pipelines import bundled_model_path  # noqa: E402

SD15 = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
LEADING = {**SD15, "timestep_spacing": "leading", "steps_offset": 1}

# (diffusers class, config) → (A1111 sampler, A1111 schedule type)
TABLE: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("EulerDiscreteScheduler", LEADING, "Euler", "DDIM"),
    ("EulerDiscreteScheduler", {**SD15, "timestep_spacing": "trailing"}, "Euler", "Simple"),
    ("EulerDiscreteScheduler", {**SD15, "timestep_spacing": "linspace"}, "Euler", "Uniform"),
    ("EulerDiscreteScheduler", {**LEADING, "use_karras_sigmas": True}, "Euler", "Karras"),
    ("EulerDiscreteScheduler", {**SD15, "use_exponential_sigmas": True}, "Euler", "Exponential"),
    ("EulerDiscreteScheduler", {**SD15, "use_beta_sigmas": True}, "Euler", "Beta"),
    ("EulerAncestralDiscreteScheduler", LEADING, "Euler a", "DDIM"),
    (
        "EulerAncestralDiscreteScheduler",
        {**SD15, "timestep_spacing": "trailing"},
        "Euler a",
        "Simple",
    ),
    ("HeunDiscreteScheduler", {**SD15, "use_karras_sigmas": True}, "Heun", "Karras"),
    ("LMSDiscreteScheduler", {**SD15, "timestep_spacing": "linspace"}, "LMS", "Uniform"),
    ("LMSDiscreteScheduler", {**SD15, "use_karras_sigmas": True}, "LMS", "Karras"),
    ("KDPM2DiscreteScheduler", LEADING, "DPM2", "DDIM"),
    ("KDPM2AncestralDiscreteScheduler", {**SD15, "use_karras_sigmas": True}, "DPM2 a", "Karras"),
    ("DPMSolverMultistepScheduler", SD15, "DPM++ 2M", "SGM Uniform"),
    ("DPMSolverMultistepScheduler", {**SD15, "use_karras_sigmas": True}, "DPM++ 2M", "Karras"),
    (
        "DPMSolverMultistepScheduler",
        {**LEADING, "algorithm_type": "sde-dpmsolver++"},
        "DPM++ 2M SDE",
        "DDIM",
    ),
    (
        "DPMSolverMultistepScheduler",
        {**SD15, "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
        "DPM++ 2M SDE",
        "Karras",
    ),
    (
        "DPMSolverMultistepScheduler",
        {**SD15, "algorithm_type": "sde-dpmsolver++", "solver_type": "heun"},
        "DPM++ 2M SDE Heun",
        "SGM Uniform",
    ),
    (
        "DPMSolverMultistepScheduler",
        {**SD15, "algorithm_type": "sde-dpmsolver++", "solver_order": 3},
        "DPM++ 3M SDE",
        "SGM Uniform",
    ),
    (
        "DPMSolverMultistepScheduler",
        {**SD15, "algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"},
        "DPMSolverMultistepScheduler",  # no A1111 name: the class
        "SGM Uniform",
    ),
    ("DPMSolverMultistepScheduler", {**SD15, "use_lu_lambdas": True}, "DPM++ 2M", None),
    ("DPMSolverSinglestepScheduler", SD15, "DPM++ SDE", "SGM Uniform"),
    ("DPMSolverSinglestepScheduler", {**SD15, "use_karras_sigmas": True}, "DPM++ SDE", "Karras"),
    ("DDIMScheduler", LEADING, "DDIM", "DDIM"),
    ("DDIMScheduler", {**SD15, "timestep_spacing": "trailing"}, "DDIM", "Simple"),
    ("PNDMScheduler", {**LEADING, "skip_prk_steps": True}, "PLMS", "DDIM"),
    ("PNDMScheduler", LEADING, "PNDMScheduler", "DDIM"),
    ("UniPCMultistepScheduler", SD15, "UniPC", "SGM Uniform"),
    ("UniPCMultistepScheduler", {**SD15, "timestep_spacing": "trailing"}, "UniPC", "Simple"),
    ("LCMScheduler", {**SD15, "timestep_spacing": "trailing"}, "LCM", None),
    ("EDMEulerScheduler", {}, "Euler", "Karras"),
    ("EDMEulerScheduler", {"sigma_schedule": "exponential"}, "Euler", "Exponential"),
    ("EDMDPMSolverMultistepScheduler", {}, "DPM++ 2M", "Karras"),
    ("FlowMatchEulerDiscreteScheduler", {"shift": 3.0}, "Euler", "Normal"),
    ("FlowMatchEulerDiscreteScheduler", {"use_karras_sigmas": True}, "Euler", "Karras"),
    ("FlowMatchHeunDiscreteScheduler", {}, "Heun", "Normal"),
    ("DEISMultistepScheduler", SD15, "DEISMultistepScheduler", "SGM Uniform"),
    ("DDPMScheduler", LEADING, "DDPMScheduler", "DDIM"),
    ("DPMSolverSDEScheduler", {**SD15, "use_karras_sigmas": True}, "DPM++ SDE", "Karras"),
    ("TCDScheduler", SD15, "TCDScheduler", None),
]


@pytest.mark.parametrize(
    ("kind", "config", "sampler", "schedule"),
    TABLE,
    ids=[f"{kind}-{sampler}-{schedule}" for kind, _, sampler, schedule in TABLE],
)
def test_a1111_names_of_diffusers_schedulers(
    kind: str, config: dict[str, Any], sampler: str, schedule: str | None
) -> None:
    assert a1111_sampling(scheduler(kind, config)) == (sampler, schedule)


def scheduler(kind: str, config: dict[str, Any]) -> Any:
    """The diffusers scheduler; where it needs a package this venv lacks (scipy for LMS and beta
    sigmas, torchsde for DPM++ SDE), a stand-in with its class name and the config."""
    try:
        return getattr(diffusers, kind).from_config(config)
    except ImportError:
        return type(kind, (), {"config": config})()


def test_a_switched_scheduler_keeps_the_pipelines_spacing() -> None:
    """``from_config`` of another scheduler's config (how presets switch) maps as it runs."""
    ddim = diffusers.DDIMScheduler.from_pretrained(bundled_model_path() / "scheduler")
    karras = diffusers.DPMSolverMultistepScheduler.from_config(ddim.config, use_karras_sigmas=True)

    assert a1111_sampling(ddim) == ("DDIM", "DDIM")  # the tiny model's own: leading, offset 1
    assert a1111_sampling(karras) == ("DPM++ 2M", "Karras")


def test_model_hash_is_the_short_sha256_of_the_unet_weights() -> None:
    unet = bundled_model_path() / "unet"
    pipe = SimpleNamespace(unet=SimpleNamespace(config={"_name_or_path": str(unet)}))
    weights = unet / "diffusion_pytorch_model.safetensors"

    assert model_hash(pipe) == hashlib.sha256(weights.read_bytes()).hexdigest()[:10]


def test_model_hash_of_a_sharded_transformer_covers_every_shard(tmp_path: Path) -> None:
    folder = tmp_path / "transformer"
    folder.mkdir()
    shards = {"diffusion_pytorch_model-00002-of-00002.safetensors": b"second"}
    shards["diffusion_pytorch_model-00001-of-00002.safetensors"] = b"first"
    for name, data in shards.items():
        (folder / name).write_bytes(data)
    weight_map = {"a.weight": sorted(shards)[0], "b.weight": sorted(shards)[1]}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"weight_map": weight_map})
    )
    pipe = SimpleNamespace(
        unet=None, transformer=SimpleNamespace(config={"_name_or_path": str(folder)})
    )

    assert [p.name for p in weights_files(folder)] == sorted(shards)
    assert model_hash(pipe) == hashlib.sha256(b"firstsecond").hexdigest()[:10]


def test_model_hash_is_none_without_weights_files(tmp_path: Path) -> None:
    assert (
        model_hash(SimpleNamespace(unet=SimpleNamespace(config={"_name_or_path": str(tmp_path)})))
        is None
    )
    assert model_hash(SimpleNamespace()) is None
