"""Reference images (style codes) on the real diffusers engine with the bundled ``tiny``
checkpoint and its random-weight IP-Adapter (``scripts/tiny_looks.py``).

Tolerances measured on a 2-core CPU (64 px, 4 steps, guidance 5): the style at 0.8 moves the
mean pixel by ~50/255 from the unstyled image; scale 0 and an unstyled call after a styled one
are bit-identical to the base here, a repeat of the same seed and style is bit-identical, and a
batch of two equals each image alone. The asserts allow 2/255 where the CPU's rounding may
differ (FINDINGS: batching is not bit-exact on every CPU) and require over 10/255 for "changed".
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.brand.styles import TINY_ADAPTER
from core.engines.diffusers import DiffusersEngine
from core.engines.ip_adapter import StyleLoadError, loaded_adapter
from core.ports import GenerateJob, StyleJob, VaryJob

SAME = 2.0  # max |Δ| (0-255) for "the same picture" across batch sizes
CHANGED = 10.0  # mean |Δ| for "the style changed the picture"

TEAL = Image.new("RGB", (64, 64), (0, 166, 166))
STRIPES = Image.fromarray(
    np.where(((np.add.outer(np.arange(64), np.arange(64)) // 8) % 2 == 0)[..., None],
             np.array((255, 111, 89)), np.array((0, 166, 166))).astype("uint8")
)  # fmt: skip


def _style(scale: float, *images: Image.Image, code: str = "teal") -> StyleJob:
    return StyleJob(code, images or (TEAL,), scale, *TINY_ADAPTER)


def _job(style: StyleJob | None, seeds: tuple[int, ...] = (1,)) -> GenerateJob:
    return GenerateJob("j", "red circle on blue background", "", 64, 64, 4, 5.0, seeds, (), style)


def _px(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


@pytest.fixture(scope="module")
def engine() -> DiffusersEngine:
    return DiffusersEngine(device="cpu", local_files_only=True, max_models=1)


async def _one(engine: DiffusersEngine, style: StyleJob | None, seeds: tuple[int, ...] = (1,)):
    (result,) = await engine.generate("tiny", [_job(style, seeds)])
    return [_px(image) for image in result.images]


async def test_the_ip_adapter_is_really_loaded_and_moves_the_pixels(
    engine: DiffusersEngine,
) -> None:
    (base,) = await _one(engine, None)
    (styled,) = await _one(engine, _style(0.8))
    loaded = await engine.pipelines.get("tiny")
    kinds = {type(p).__name__ for p in loaded.pipe.unet.attn_processors.values()}
    assert "IPAdapterAttnProcessor2_0" in kinds  # diffusers' own layers, in the shared UNet
    assert loaded.pipe.image_encoder is not None
    assert loaded_adapter(loaded.pipe) == TINY_ADAPTER
    assert np.abs(styled - base).mean() > CHANGED

    (zero,) = await _one(engine, _style(0.0))
    (after,) = await _one(engine, None)  # adapter still loaded, run at scale 0
    assert np.abs(zero - base).max() <= SAME
    assert np.abs(after - base).max() <= SAME
    (again,) = await _one(engine, _style(0.8))
    assert np.abs(again - styled).max() <= SAME  # same seed + style: the same picture
    (half,) = await _one(engine, _style(0.4))
    assert np.abs(half - styled).mean() > CHANGED / 2  # the weight matters

    other_refs = await _one(engine, _style(0.8, STRIPES, code="stripes"))
    assert np.abs(other_refs[0] - styled).mean() > CHANGED / 2  # the references matter
    pair = await _one(engine, _style(0.8), seeds=(1, 2))
    assert np.abs(pair[0] - styled).max() <= SAME  # a batch gives each seed's own picture


async def test_variations_keep_the_style_and_batches_never_mix_looks(
    engine: DiffusersEngine,
) -> None:
    source = Image.new("RGB", (64, 64), (200, 30, 30))

    def vary(style: StyleJob | None) -> VaryJob:
        return VaryJob("v", source, "red circle", "", 4, 5.0, 0.75, (3,), (), style)

    plain = _px((await engine.vary("tiny", vary(None))).images[0])
    styled = _px((await engine.vary("tiny", vary(_style(1.0)))).images[0])
    assert np.abs(styled - plain).mean() > CHANGED / 2
    with pytest.raises(ValueError, match="share their style"):
        await engine.generate(
            "tiny", [_job(_style(0.5)), GenerateJob("k", "x", "", 64, 64, 4, 5.0, (2,))]
        )


async def test_bad_adapters_and_empty_styles_are_named(engine: DiffusersEngine, tmp_path) -> None:
    missing = StyleJob("gone", (TEAL,), 0.5, str(tmp_path), "nowhere", "ip.safetensors")
    with pytest.raises(
        StyleLoadError, match=r"could not load IP-Adapter .*nowhere/ip\.safetensors"
    ):
        await engine.generate("tiny", [_job(missing)])
    with pytest.raises(StyleLoadError, match="has no reference images"):
        await engine.generate("tiny", [_job(StyleJob("none", (), 0.5, *TINY_ADAPTER))])
