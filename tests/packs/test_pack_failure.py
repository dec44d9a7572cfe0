"""A pack the worker can't make tells the requester why: a placement whose byte limit no
encoding meets fails the job with that placement's own message, not a bare reference."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from core.brand.preset_files import load_preset
from core.db import Database
from core.db.packs import SqlPacks
from core.db.uow import sql_uow_factory
from core.db.uploads import SqlUploads
from core.domain import Actor, GenerationStatus, Platform, ReplyTarget
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.jobs.worker import Worker, WorkerConfig
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore

pytestmark = pytest.mark.integration

PRESET = """\
name: tight
brand: Tight
prompt: "{prompt}"
aspect_ratios: {"1:1": [64, 64]}
default_aspect: "1:1"
engine: {kind: fake, model: fake, steps: 2, guidance: 5.0}
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
"""
PLACEMENTS = """\
placements:
  billboard:
    size: [2048, 2048]
    format: png
    max_bytes: 10000
"""
ANN = Actor(Platform.CLI, "local", "ann", "ann")
HERE = ReplyTarget(Platform.CLI, "local", "terminal")


async def test_a_pack_over_its_byte_limit_fails_with_the_placement_s_message(
    db: Database, tmp_path: Path, provenance: Any
) -> None:
    (tmp_path / "tight.yaml").write_text(PRESET)
    (tmp_path / "placements").mkdir()
    (tmp_path / "placements" / "tight.yaml").write_text(PLACEMENTS)
    preset = load_preset(tmp_path / "tight.yaml")
    store = LocalImageStore(tmp_path / "images")
    service = Service(
        sql_uow_factory(db),
        {preset.name: preset},
        ServiceConfig(preset.name),
        store=store,
        uploads=SqlUploads(db),
        packs=SqlPacks(db),
    )
    engines = EngineRegistry()
    engines.put("fake", FakeEngine())
    worker = Worker(db, engines, store, service.presets, WorkerConfig(batch_window_s=0))
    gid = (await service.imagine("a kettle --n 1 --seed 2", ANN, HERE)).generation_ids[0]
    await asyncio.wait_for(worker.run(drain=True), timeout=60)

    ticket = await service.queue_pack(ANN, HERE, gid, 1)
    await asyncio.wait_for(worker.run(drain=True), timeout=60)
    pack = await service.generation(ticket.generation_ids[0])
    assert pack.status is GenerationStatus.FAILED
    assert pack.error is not None
    assert "billboard" in pack.error  # the placement, in words the requester can act on
    assert "reference" not in pack.error
