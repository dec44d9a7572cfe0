"""Originals made by the worker on real PostgreSQL (imagine, then a variation and an upscale of
one of its images, through the service's buttons) read by sd-parsers, an A1111-format reader."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from core.brand.preset_files import parse_preset
from core.db import Database
from core.db.models import Image as ImageRow
from core.db.uow import sql_uow_factory
from core.domain import Action, ActionKind, Actor, Platform, ReplyTarget
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.imaging.metadata import read_parameters
from core.jobs.worker import Worker, WorkerConfig
from core.ports import Sampling
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore
from tests.worker_harness import read_a1111

pytestmark = pytest.mark.integration
pytest.importorskip("sd_parsers")

PRESET = parse_preset(
    """
name: png-brand
brand: Test
prompt: "{prompt}, test style"
negative_prompt: "blurry"
aspect_ratios: {"1:1": [64, 64]}
default_aspect: "1:1"
engine: {kind: fake, model: fake-1, steps: 10, guidance: 5.0}
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
"""
)
HERE = ReplyTarget(Platform.SLACK, "T1", "C9")
ANN = Actor(Platform.SLACK, "T1", "ann", "ann")
REPORTED = Sampling("DPM++ 2M", "Karras", "1a2b3c4d5e")


async def originals(db: Database, store: LocalImageStore, gid: uuid.UUID) -> list[bytes]:
    async with db.sessions() as session:
        keys = (
            await session.scalars(
                select(ImageRow.storage_key)
                .where(ImageRow.generation_id == gid)
                .order_by(ImageRow.index)
            )
        ).all()
    return [await store.get(key) for key in keys]


async def test_imagine_variation_and_upscale_originals_read_as_a1111(
    db: Database, tmp_path: Path
) -> None:
    service = Service(sql_uow_factory(db), {PRESET.name: PRESET}, ServiceConfig(PRESET.name))
    store = LocalImageStore(tmp_path / "images")
    engines = EngineRegistry()
    engines.put("fake", FakeEngine(sampling=REPORTED))
    worker = Worker(db, engines, store, {PRESET.name: PRESET}, WorkerConfig(batch_window_s=0.01))

    (parent,) = (await service.imagine("a red circle --seed 100", ANN, HERE)).generation_ids
    await asyncio.wait_for(worker.run(drain=True), timeout=30)
    (varied,) = (
        await service.act(Action(ActionKind.VARY, parent, 2).custom_id, ANN)
    ).generation_ids
    (big,) = (
        await service.act(Action(ActionKind.UPSCALE, parent, 3).custom_id, ANN)
    ).generation_ids
    await asyncio.wait_for(worker.run(drain=True), timeout=30)

    made = await originals(db, store, parent)
    assert len(made) == 4
    seeds = [100, 101, 102, 103]
    variations = await originals(db, store, varied)
    (upscaled,) = await originals(db, store, big)
    cases = [*zip(made, seeds, strict=True), (upscaled, 102)]  # the upscale is of image 3
    for png, seed in cases:
        info, sampler = read_a1111(png)
        assert [p.value for p in sampler.prompts] == ["a red circle, test style"]
        assert [p.value for p in sampler.negative_prompts] == ["blurry"]
        assert sampler.parameters["seed"] == str(seed)
        assert sampler.parameters["steps"] == "10"
        assert (sampler.name, sampler.parameters["scheduler"]) == ("DPM++ 2M", "Karras")
        assert (sampler.model.name, sampler.model.hash) == ("fake-1", "1a2b3c4d5e")
    assert "Resampled: lanczos x2" in (read_parameters(upscaled) or "")
    for png in variations:
        info, sampler = read_a1111(png)
        assert sampler.name == "DPM++ 2M"
        assert [p.value for p in sampler.prompts] == ["a red circle, test style"]
        assert info.metadata["Denoising strength"] == "0.6"
        assert info.metadata["Generation id"] == str(varied)
