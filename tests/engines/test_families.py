"""Every major model family through the diffusers engine, offline (issue 15).

Tiny random-weight pipelines of each family (``tests.engines.tiny_families``, built from configs
the way diffusers' own tests build them) are saved with safetensors to a session folder and
loaded by the engine with the same ``from_pretrained`` path as a real model. Each family runs
the engine contract it can promise. Test ids name the family (``sd1``, ``sd2``, ``sdxl``,
``sd3``, ``flux``, ``turbo``), so ``pytest -k sdxl`` runs one; a family is built only when one
of its tests runs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

pytest.importorskip("diffusers")
pytest.importorskip("torch")

from core.brand.families import ModelFamily, detect_family, family_of
from core.brand.grammar import parse
from core.brand.preset_files import load_preset, model_family
from core.brand.presets import apply_preset
from core.db.mapping import params_from_json, params_to_json
from core.engines.diffusers import DiffusersEngine
from core.engines.families import cached_models
from core.engines.ip_adapter import StyleLoadError
from core.engines.loras import LoraLoadError
from core.errors import PresetError
from core.ports import Engine, GenerateJob, StyleJob, VaryJob
from tests.engines.contract import EngineContract, max_diff
from tests.engines.tiny_families import FAMILIES, build, build_lora, fake_hub_cache

pytestmark = [
    pytest.mark.slow,
    # diffusers' Euler schedulers hand numpy a tensor (numpy 2 notes it); not ours to fix
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]

# How each family's folder is recognised (core.brand.families).
EXPECTED = {
    "sd1": ModelFamily("sd1", "StableDiffusionPipeline"),
    "sd2": ModelFamily("sd2", "StableDiffusionPipeline"),
    "sdxl": ModelFamily("sdxl", "StableDiffusionXLPipeline"),
    "sd3": ModelFamily("sd3", "StableDiffusion3Pipeline"),
    "flux": ModelFamily("flux", "FluxPipeline"),
    "turbo": ModelFamily("sd2", "StableDiffusionPipeline", distilled=True),
}


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_family("sdxl")`` → the folder of that family's tiny pipeline, built once."""
    root = tmp_path_factory.mktemp("families")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build(family, root)
        return built[family]

    return get


@pytest.fixture(scope="module")
def family_engine() -> DiffusersEngine:
    """One engine for every family: each model loads once."""
    return DiffusersEngine(device="cpu", max_models=len(FAMILIES), local_files_only=True)


class FamilyContract(EngineContract):
    family: ClassVar[str]
    steps = 3
    # Measured on this 2-core CPU, 3 seed pairs per family, a seed alone vs in a batch of 4: the
    # largest uint8 difference was 0 for sd1, sd2 and flux, 1 for sdxl, sd3 and turbo.
    batch_tolerance = 1

    @pytest.fixture
    def engine(self, family_engine: DiffusersEngine) -> Engine:
        return family_engine

    @pytest.fixture
    def model(self, tiny_family: Callable[[str], Path]) -> str:
        return str(tiny_family(self.family))


class TestSd1(FamilyContract):
    family = "sd1"


class TestSd2(FamilyContract):
    family = "sd2"


class TestSdxl(FamilyContract):
    family = "sdxl"


class TestSd3(FamilyContract):
    family = "sd3"


class TestFlux(FamilyContract):
    family = "flux"
    supports_negative_prompt = False
    guidance = 3.5  # embedded in the transformer, FLUX.1-dev's default


class TestTurbo(FamilyContract):
    """SD-Turbo's layout: runs without classifier-free guidance."""

    family = "turbo"
    guidance = 0.0


# --- what each family is, and what it is not asked for -------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_family_is_recognised(tiny_family: Callable[[str], Path], family: str) -> None:
    folder = tiny_family(family)
    assert detect_family(folder) == EXPECTED[family]
    assert family_of(str(folder)) == EXPECTED[family]


