"""The diffusers engine on the bundled tiny checkpoint (CPU, 64 px, a few steps)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("torch")

from core.engines.diffusers import DiffusersEngine
from core.engines.pipelines import ModelLoadError, bundled_model_path, resolve_model
from core.imaging.metadata import read_parameters
from core.ports import Engine, GenerateJob
from tests.engines.contract import EngineContract, max_diff

pytestmark = pytest.mark.slow

if not (bundled_model_path() / "model_index.json").exists():
    pytest.skip("the tiny checkpoint is not built yet", allow_module_level=True)


@pytest.fixture(scope="module")
def tiny_engine() -> DiffusersEngine:
    """One engine for the module: the tiny model loads once."""
    return DiffusersEngine(device="cpu", upscale_steps=4)


class TestDiffusersEngine(EngineContract):
    steps = 3

    @pytest.fixture
    def engine(self, tiny_engine: DiffusersEngine) -> Engine:
        return tiny_engine

    @pytest.fixture
    def model(self) -> str:
        return "tiny"


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.fixture(scope="module")
def cuda_engine() -> DiffusersEngine:
    return DiffusersEngine(device="cuda", upscale_steps=4)


# Defined only where CUDA is present (one "skipped" line per test elsewhere would be noise).
if _cuda():

    @pytest.mark.gpu
    class TestDiffusersEngineCuda(EngineContract):
        """The same contract on CUDA in float16 (the automatic dtype there)."""

        steps = 3
        # cuBLAS/cuDNN may pick other kernels for another batch size; fp16 rounding then differs.
        batch_tolerance = 4

        @pytest.fixture
        def engine(self, cuda_engine: DiffusersEngine) -> Engine:
            assert cuda_engine.dtype == "float16"
            return cuda_engine

        @pytest.fixture
        def model(self) -> str:
            return "tiny"


def _job(job_id: str = "a", seeds: tuple[int, ...] = (1,)) -> GenerateJob:
    return GenerateJob(job_id, "red circle on blue background", "", 64, 64, 2, 5.0, seeds)


def test_import_does_not_import_torch() -> None:
    code = "import core.engines.diffusers, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_model_names_resolve(tmp_path: Path) -> None:
    assert resolve_model("tiny") == str(bundled_model_path())
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model("stabilityai/sd-turbo") == "stabilityai/sd-turbo"


def test_dtype_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert (DiffusersEngine(device="cpu").device, DiffusersEngine(device="cpu").dtype) == (
        "cpu",
        "float32",
    )
    assert DiffusersEngine(device="cpu", dtype="bfloat16").dtype == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert DiffusersEngine().device == "cuda"
    assert DiffusersEngine().dtype == "float16"
    assert DiffusersEngine(prefer_bf16=True).dtype == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert DiffusersEngine(prefer_bf16=True).dtype == "float16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert (DiffusersEngine().device, DiffusersEngine().dtype) == ("mps", "float16")


async def test_loaded_scheduler_is_never_used(tiny_engine: DiffusersEngine) -> None:
    """Each call makes its own scheduler: the loaded one never gets timesteps set."""
    await tiny_engine.generate("tiny", [_job()])
    (source,) = [s for s in tiny_engine.loaded_models if s == resolve_model("tiny")]
    pipe = tiny_engine.pipelines._models[source].pipe
    assert pipe.scheduler.num_inference_steps is None
    assert pipe.scheduler.config.prediction_type == "v_prediction"


async def test_lru_keeps_max_models(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundled_model_path(), copy)
    engine = DiffusersEngine(device="cpu", max_models=1)
    (tiny,) = await engine.generate("tiny", [_job()])
    assert engine.loaded_models == (resolve_model("tiny"),)
    (copied,) = await engine.generate(str(copy), [_job()])
    assert engine.loaded_models == (str(copy.resolve()),)
    assert max_diff(tiny.images[0], copied.images[0]) == 0
    await engine.unload()
    assert not engine.loaded_models


async def test_missing_model_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="could not load"):
        await DiffusersEngine(device="cpu").generate(str(tmp_path), [_job()])


async def test_pickled_weights_are_refused(tmp_path: Path) -> None:
    """A model folder whose UNet weights are a pickled ``.bin`` (which can run code on load) is
    not loaded, even though diffusers would accept it: only safetensors weights are read."""
    import torch
    from safetensors.torch import load_file

    copy = tmp_path / "pickled"
    shutil.copytree(bundled_model_path(), copy)
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), copy / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ModelLoadError, match="could not load"):
        await DiffusersEngine(device="cpu").generate(str(copy), [_job()])


async def test_upscale_through_a_model(tiny_engine: DiffusersEngine) -> None:
    """With an upscaler that is not an x4 upscaler, it refines a Lanczos enlargement."""
    (result,) = await tiny_engine.generate("tiny", [_job()])
    big = await tiny_engine.upscale("tiny", result.images[0], 2, upscaler="tiny")
    assert big.method == "model:tiny"
    assert big.image.size == (128, 128)
    lanczos = await tiny_engine.upscale("tiny", result.images[0], 2)
    assert max_diff(big.image, lanczos.image) > 0


async def test_vary_keeps_an_odd_size(tiny_engine: DiffusersEngine) -> None:
    """Sizes the VAE cannot take are fitted for the run and restored afterwards."""
    from PIL import Image

    from core.ports import VaryJob

    source = Image.new("RGB", (60, 44), (200, 30, 30))
    job = VaryJob("v", source, "blue square on red background", "", 2, 5.0, 0.5, (1,))
    result = await tiny_engine.vary("tiny", job)
    assert [image.size for image in result.images] == [(60, 44)]


def _tiny_unet_hash() -> str:
    import hashlib

    weights = bundled_model_path() / "unet" / "diffusion_pytorch_model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:10]


async def test_results_say_which_scheduler_ran(tiny_engine: DiffusersEngine) -> None:
    """The tiny model's own DDIM (leading, offset 1): A1111's DDIM sampler on its DDIM grid."""
    from PIL import Image

    from core.ports import Sampling, VaryJob

    a, b = await tiny_engine.generate("tiny", [_job("a"), _job("b", (2, 3))])
    varied = await tiny_engine.vary(
        "tiny", VaryJob("v", Image.new("RGB", (64, 64)), "a", "", 2, 5.0, 0.5, (1,))
    )

    expected = Sampling("DDIM", "DDIM", _tiny_unet_hash())
    assert a.sampling == b.sampling == varied.sampling == expected


async def test_a_tiny_original_is_read_by_an_a1111_reader(
    tiny_engine: DiffusersEngine, tmp_path: Path
) -> None:
    """The worker's originals from the tiny model (imagine, variation, upscale), read by
    sd-parsers (PyPI) with prompt, negative prompt, seed, steps, sampler and model."""
    import dataclasses

    pytest.importorskip("sd_parsers")
    from core.domain import GenerationKind, Params
    from tests.worker_harness import Harness, read_a1111

    params = Params(
        prompt="a yellow square on a blue background",
        negative_prompt="red",
        width=64,
        height=64,
        steps=4,
        guidance=5.0,
        seed=7,
        n=2,
        engine="diffusers",
        model="tiny",
        preset="demo",
        preset_version="v1",
    )
    harness = Harness(tmp_path)
    harness.engines.put("diffusers", tiny_engine)
    async with harness.serving():
        parent, made = await harness.make(params)
        _, varied = await harness.make(
            dataclasses.replace(params, seed=40), GenerationKind.VARIATION, (parent, 1)
        )
        _, upscaled = await harness.make(
            dataclasses.replace(params, n=1), GenerationKind.UPSCALE, (parent, 2)
        )

    seeds = [7, 8, 40, 41, 8]  # the upscale is of image 2: seed 8
    for png, seed in zip([*made, *varied, *upscaled], seeds, strict=True):
        info, sampler = read_a1111(png)
        assert [p.value for p in sampler.prompts] == [params.prompt]
        assert [p.value for p in sampler.negative_prompts] == ["red"]
        assert sampler.parameters["seed"] == str(seed)
        assert sampler.parameters["steps"] == "4"
        assert sampler.name == "DDIM"
        assert sampler.parameters["scheduler"] == "DDIM"
        assert (sampler.model.name, sampler.model.hash) == ("tiny", _tiny_unet_hash())
        assert info.metadata["Engine"] == "diffusers"
    assert all("Denoising strength: 0.6" in (read_parameters(p) or "") for p in varied)
