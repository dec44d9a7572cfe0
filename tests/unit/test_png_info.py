"""The worker's originals, read by an independent A1111-format reader (sd-parsers, from PyPI).

The worker runs its real generate → finish → store path on the fake engine and a local image
store in a temporary folder, without a database (``tests.worker_harness``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from core.domain import GenerationKind, Params
from core.engines.fake import FAKE_SAMPLING, FakeEngine
from core.imaging.metadata import parameter_settings, read_parameters
from core.ports import GenerateJob, JobResult, Sampling, VaryJob
from tests.worker_harness import Harness, read_a1111

sd_parsers = pytest.importorskip("sd_parsers")

PARAMS = Params(
    prompt="a red circle, test style",
    negative_prompt="blurry, text",
    width=64,
    height=64,
    steps=6,
    guidance=5.0,
    seed=11,
    n=3,
    engine="fake",
    model="fake-1",
    preset="test-brand",
    preset_version="v1a2b3",
)


class Undisclosed(FakeEngine):
    """An engine that says nothing about its sampler (as the OpenAI images API doesn't)."""

    async def generate(self, model: str, jobs: Sequence[GenerateJob], **kw: Any) -> list[JobResult]:
        return [
            dataclasses.replace(r, sampling=None) for r in await super().generate(model, jobs, **kw)
        ]

    async def vary(self, model: str, job: VaryJob, **kw: Any) -> JobResult:
        return dataclasses.replace(await super().vary(model, job, **kw), sampling=None)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Harness(tmp_path).serving() as h:
        yield h


def check(png: bytes, *, seed: int, sampler: str, steps: int = 6, model: str = "fake-1") -> Any:
    info, found = read_a1111(png)
    assert [p.value for p in found.prompts] == ["a red circle, test style"]
    assert [p.value for p in found.negative_prompts] == ["blurry, text"]
    assert found.parameters["seed"] == str(seed)
    assert found.parameters["steps"] == str(steps)
    assert found.name == sampler
    assert found.model is not None
    assert found.model.name == model
    return info, found


async def test_an_original_is_read_with_prompt_seed_steps_sampler_and_model(
    harness: Harness,
) -> None:
    gid, pngs = await harness.make(PARAMS)

    assert len(pngs) == 3  # two engine calls (max_batch 2): the pieces keep the sampling
    for index, png in enumerate(pngs, start=1):
        info, found = check(png, seed=PARAMS.seed + index - 1, sampler=FAKE_SAMPLING.sampler)
        assert found.parameters["cfg_scale"] == "5.0"
        assert info.metadata["Generation id"] == str(gid)
        assert info.metadata["Image index"] == str(index)
        assert info.metadata["Engine"] == "fake"


async def test_the_engines_report_is_what_the_png_says(harness: Harness) -> None:
    reported = Sampling("DPM++ 2M", "Karras", "1a2b3c4d5e")
    harness.engines.put("fake", FakeEngine(sampling=reported))

    _, [png, *_] = await harness.make(PARAMS)

    _, found = check(png, seed=11, sampler="DPM++ 2M")
    assert found.parameters["scheduler"] == "Karras"
    assert found.model is not None
    assert found.model.hash == "1a2b3c4d5e"
    settings = parameter_settings(read_parameters(png) or "")
    assert list(settings)[:8] == [  # A1111's keys first, in A1111's order
        "Steps",
        "Sampler",
        "Schedule type",
        "CFG scale",
        "Seed",
        "Size",
        "Model hash",
        "Model",
    ]


async def test_variations_and_upscales_are_read_too(harness: Harness) -> None:
    reported = Sampling("Euler a", "Simple", "0123456789")
    harness.engines.put("fake", FakeEngine(sampling=reported))
    parent, _ = await harness.make(PARAMS)

    variation = dataclasses.replace(PARAMS, seed=500, n=2)
    _, varied = await harness.make(variation, GenerationKind.VARIATION, (parent, 2))
    # an upscale keeps its parent's params (n=1); its image is the source's: seed 11 + 2
    _, [upscaled] = await harness.make(
        dataclasses.replace(PARAMS, n=1), GenerationKind.UPSCALE, (parent, 3)
    )

    for index, png in enumerate(varied):
        info, found = check(png, seed=500 + index, sampler="Euler a")
        assert info.metadata["Denoising strength"] == "0.6"
        assert found.parameters["scheduler"] == "Simple"
    info, found = check(upscaled, seed=13, sampler="Euler a")  # made by the source's sampler
    assert found.parameters["scheduler"] == "Simple"
    assert found.model is not None
    assert found.model.hash == "0123456789"
    assert info.metadata["Resampled"] == "lanczos x2"
    assert info.metadata["Size"] == "128x128"


async def test_an_engine_that_discloses_no_sampler_is_named_as_the_sampler(
    harness: Harness,
) -> None:
    harness.engines.put("openai", Undisclosed())
    params = dataclasses.replace(PARAMS, engine="openai", model="gpt-image-2.5-sunburst", n=1)

    parent, [png] = await harness.make(params)
    _, [upscaled] = await harness.make(params, GenerationKind.UPSCALE, (parent, 1))

    for made in (png, upscaled):
        _, found = check(made, seed=11, sampler="openai", model="gpt-image-2.5-sunburst")
        assert found.model is not None
        assert found.model.hash is None
        assert "scheduler" not in found.parameters