@pytest.mark.parametrize("family", ["sdxl", "flux"])
async def test_the_loaded_pipeline_is_the_family_s_own(
    family_engine: DiffusersEngine, tiny_family: Callable[[str], Path], family: str
) -> None:
    """SDXL's two encoders and time ids, FLUX's T5 and embedded guidance: the engine ran the
    family's own pipeline class (no silent fallback to another layout)."""
    model = str(tiny_family(family))
    job = GenerateJob("a", "red circle", "", 64, 64, 2, 3.5, (1,))
    await family_engine.generate(model, [job])
    pipe = family_engine.pipelines._models[model].pipe
    assert type(pipe).__name__ == EXPECTED[family].pipeline


async def test_flux_guidance_is_embedded(
    family_engine: DiffusersEngine, tiny_family: Callable[[str], Path]
) -> None:
    """FLUX's guidance goes into the transformer (no negative branch): it changes the image."""
    model = str(tiny_family("flux"))
    low, high = (GenerateJob("a", "red circle", "", 64, 64, 2, g, (1,)) for g in (1.0, 7.0))
    (a,) = await family_engine.generate(model, [low])
    (b,) = await family_engine.generate(model, [high])
    assert max_diff(a.images[0], b.images[0]) > 0


async def test_flux_refuses_a_negative_prompt_at_the_engine(
    family_engine: DiffusersEngine, tiny_family: Callable[[str], Path]
) -> None:
    """A model that was not on the machine when its preset was validated is checked here."""
    job = GenerateJob("a", "red circle", "blurry", 64, 64, 2, 3.5, (1,))
    with pytest.raises(ValueError, match="takes no negative prompt"):
        await family_engine.generate(str(tiny_family("flux")), [job])


# --- preset validation knows the family ---------------------------------------------------------

PRESET = """\
name: fam-test
brand: Test
prompt: "{{prompt}}, test"
negative_prompt: "{negative}"
aspect_ratios: {{"1:1": [64, 64]}}
default_aspect: "1:1"
engine: {{kind: diffusers, model: "{model}", steps: 2, guidance: {guidance}}}
"""


def _preset(tmp_path: Path, model: str, negative: str = "", guidance: float = 5.0) -> Path:
    path = tmp_path / "preset.yaml"
    path.write_text(PRESET.format(model=model, negative=negative, guidance=guidance))
    return path


def _refusal(path: Path) -> str:
    with pytest.raises(PresetError) as caught:
        load_preset(path)
    return str(caught.value)


def test_preset_negative_prompt_on_flux_refused(
    tiny_family: Callable[[str], Path], tmp_path: Path
) -> None:
    model = str(tiny_family("flux"))
    message = _refusal(_preset(tmp_path, model, negative="blurry", guidance=3.5))
    assert f"{tmp_path / 'preset.yaml'}:4: negative_prompt: " in message
    assert "is a flux model and takes no negative prompt" in message
    # the same preset without the negative prompt is fine, and --no is refused before queueing
    preset = load_preset(_preset(tmp_path, model, guidance=3.5))
    assert model_family(preset) == "flux"
    request = parse("a red circle --no blur")[0]
    with pytest.raises(PresetError, match="is a flux model and takes no negative prompt"):
        apply_preset(request, preset)
    assert apply_preset(parse("a red circle")[0], preset).negative_prompt == ""


def test_preset_guidance_on_turbo_refused(
    tiny_family: Callable[[str], Path], tmp_path: Path
) -> None:
    model = str(tiny_family("turbo"))
    message = _refusal(_preset(tmp_path, model, negative="text", guidance=5.0))
    assert f"{tmp_path / 'preset.yaml'}:7: engine.guidance: " in message
    assert "set engine.guidance: 0" in message
    assert f"{tmp_path / 'preset.yaml'}:4: negative_prompt: " in message
    assert "runs without guidance" in message
    assert model_family(load_preset(_preset(tmp_path, model, guidance=0.0))) == "sd2, distilled"


@pytest.mark.parametrize("family", ["sd1", "sdxl", "sd3"])
def test_preset_with_negative_and_guidance_accepted(
    tiny_family: Callable[[str], Path], tmp_path: Path, family: str
) -> None:
    preset = load_preset(_preset(tmp_path, str(tiny_family(family)), negative="blurry"))
    assert model_family(preset) == family


