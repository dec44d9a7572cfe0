"""Model families read from configs alone (``core.brand.families``): no torch, no weights.

The configs are the fields real checkpoints carry (values from their published config files);
the tiny pipelines of every family are recognised end to end in tests/engines/test_families.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.brand.families import ModelFamily, detect_family, family_of, refusals


def _model(root: Path, name: str, pipeline: str, **configs: dict[str, Any]) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    for component, config in configs.items():
        (folder / component).mkdir()
        (folder / component / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("name", "pipeline", "configs", "expected"),
    [
        # runwayml/stable-diffusion-v1-5
        ("sd15", "StableDiffusionPipeline", {"unet": {"cross_attention_dim": 768}}, ("sd1", False)),
        # stabilityai/stable-diffusion-2-1: 1024-d cross-attention, linear projections
        (
            "sd21",
            "StableDiffusionPipeline",
            {"unet": {"cross_attention_dim": 1024, "use_linear_projection": True}},
            ("sd2", False),
        ),
        (
            "sd-turbo",
            "StableDiffusionPipeline",
            {"unet": {"cross_attention_dim": 1024}},
            ("sd2", True),
        ),
        (
            "sdxl-base",
            "StableDiffusionXLPipeline",
            {"unet": {"addition_embed_type": "text_time"}},
            ("sdxl", False),
        ),
        # a fine-tune saved as a plain SD pipeline class but with SDXL's UNet
        (
            "custom",
            "StableDiffusionPipeline",
            {"unet": {"addition_embed_type": "text_time"}},
            ("sdxl", False),
        ),
        ("SDXL-Lightning", "StableDiffusionXLPipeline", {"unet": {}}, ("sdxl", True)),
        # latent-consistency/lcm-sdxl: guidance is an input of the UNet
        (
            "lcm-merged",
            "StableDiffusionXLPipeline",
            {"unet": {"time_cond_proj_dim": 256}},
            ("sdxl", True),
        ),
        ("sd35", "StableDiffusion3Pipeline", {"transformer": {}}, ("sd3", False)),
        ("flux-dev", "FluxPipeline", {"transformer": {"guidance_embeds": True}}, ("flux", False)),
        (
            "flux-schnell",
            "FluxPipeline",
            {"transformer": {"guidance_embeds": False}},
            ("flux", True),
        ),
        ("x4", "StableDiffusionUpscalePipeline", {"unet": {}}, ("upscaler", False)),
        ("kandinsky", "KandinskyV22Pipeline", {}, ("other", False)),
    ],
)
def test_family_from_configs(
    tmp_path: Path, name: str, pipeline: str, configs: dict[str, Any], expected: tuple[str, bool]
) -> None:
    found = detect_family(_model(tmp_path, name, pipeline, **configs))
    assert found is not None
    assert (found.family, found.distilled) == expected
    assert found.pipeline == pipeline


def test_a_folder_without_model_index_has_no_family(tmp_path: Path) -> None:
    assert detect_family(tmp_path) is None
    assert family_of(str(tmp_path / "missing")) is None


def test_the_bundled_model_is_sd1() -> None:
    assert family_of("tiny") == ModelFamily("sd1", "StableDiffusionPipeline")


def test_a_parent_folder_named_turbo_does_not_make_a_model_distilled(tmp_path: Path) -> None:
    folder = _model(tmp_path / "turbo-team", "brand-model", "StableDiffusionPipeline", unet={})
    assert family_of(str(folder)) == ModelFamily("sd1", "StableDiffusionPipeline")


def _cache(root: Path, repo_id: str, pipeline: str, main: bool = True) -> None:
    repo = root / ("models--" + repo_id.replace("/", "--"))
    _model(repo / "snapshots", "a" * 40, pipeline, transformer={})
    if main:
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("a" * 40)


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"])
def test_hub_ids_are_looked_up_in_the_local_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "hub" if variable == "HF_HOME" else tmp_path
    _cache(cache, "black-forest-labs/FLUX.1-dev", "FluxPipeline")
    _cache(cache, "someone/no-refs", "StableDiffusion3Pipeline", main=False)
    monkeypatch.setenv(variable, str(tmp_path))
    assert family_of("black-forest-labs/FLUX.1-dev") == ModelFamily("flux", "FluxPipeline")
    assert family_of("someone/no-refs") == ModelFamily("sd3", "StableDiffusion3Pipeline")
    assert family_of("someone/not-downloaded") is None


def test_what_each_family_refuses() -> None:
    flux = ModelFamily("flux", "FluxPipeline")
    turbo = ModelFamily("sdxl", "StableDiffusionXLPipeline", distilled=True)
    sdxl = ModelFamily("sdxl", "StableDiffusionXLPipeline")
    assert [loc for loc, _ in refusals(flux, model="m", negative_prompt="x", guidance=3.5)] == [
        ("negative_prompt",)
    ]
    assert refusals(flux, model="m", negative_prompt=" ", guidance=30.0) == []
    assert [loc for loc, _ in refusals(turbo, model="m", negative_prompt="x", guidance=2.0)] == [
        ("negative_prompt",),
        ("engine", "guidance"),
    ]
    assert refusals(turbo, model="m", negative_prompt="", guidance=1.0) == []
    assert refusals(sdxl, model="m", negative_prompt="x", guidance=12.0) == []
    upscaler = ModelFamily("upscaler", "StableDiffusionUpscalePipeline")
    ((loc, why),) = refusals(upscaler, model="x4", negative_prompt="", guidance=5.0)
    assert loc == ("engine", "model")
    assert "engine.upscaler" in why
