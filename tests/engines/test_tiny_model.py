"""The bundled offline checkpoint ``core/engines/tiny`` (built by ``scripts/build_tiny.py``).

It must load with plain diffusers and no network, stay small enough to ship in the wheel,
be deterministic per seed, and let the prompt steer the picture: it was trained on
"COLOUR SHAPE on COLOUR background" pictures, so a red shape comes out redder than a blue one.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow

TINY = Path(str(importlib.resources.files("core") / "engines" / "tiny"))
MAX_BYTES = 10 * 1024 * 1024
STEPS = 20
SEEDS = list(range(8))


class _DropTorchvisionNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


@pytest.fixture(scope="module")
def pipe() -> Any:
    """The checkpoint loaded once, offline (sockets off while loading), with no noise."""
    logging.getLogger("transformers.utils.import_utils").addFilter(_DropTorchvisionNotice())
    import pytest_socket
    from diffusers import AutoPipelineForText2Image
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "accelerate is not installed" while loading
    pytest_socket.disable_socket(allow_unix_socket=True)
    try:
        pipeline = AutoPipelineForText2Image.from_pretrained(TINY)
    finally:
        pytest_socket.enable_socket()
        diffusers_logging.set_verbosity(verbosity)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _images(pipe: Any, prompt: str, seeds: list[int], size: int = 64, steps: int = STEPS) -> Any:
    """float images (n, size, size, 3) in [0, 1], one per seed, in one batched call."""
    return pipe(
        [prompt] * len(seeds),
        height=size,
        width=size,
        num_inference_steps=steps,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        output_type="np",
    ).images


def test_checkpoint_layout_and_size() -> None:
    files = [p for p in TINY.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    names = {p.relative_to(TINY).as_posix() for p in files}
    for component in ("unet", "vae", "text_encoder"):
        assert any(n.startswith(f"{component}/") and n.endswith(".safetensors") for n in names)
    assert {"model_index.json", "tokenizer/vocab.json", "tokenizer/merges.txt"} <= names
    scheduler = json.loads((TINY / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction"
    assert scheduler["steps_offset"] == 1


def test_loads_as_a_standard_pipeline(pipe: Any) -> None:
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.unet.config.addition_embed_type == "text"


def test_same_seed_same_pixels(pipe: Any) -> None:
    first = _images(pipe, "a red circle on a blue background", [7], steps=4)
    again = _images(pipe, "a red circle on a blue background", [7], steps=4)
    other = _images(pipe, "a red circle on a blue background", [8], steps=4)
    assert first.shape == (1, 64, 64, 3)
    assert (first == again).all()
    assert not (first == other).all()


def test_runs_at_128_px(pipe: Any) -> None:
    images = _images(pipe, "a yellow square on a green background", [0, 1], size=128, steps=2)
    assert images.shape == (2, 128, 128, 3)


def test_prompt_steers_the_colour(pipe: Any) -> None:
    """Same background, same seeds: a red shape gives more red minus blue than a blue shape.

    ``python scripts/build_tiny.py eval`` prints the same numbers. Measured on the shipped
    checkpoint (20 steps, seeds 0–7): mean R−B +0.13 for red and −0.13 for blue, red ahead on
    all 8 seeds by 0.13 or more; the bounds leave room for another CPU's rounding.
    """
    red = _images(pipe, "a red circle on a green background", SEEDS)
    blue = _images(pipe, "a blue circle on a green background", SEEDS)
    red_rb = (red[..., 0] - red[..., 2]).mean(axis=(1, 2))
    blue_rb = (blue[..., 0] - blue[..., 2]).mean(axis=(1, 2))
    numbers = f"R-B per seed: red {red_rb.round(3)}, blue {blue_rb.round(3)}"
    assert red_rb.mean() > blue_rb.mean() + 0.15, numbers
    assert (red_rb > blue_rb).all(), numbers
