"""A preset's logo through the real worker on PostgreSQL: a logo spoiled after the preset was
loaded fails the generation once, with a preset error, instead of burning every attempt."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from core.brand.preset_files import load_preset
from core.brand.presets import Preset
from core.db import Database
from core.db.models import Generation as GenerationRow
from core.db.uow import sql_uow_factory
from core.domain import Actor, GenerationStatus, Platform, ReplyTarget
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.jobs.worker import Worker, WorkerConfig
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore

pytestmark = pytest.mark.integration

PRESET = """\
name: logo-brand
brand: Logo
prompt: "{prompt}, logo style"
aspect_ratios: {"1:1": [64, 64]}
default_aspect: "1:1"
engine: {kind: fake, model: fake-1, steps: 4, guidance: 5.0}
watermark: {logo: logos/brand.png, position: top-left, scale: 0.5}
limits: {images_per_user_per_day: 100, queued_per_user: 10}
"""
HERE = ReplyTarget(Platform.SLACK, "T1", "C1")
ANN = Actor(Platform.SLACK, "T1", "ann", "ann")


@pytest.fixture
def preset(tmp_path: Path) -> Preset:
    (tmp_path / "logos").mkdir()
    Image.new("RGBA", (40, 20), (255, 0, 0, 255)).save(tmp_path / "logos" / "brand.png")
    (tmp_path / "logo-brand.yaml").write_text(PRESET)
    return load_preset(tmp_path / "logo-brand.yaml")


@contextlib.asynccontextmanager
async def running(db: Database, tmp_path: Path, preset: Preset) -> AsyncIterator[Service]:
    engines = EngineRegistry()
    engines.put("fake", FakeEngine())
    config = WorkerConfig(max_batch=4, batch_window_s=0.05, retry_delay_s=0, max_attempts=3)
    store = LocalImageStore(tmp_path / "images")
    worker = Worker(db, engines, store, {preset.name: preset}, config)
    service = Service(sql_uow_factory(db), {preset.name: preset}, ServiceConfig(preset.name))
    task = asyncio.create_task(worker.run())
    try:
        yield service
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)


async def finished(db: Database, gid: uuid.UUID, within: float = 20.0) -> GenerationRow:
    deadline = time.monotonic() + within
    while True:
        async with db.sessions() as session:
            row = await session.scalar(select(GenerationRow).where(GenerationRow.id == gid))
        if row is not None and GenerationStatus(row.status).finished:
            return row
        assert time.monotonic() < deadline, "the generation did not finish in time"
        await asyncio.sleep(0.05)


async def test_a_good_logo_is_used(db: Database, tmp_path: Path, preset: Preset) -> None:
    async with running(db, tmp_path, preset) as service:
        (gid,) = (await service.imagine("a cat", ANN, HERE)).generation_ids
        row = await finished(db, gid)
    assert row.status == GenerationStatus.DONE


async def test_a_logo_spoiled_after_load_fails_once_without_retries(
    db: Database, tmp_path: Path, preset: Preset
) -> None:
    (tmp_path / "logos" / "brand.png").write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    async with running(db, tmp_path, preset) as service:
        (gid,) = (await service.imagine("a cat", ANN, HERE)).generation_ids
        row = await finished(db, gid)
    assert row.status == GenerationStatus.FAILED
    assert row.attempts == 1  # a preset error is not retried: it would fail the same way
