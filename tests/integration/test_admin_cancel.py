"""An admin cancels someone else's job while it runs (issue 12, "not yet tried")."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from core.brand.preset_files import parse_preset
from core.db import Database
from core.db.uow import sql_uow_factory
from core.delivery.sweep import Delivery
from core.domain import Action, ActionKind, Actor, GenerationStatus, Platform, ReplyTarget, Role
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.jobs.worker import Worker, WorkerConfig
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore
from core.testing.chat import RecordingSink

pytestmark = pytest.mark.integration

STEPS, STEP_S = 40, 0.1  # a job of 4 s
PRESET = f"""
name: cancel-test
brand: Cancel
prompt: "{{prompt}}"
aspect_ratios: {{"1:1": [64, 64]}}
default_aspect: "1:1"
engine: {{kind: fake, model: fake-1, steps: {STEPS}, guidance: 5.0}}
limits: {{images_per_user_per_day: 1000, queued_per_user: 50}}
"""
HERE = ReplyTarget(Platform.SLACK, "T1", "C1")
ANN = Actor(Platform.SLACK, "T1", "U1", "ann")
BOSS = Actor(Platform.SLACK, "T1", "U9", "Boss", frozenset({Role.ADMIN}))


async def test_an_admin_stops_a_running_job_and_only_the_time_used_is_charged(
    db: Database, tmp_path: Path
) -> None:
    preset = parse_preset(PRESET)
    service = Service(sql_uow_factory(db), {preset.name: preset}, ServiceConfig(preset.name))
    store = LocalImageStore(tmp_path / "images")
    engines = EngineRegistry()
    engines.put("fake", FakeEngine(step_delay=STEP_S))
    config = WorkerConfig(max_batch=1, batch_window_s=0, progress_interval_s=0.2)
    worker = Worker(db, engines, store, {preset.name: preset}, config)
    task = asyncio.create_task(worker.run())
    try:
        gid = (await service.imagine("a circle --n 1", ANN, HERE)).generation_ids[0]
        deadline = time.monotonic() + 20
        while gid not in worker._running or worker._running[gid].fraction < 0.1:
            assert time.monotonic() < deadline, "the job never ran"
            await asyncio.sleep(0.02)
        cancel = Action(ActionKind.CANCEL, gid, 0).custom_id
        await service.act(cancel, BOSS, HERE)
        pressed = time.monotonic()
        while gid in worker._running:  # the engine stops, the worker lets the job go
            assert time.monotonic() - pressed < 1.5, "the engine ran on after the cancel"
            await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)

    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT status, gpu_seconds, progress FROM generations WHERE id = :i"),
                {"i": gid},
            )
        ).one()
        images = await conn.scalar(
            text("SELECT count(*) FROM images WHERE generation_id = :i"), {"i": gid}
        )
    assert row.status == GenerationStatus.CANCELLED.value
    assert images == 0
    assert row.gpu_seconds is not None, "the GPU time used was not charged"
    assert 0.1 < row.gpu_seconds < STEPS * STEP_S * 0.75, row.gpu_seconds

    sink = RecordingSink(Platform.SLACK)
    assert await Delivery(db, service, store, sink).sweep() == 1
    ((_, card, _),) = sink.results
    assert card.text.startswith("✖ Cancelled by Boss"), card.text
    assert (await service.generation(gid)).status is GenerationStatus.CANCELLED
    assert isinstance(gid, uuid.UUID)
