"""Near-duplicates on real PostgreSQL: the private warning on ✅ and the report's clusters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import insert

from core.db import Database
from core.db.models import Message
from core.db.uow import sql_uow_factory
from core.domain import Actor, MessageRef, Platform, Role
from core.memory.duplicates import clusters
from core.memory.indexer import indexing, unhashed
from core.memory.model import ImageRef
from core.memory.store import MemoryStore
from core.reports.build import build_report
from core.reports.text import report_dict, to_markdown
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore
from tests.memory.seed import B1, B2, D1, seed

pytestmark = pytest.mark.integration

RITA = Actor(Platform.SLACK, "T1", "U3", "Rita", frozenset({Role.REVIEWER}))
BOB = Actor(Platform.SLACK, "T1", "U2", "Bob")


@pytest.fixture
async def service(db: Database, tmp_path: Path) -> Service:
    store = LocalImageStore(tmp_path / "images")
    await seed(db, store)
    async with db.engine.begin() as conn:
        # the indexer hasn't reached D1 yet: the approval hashes it on the spot
        await conn.exec_driver_sql(f"UPDATE images SET phash = NULL WHERE generation_id = '{D1}'")
        await conn.execute(
            insert(Message.__table__),
            [
                {"generation_id": g, "platform": "slack", "channel_id": "C1",
                 "message_id": f"m{n}", "role": "result"}
                for n, g in ((1, D1), (2, B2), (3, B1))
            ],
        )  # fmt: skip
    return Service(sql_uow_factory(db), {}, ServiceConfig("acme"), memory=MemoryStore(db, store))


async def test_approving_a_near_duplicate_warns_the_reviewer_privately(
    service: Service, db: Database
) -> None:
    # B1#3 (spring) is approved; D1 (autumn) is the same picture, a shade lighter.
    card = await service.react_reply(MessageRef(Platform.SLACK, "C1", "m1"), "✅", RITA, added=True)
    assert card is not None
    assert card.ephemeral
    assert f"`{B1}:3`" in card.text
    assert "spring" in card.text
    # the approval itself was recorded
    async with db.engine.connect() as conn:
        kinds = await conn.exec_driver_sql(
            f"SELECT kind FROM feedback WHERE generation_id = '{D1}'"
        )
        assert [k for (k,) in kinds] == ["approve"]

    async with db.sessions() as session:
        found = await clusters(session, 1)  # spring
    assert [c.image for c in found] == [ImageRef(B1, 3)]
    assert [(ref, campaign) for ref, campaign, _ in found[0].near] == [(ImageRef(D1, 1), "autumn")]
    report = await build_report(db, "spring", include_images=False, sheet=0, memory=True)
    assert report.near_duplicates == tuple(found)
    assert "## Near-duplicates of approved images" in to_markdown(report)
    assert report_dict(report)["near_duplicates"][0]["near"][0]["image"] == f"{D1}:1"


async def test_no_warning_without_a_near_duplicate_or_a_reviewer(service: Service) -> None:
    b2 = MessageRef(Platform.SLACK, "C1", "m2")
    assert await service.react_reply(b2, "white_check_mark", RITA, added=True) is None
    d1 = MessageRef(Platform.SLACK, "C1", "m1")
    assert await service.react_reply(d1, "✅", BOB, added=True) is None  # not a reviewer
    assert await service.react_reply(d1, "⭐", RITA, added=True) is None  # not an approval


async def test_the_indexer_hashes_new_images_beside_a_worker(db: Database, tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "images")
    await seed(db, store, hashed=False)
    assert await unhashed(db) == 20
    async with indexing(db, store):
        for _ in range(200):  # it starts by catching up, without waiting for an event
            if await unhashed(db) == 0:
                break
            await asyncio.sleep(0.05)
    assert await unhashed(db) == 0
    async with db.engine.connect() as conn:
        (distinct,) = (await conn.exec_driver_sql("SELECT count(DISTINCT phash) FROM images")).one()
    assert distinct == 19  # every picture its own hash, but D1 is B1#3 a shade lighter