def test_hub_cache_models_have_their_family(
    tiny_family: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``onbrand doctor``'s list, and preset validation of a hub id, from the local cache."""
    cache = fake_hub_cache(
        tmp_path,
        {
            "stabilityai/sdxl-turbo": tiny_family("sdxl"),
            "black-forest-labs/FLUX.1-dev": tiny_family("flux"),
            "openai/clip-vit-large-patch14": None,
        },
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    found = {m.repo_id: m.label for m in cached_models()}
    assert found == {
        "black-forest-labs/FLUX.1-dev": "flux",
        "openai/clip-vit-large-patch14": "not a diffusers pipeline",
        "stabilityai/sdxl-turbo": "sdxl, distilled",
    }
    message = _refusal(_preset(tmp_path, "stabilityai/sdxl-turbo", guidance=7.0))
    assert "'stabilityai/sdxl-turbo' is a sdxl, distilled model" in message
    # a hub id that is not in the cache: valid, its family is checked when the engine loads it
    preset = load_preset(_preset(tmp_path, "someone/not-downloaded", negative="blurry"))
    assert model_family(preset) == "unknown family, checked at load"


def test_no_cache_folder_no_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "absent"))
    assert cached_models() == []


# --- LoRAs: loaded once per base model, activated per call --------------------------------------


@pytest.fixture(scope="session")
def tiny_lora(
    tiny_family: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, int], Path]:
    """``tiny_lora("sdxl", seed)`` → a random LoRA file for that family's tiny pipeline."""
    root = tmp_path_factory.mktemp("loras")
    built: dict[tuple[str, int], Path] = {}

    def get(family: str, seed: int = 0) -> Path:
        if (family, seed) not in built:
            out = root / f"{family}-{seed}.safetensors"
            built[family, seed] = build_lora(tiny_family(family), out, seed=seed)
        return built[family, seed]

    return get


def _lora_job(family: str, loras: tuple[tuple[str, float], ...] = ()) -> GenerateJob:
    guidance = 0.0 if family == "turbo" else 5.0
    return GenerateJob("a", "red circle", "", 64, 64, 3, guidance, (1,), loras)


@pytest.mark.parametrize("family", FAMILIES)
async def test_lora_weight_changes_pixels_and_leaves_the_base_model(
    family_engine: DiffusersEngine,
    tiny_family: Callable[[str], Path],
    tiny_lora: Callable[[str, int], Path],
    family: str,
) -> None:
    """Two weights give two pictures; weight 0 and a later call without the LoRA give the base
    model's pixels exactly (measured: identical bits on every family)."""
    model, lora = str(tiny_family(family)), str(tiny_lora(family, 0))

    async def image(*loras: tuple[str, float]) -> Image.Image:
        (result,) = await family_engine.generate(model, [_lora_job(family, loras)])
        return result.images[0]

    base = await image()
    full, half, zero = await image((lora, 1.0)), await image((lora, 0.5)), await image((lora, 0.0))
    assert max_diff(base, full) > 0
    assert max_diff(half, full) > 0
    assert max_diff(zero, base) == 0
    assert max_diff(await image(), base) == 0
    other = str(tiny_lora(family, 1))
    both = await image((lora, 0.5), (other, 0.5))
    assert max_diff(both, half) > 0
    assert max_diff(await image((lora, 0.5)), half) == 0  # the second LoRA is off again


async def test_lora_in_variations(
    family_engine: DiffusersEngine,
    tiny_family: Callable[[str], Path],
    tiny_lora: Callable[[str, int], Path],
) -> None:
    model, lora = str(tiny_family("sdxl")), str(tiny_lora("sdxl", 0))
    source = Image.new("RGB", (64, 64), (200, 40, 40))

    def job(*loras: tuple[str, float]) -> VaryJob:
        return VaryJob("v", source, "red circle", "", 4, 5.0, 0.75, (3,), loras)

    plain = await family_engine.vary(model, job())
    styled = await family_engine.vary(model, job((lora, 1.0)))
    assert max_diff(plain.images[0], styled.images[0]) > 0
    assert max_diff((await family_engine.vary(model, job())).images[0], plain.images[0]) == 0


