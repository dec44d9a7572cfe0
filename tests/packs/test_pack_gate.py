"""The approval gate on queued packs and on exports (issue 16), on the real database: a campaign
with ``require_approval: [pack, export]`` refuses a pack of an unapproved image and an export
holding one, naming the reviewers, queues nothing, and allows both after a reviewer's ✅; each
refusal, queueing and pack is in the audit log, and the pack is recorded with its files."""

from __future__ import annotations

import asyncio
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from core.brand.preset_files import parse_preset
from core.db import Database
from core.db.packs import SqlPacks
from core.db.uow import sql_uow_factory
from core.db.uploads import SqlUploads
from core.domain import Actor, FeedbackKind, Platform, ReplyTarget, Role
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.errors import NotAllowed
from core.jobs.worker import Worker, WorkerConfig
from core.reports.build import build_report
from core.reports.export import export_zip
from core.reports.text import to_markdown
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore

pytestmark = pytest.mark.integration

ANN = Actor(Platform.CLI, "local", "ann", "ann")
RITA = Actor(Platform.CLI, "local", "rita", "rita", frozenset({Role.REVIEWER}))
ADMIN = Actor(Platform.CLI, "local", "ada", "ada", frozenset({Role.ADMIN}))
HERE = ReplyTarget(Platform.CLI, "local", "terminal")
PRESET = """
name: gated
brand: Gated
prompt: "{prompt}"
aspect_ratios: {"1:1": [64, 64]}
default_aspect: "1:1"
engine: {kind: fake, model: fake, steps: 2, guidance: 5.0}
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
"""


async def _drain(db: Database, store: LocalImageStore, service: Service) -> None:
    engines = EngineRegistry()
    engines.put("fake", FakeEngine())
    worker = Worker(db, engines, store, service.presets, WorkerConfig(batch_window_s=0))
    await asyncio.wait_for(worker.run(drain=True), timeout=60)


async def _feedback(db: Database, gid: Any, index: int, actor: Actor, kind: FeedbackKind) -> None:
    async with sql_uow_factory(db)() as uow:
        ids = await uow.repo.image_ids(gid)
        user = await uow.repo.ensure_user(actor)
        await uow.repo.add_feedback(gid, ids[index], user, kind, "x")
        await uow.commit()


async def test_packs_and_exports_are_refused_until_a_reviewer_approves(
    db: Database, tmp_path: Path, provenance: Any
) -> None:
    preset = parse_preset(PRESET)
    store = LocalImageStore(tmp_path / "images")
    service = Service(
        sql_uow_factory(db),
        {preset.name: preset},
        ServiceConfig(preset.name, reviewers=frozenset({"cli:rita"})),
        store=store,
        uploads=SqlUploads(db),
        packs=SqlPacks(db),
    )
    await service.create_campaign(ADMIN, "launch", preset.name, require_approval=["pack", "export"])
    gid = (await service.imagine("a kettle --campaign launch --n 2", ANN, HERE)).generation_ids[0]
    await _drain(db, store, service)

    with pytest.raises(NotAllowed, match=r"packs only approved images.*cli:rita.*✅"):
        await service.queue_pack(ANN, HERE, gid, 1, ["display-300x250"])
    async with db.engine.connect() as conn:
        queued = await conn.scalar(text("SELECT count(*) FROM generations WHERE kind = 'pack'"))
    assert queued == 0  # refused: nothing queued

    await _feedback(db, gid, 1, RITA, FeedbackKind.APPROVE)
    ticket = await service.queue_pack(ANN, HERE, gid, 1, ["display-300x250", "link-card"])
    await _drain(db, store, service)
    pack = await service.pack_of(ticket.generation_ids[0])
    assert pack is not None
    assert [(f.placement, f.width, f.height) for f in pack.files] == [
        ("display-300x250", 300, 250),
        ("link-card", 1200, 628),
    ]
    assert pack.source == f"{gid}:1"
    assert all(f.method.startswith(("crop", "extend")) for f in pack.files)
    assert await store.get(pack.storage_key)

    # Export: favourites include image 2, which nobody approved.
    await _feedback(db, gid, 2, ANN, FeedbackKind.FAVOURITE)
    await _feedback(db, gid, 1, ANN, FeedbackKind.FAVOURITE)

    async def gate(unapproved: list[str]) -> None:
        await service.check_export(ANN, "launch", unapproved)

    out = tmp_path / "export.zip"
    with pytest.raises(NotAllowed, match=r"exports only approved images.*1 of these.*cli:rita"):
        await export_zip(db, "launch", "favourites", out, store.get, gate=gate)
    assert not out.exists()
    await _feedback(db, gid, 2, RITA, FeedbackKind.APPROVE)
    assert await export_zip(db, "launch", "favourites", out, store.get, gate=gate) == 2
    with zipfile.ZipFile(out) as archive:
        assert len([n for n in archive.namelist() if n.endswith(".png")]) == 2

    report = await build_report(db, "launch", sheet=0)
    assert (report.totals.packs, report.totals.pack_files) == (1, 2)
    assert "📦 1 packs · 2 placement files" in to_markdown(report)
    async with db.engine.connect() as conn:
        actions = (
            await conn.execute(
                text(
                    "SELECT action, subject FROM audit_log "
                    "WHERE action ~ '^(pack|export)[.]' ORDER BY id"
                )
            )
        ).all()
    assert [tuple(a) for a in actions] == [
        ("pack.refused", f"{gid}:1"),
        ("pack.queued", f"{gid}:1"),
        ("pack.made", f"{gid}:1"),
        ("export.refused", "campaign:launch"),
    ]
