"""``onbrand fetch GEN`` and ``onbrand imagine`` when the database dies while it waits
(issue 12, item 7)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from core.brand.preset_files import parse_preset
from core.db import Database
from core.db.uow import sql_uow_factory
from core.delivery.fetch import fetch, find_generation
from core.domain import Actor, GenerationStatus, Platform, ReplyTarget
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.errors import NotFound, UserError
from core.jobs.worker import Worker, WorkerConfig
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore
from tests.pgcluster import Cluster, cluster, outage_db

pytestmark = pytest.mark.integration
__all__ = ["cluster", "outage_db"]  # fixtures

REPO = Path(__file__).resolve().parents[2]
PRESET = """
name: slow-test
brand: Slow Test
prompt: "{prompt}, test style"
aspect_ratios: {"1:1": [64, 64]}
default_aspect: "1:1"
engine: {kind: fake, model: fake-slow, steps: 10, guidance: 5.0}
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
"""
ANN = Actor(Platform.CLI, "local", "ann", "ann")
HERE = ReplyTarget(Platform.CLI, "local", "terminal")


def service_on(db: Database) -> Service:
    preset = parse_preset(PRESET)
    return Service(sql_uow_factory(db), {preset.name: preset}, ServiceConfig(preset.name))


def worker_on(db: Database, store: LocalImageStore) -> Worker:
    engines = EngineRegistry()
    engines.put("fake", FakeEngine())
    preset = parse_preset(PRESET)
    config = WorkerConfig(max_batch=4, batch_window_s=0, heartbeat_timeout_s=1)
    return Worker(db, engines, store, {preset.name: preset}, config)


async def test_fetch_names_what_is_wrong_with_the_id(db: Database, tmp_path: Path) -> None:
    service = service_on(db)
    ids = [(await service.imagine(f"a c {i} --n 1", ANN, HERE)).generation_ids[0] for i in (1, 2)]
    first, second = ids
    # Two ids that share their first 12 characters.
    async with db.engine.begin() as conn:
        for gid, new in ((first, "abcdef12-3456-4000-8000-000000000001"),
                         (second, "abcdef12-3456-4000-8000-000000000002")):  # fmt: skip
            await conn.execute(
                text("UPDATE generations SET id = :new WHERE id = :old"), {"new": new, "old": gid}
            )
    for bad in ("", "abc", "not-an-id!", "abcdef1"):
        with pytest.raises(UserError, match="is not a generation id"):
            await find_generation(db, service, bad)
    with pytest.raises(UserError, match="More than one generation starts with abcdef12-3456"):
        await find_generation(db, service, "ABCDEF12-3456")
    with pytest.raises(NotFound, match="No generation starts with 0123456789"):
        await find_generation(db, service, "0123456789")
    with pytest.raises(NotFound, match="No generation 00000000-"):
        await find_generation(db, service, str(uuid.UUID(int=5)))
    one = await find_generation(db, service, "abcdef12-3456-4000-8000-000000000001")
    assert str(one.id).endswith("1")
    with pytest.raises(UserError, match="is queued, not done yet: run this again when it is done"):
        await fetch(
            db, service, LocalImageStore(tmp_path), "abcdef12-3456-4000-8000-000000000002", tmp_path
        )


def onbrand(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from tests.integration.test_shutdown import slow_onbrand; "
         "slow_onbrand()", *args],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


async def test_imagine_survives_the_database_dying_and_fetch_gets_the_images_later(
    cluster: Cluster, outage_db: Database, tmp_path: Path
) -> None:
    db = outage_db
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "slow-test.yaml").write_text(PRESET)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ONBRAND_", "SLACK_"))}
    env = clean | {
        "DATABASE_URL": db.url.replace("+asyncpg", ""),
        "ONBRAND_DATA_DIR": str(tmp_path / "data"),
        "ONBRAND_PRESETS_DIR": str(presets),
        "ONBRAND_DEFAULT_PRESET": "slow-test",
        "ONBRAND_TEST_STEP_DELAY": "0.2",
        "PYTHONPATH": str(REPO),
    }
    out = tmp_path / "out"
    waiting = onbrand("imagine", "a red circle --seed 3", "--out", str(out), env=env)
    try:
        deadline = time.monotonic() + 60
        while True:  # until the job runs: the database dies in the middle of it
            async with db.engine.connect() as conn:
                rows = (await conn.execute(text("SELECT id, status FROM generations"))).all()
            if rows and rows[0].status == "running":
                break
            assert time.monotonic() < deadline, rows
            assert waiting.poll() is None, rows
            await asyncio.sleep(0.05)
        gid = rows[0].id
        cluster.stop()
        said, _ = await asyncio.to_thread(waiting.communicate, timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
        if not _running(cluster):
            cluster.start()
    assert waiting.returncode not in (0, None), said
    assert "Traceback" not in said, said
    assert f"onbrand fetch {gid} -o {out}" in said, said
    assert "database went away" in said
    assert len([line for line in said.splitlines() if line.strip()]) == 2, said  # queued, error

    # The database is back; a worker finishes the job (the one in hand is claimed again).
    store = LocalImageStore(tmp_path / "data" / "images")
    await db.engine.dispose()
    await asyncio.wait_for(worker_on(db, store).run(drain=True), timeout=60)
    fetched = onbrand("fetch", str(gid)[:8], "-o", str(out), env=env)
    said, _ = await asyncio.to_thread(fetched.communicate, timeout=60)
    assert fetched.returncode == 0, said
    folder = out / str(gid)
    assert sorted(p.name for p in folder.iterdir()) == [
        "1.png",
        "2.png",
        "3.png",
        "4.png",
        "grid.png",
    ]
    async with db.engine.connect() as conn:
        status = await conn.scalar(text("SELECT status FROM generations WHERE id = :i"), {"i": gid})
    assert status == GenerationStatus.DONE.value


def _running(cluster: Cluster) -> bool:
    return (cluster.data / "postmaster.pid").exists()