async def test_a_batch_never_mixes_lora_sets(
    family_engine: DiffusersEngine, tiny_family: Callable[[str], Path]
) -> None:
    a = _lora_job("sd1", (("x.safetensors", 1.0),))
    b = GenerateJob("b", "red circle", "", 64, 64, 3, 5.0, (2,))
    with pytest.raises(ValueError, match="share their LoRAs"):
        await family_engine.generate(str(tiny_family("sd1")), [a, b])


@pytest.mark.parametrize(("family", "lora_family"), [("sdxl", "sd1"), ("flux", "sd1")])
async def test_a_lora_of_another_family_is_refused_and_leaves_nothing(
    family_engine: DiffusersEngine,
    tiny_family: Callable[[str], Path],
    tiny_lora: Callable[[str, int], Path],
    family: str,
    lora_family: str,
) -> None:
    model = str(tiny_family(family))
    (before,) = await family_engine.generate(model, [_lora_job(family)])
    wrong = _lora_job(family, ((str(tiny_lora(lora_family, 0)), 1.0),))
    with pytest.raises(LoraLoadError, match="another model family"):
        await family_engine.generate(model, [wrong])
    (after,) = await family_engine.generate(model, [_lora_job(family)])
    assert max_diff(before.images[0], after.images[0]) == 0


async def test_a_missing_lora_is_named(
    family_engine: DiffusersEngine, tiny_family: Callable[[str], Path], tmp_path: Path
) -> None:
    missing = str(tmp_path / "brand-look.safetensors")
    with pytest.raises(LoraLoadError, match=r"brand-look\.safetensors' not found"):
        await family_engine.generate(str(tiny_family("sd1")), [_lora_job("sd1", ((missing, 1.0),))])


LORA_PRESET = """\
name: fam-lora
brand: Test
prompt: "{{prompt}}, test"
aspect_ratios: {{"1:1": [64, 64]}}
default_aspect: "1:1"
engine:
  kind: {kind}
  model: "{model}"
  steps: 3
  guidance: 5.0
  loras:
    - {{model: {lora}, weight: 0.8}}
"""


def _lora_preset(folder: Path, model: str, lora: str, kind: str = "diffusers") -> Path:
    path = folder / "lora.yaml"
    path.write_text(LORA_PRESET.format(kind=kind, model=model, lora=lora))
    return path


async def test_a_preset_s_lora_reaches_the_engine(
    family_engine: DiffusersEngine,
    tiny_family: Callable[[str], Path],
    tiny_lora: Callable[[str, int], Path],
    tmp_path: Path,
) -> None:
    """A LoRA next to the preset file, named relative to it: validated, resolved, applied."""
    shutil.copyfile(tiny_lora("sd1", 0), tmp_path / "brand-look.safetensors")
    model = str(tiny_family("sd1"))
    preset = load_preset(_lora_preset(tmp_path, model, "brand-look.safetensors"))
    params = apply_preset(parse("red circle --seed 4")[0], preset)
    lora = str((tmp_path / "brand-look.safetensors").resolve())
    assert params.loras == ((lora, 0.8),)
    assert params_from_json(params_to_json(params)) == params
    # the LoRA's bytes are part of the preset's version
    same = load_preset(_lora_preset(tmp_path, model, "brand-look.safetensors"))
    assert same.version == preset.version
    shutil.copyfile(tiny_lora("sd1", 1), tmp_path / "brand-look.safetensors")
    changed = load_preset(_lora_preset(tmp_path, model, "brand-look.safetensors"))
    assert changed.version != preset.version
    assert apply_preset(parse("red circle")[0], changed).preset_version == changed.version
    shutil.copyfile(tiny_lora("sd1", 0), tmp_path / "brand-look.safetensors")

    def job(loras: tuple[tuple[str, float], ...]) -> GenerateJob:
        return GenerateJob("a", params.prompt, "", 64, 64, 3, 5.0, params.seeds()[:1], loras)

    (styled,) = await family_engine.generate(model, [job(params.loras)])
    (plain,) = await family_engine.generate(model, [job(())])
    assert max_diff(styled.images[0], plain.images[0]) > 0


@pytest.mark.parametrize(
    ("family", "lora_family", "why"),
    [
        ("sdxl", "sd1", "cross-attention takes 32-wide text features and the model's 64"),
        ("sd1", "sdxl", "cross-attention takes 64-wide text features and the model's 32"),
        ("flux", "sd1", "it adapts a UNet"),
        ("sd1", "flux", "it adapts a transformer"),
        ("sd3", "flux", "it is a flux LoRA, and the model is sd3"),
    ],
    ids=[
        "sdxl-with-sd1-lora",
        "sd1-with-sdxl-lora",
        "flux-with-sd1-lora",
        "sd1-with-flux-lora",
        "sd3-with-flux-lora",
    ],
)
def test_a_preset_lora_of_another_family_is_refused(
    tiny_family: Callable[[str], Path],
    tiny_lora: Callable[[str, int], Path],
    tmp_path: Path,
    family: str,
    lora_family: str,
    why: str,
) -> None:
    lora = tiny_lora(lora_family, 0)
    message = _refusal(_lora_preset(tmp_path, str(tiny_family(family)), str(lora)))
    assert f"lora.yaml:12: engine.loras[0].model: LoRA {lora} does not fit" in message
    assert why in message


def test_a_preset_lora_that_is_missing_or_not_safetensors_is_refused(
    tiny_family: Callable[[str], Path], tmp_path: Path
) -> None:
    model = str(tiny_family("sd1"))
    message = _refusal(_lora_preset(tmp_path, model, "looks/brand.safetensors"))
    assert "lora.yaml:12: engine.loras[0].model: LoRA file " in message
    assert "brand.safetensors not found" in message
    (tmp_path / "notes.safetensors").write_text("not weights")
    message = _refusal(_lora_preset(tmp_path, model, "notes.safetensors"))
    assert "notes.safetensors is not a safetensors file" in message
    message = _refusal(_lora_preset(tmp_path, "gpt-image-2.5-sunburst", "x.safetensors", "openai"))
    assert "only the diffusers engine takes LoRAs, not openai" in message


# --- reference images (IP-Adapter) where the family has them -------------------------------


async def test_ip_adapter_on_sdxl(
    tiny_family: Callable[[str], Path], family_engine: DiffusersEngine, tmp_path: Path
) -> None:
    """SDXL takes a style code's references through diffusers' IP-Adapter loader: a random
    adapter (scripts/tiny_looks.py) for the tiny SDXL's UNet moves the pixels, and scale 0
    gives the base model's (measured: identical here; 2/255 allowed)."""
    from diffusers import UNet2DConditionModel

    from scripts.tiny_looks import save_ip_adapter

    model = str(tiny_family("sdxl"))
    save_ip_adapter(UNet2DConditionModel.from_pretrained(model, subfolder="unet"), tmp_path)
    reference = Image.new("RGB", (64, 64), (0, 166, 166))

    def style(scale: float) -> StyleJob:
        return StyleJob(
            "sx", (reference,), scale, str(tmp_path), "ip_adapter", "ip-adapter_tiny.safetensors"
        )

    async def image(chosen: StyleJob | None) -> Image.Image:
        job = GenerateJob("a", "red circle", "", 64, 64, 3, 5.0, (1,), (), chosen)
        (result,) = await family_engine.generate(model, [job])
        return result.images[0]

    base, styled, zero = await image(None), await image(style(1.0)), await image(style(0.0))
    assert max_diff(styled, base) > 10
    assert max_diff(zero, base) <= 2
    assert max_diff(await image(None), base) <= 2  # the adapter stays loaded, at scale 0


@pytest.mark.parametrize("family", ["sd3", "flux"])
async def test_ip_adapter_refused_where_onbrand_has_none(
    tiny_family: Callable[[str], Path], family_engine: DiffusersEngine, family: str
) -> None:
    style = StyleJob("sx", (Image.new("RGB", (8, 8)),), 0.5, "tiny", "ip_adapter", "x.safetensors")
    job = GenerateJob("a", "red circle", "", 64, 64, 2, 0.0, (1,), (), style)
    with pytest.raises(StyleLoadError, match="takes no IP-Adapter here"):
        await family_engine.generate(str(tiny_family(family)), [job])
