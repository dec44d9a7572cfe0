"""Request receipts on a real PostgreSQL (``core.db.receipts``): two deliveries of one request
at the same moment race on the primary key and exactly one wins, through the SQL and through
the service; ids are stored as digests; receipts past the retention go."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from core.brand.preset_files import load_presets
from core.db import Database
from core.db.receipts import PRUNE_BATCH, RECEIPT_RETENTION, stored_key
from core.db.uow import SqlUnitOfWork, sql_uow_factory
from core.domain import Actor, Platform, ReplyTarget, RequestKey
from core.errors import DuplicateRequest
from core.service import Service
from core.service.base import ServiceConfig

pytestmark = pytest.mark.integration

KEY = RequestKey(Platform.DISCORD, "interaction", "1579137958404030581")
ALICE = Actor(Platform.DISCORD, "G1", "U1", "Alice")
WHERE = ReplyTarget(Platform.DISCORD, "G1", "C1")
PRESET = """
name: acme
brand: Acme
prompt: "{prompt}, acme style"
aspect_ratios:
  "1:1": [64, 64]
default_aspect: "1:1"
engine: {kind: fake, model: fake-v1, steps: 2, guidance: 5.0}
"""


async def _rows(db: Database) -> list[tuple[str, str, str]]:
    async with db.engine.connect() as conn:
        found = await conn.execute(text("SELECT platform, kind, key FROM request_receipts"))
        return [tuple(row) for row in found]


async def test_a_copy_waits_for_the_first_and_loses_when_it_commits(db: Database) -> None:
    async with SqlUnitOfWork(db) as first, SqlUnitOfWork(db) as copy:
        assert await first.receipts.record(KEY) is True
        racing = asyncio.create_task(copy.receipts.record(KEY))
        await asyncio.sleep(0.2)
        assert not racing.done()  # held on the primary key until the first one ends
        await first.commit()
        assert await asyncio.wait_for(racing, 5) is False
    assert await _rows(db) == [("discord", "interaction", stored_key(KEY))]


async def test_a_copy_wins_when_the_first_rolls_back(db: Database) -> None:
    async with SqlUnitOfWork(db) as copy:
        async with SqlUnitOfWork(db) as first:
            assert await first.receipts.record(KEY) is True
            racing = asyncio.create_task(copy.receipts.record(KEY))
            await asyncio.sleep(0.1)
            assert not racing.done()
        # the first unit of work ended without a commit (a refused request, a crash)
        assert await asyncio.wait_for(racing, 5) is True
        await copy.commit()
    assert len(await _rows(db)) == 1


@pytest.fixture
def service(db: Database, tmp_path: Path) -> Service:
    (tmp_path / "acme.yaml").write_text(PRESET)
    return Service(sql_uow_factory(db), load_presets(tmp_path), ServiceConfig("acme"))


async def test_eight_deliveries_at_once_make_one_generation(db: Database, service: Service) -> None:
    results = await asyncio.gather(
        *(service.imagine("a kite", ALICE, WHERE, key=KEY) for _ in range(8)),
        return_exceptions=True,
    )

    tickets = [r for r in results if not isinstance(r, BaseException)]
    assert len(tickets) == 1
    assert all(isinstance(r, DuplicateRequest) for r in results if r not in tickets)
    async with db.engine.connect() as conn:
        count = await conn.scalar(text("SELECT count(*) FROM generations"))
        jobs = await conn.scalar(text("SELECT count(*) FROM pgqueuer"))
    assert (count, jobs) == (1, 1)


async def test_without_a_key_nothing_is_checked(db: Database, service: Service) -> None:
    await service.imagine("a kite", ALICE, WHERE)
    await service.imagine("a kite", ALICE, WHERE)  # the CLI: every call is a request
    assert await _rows(db) == []


async def test_ids_are_stored_as_digests_whatever_their_length_or_characters(
    db: Database,
) -> None:
    long = RequestKey(Platform.SLACK, "command", "x" * 5000)
    nul = RequestKey(Platform.SLACK, "event", "Ev0\x00")
    async with SqlUnitOfWork(db) as uow:
        assert [await uow.receipts.record(k) for k in (long, nul, KEY)] == [True] * 3
        await uow.commit()
    async with SqlUnitOfWork(db) as uow:
        assert [await uow.receipts.record(k) for k in (long, nul, KEY)] == [False] * 3
    stored = {key for _, _, key in await _rows(db)}
    assert stored == {stored_key(long), stored_key(nul), stored_key(KEY)}
    assert all(len(key) == 64 and KEY.id not in key for key in stored)  # no id kept as it is


async def test_receipts_past_the_retention_are_pruned_a_batch_at_a_time(db: Database) -> None:
    assert timedelta(minutes=15) <= RECEIPT_RETENTION  # Discord's interaction token lifetime
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO request_receipts (platform, kind, key, seen_at) "
                "SELECT 'slack', 'event', 'old-' || n, "
                "now() - CAST(:age AS interval) - n * interval '1 second' "
                "FROM generate_series(1, :count) AS n"
            ),
            {"age": RECEIPT_RETENTION + timedelta(minutes=1), "count": PRUNE_BATCH + 5},
        )
        await conn.execute(
            text(
                "INSERT INTO request_receipts (platform, kind, key, seen_at) "
                "VALUES ('slack', 'event', 'recent', now() - CAST(:age AS interval))"
            ),
            {"age": RECEIPT_RETENTION - timedelta(minutes=1)},
        )

    for expected_old in (5, 0):  # each request takes at most a batch of the expired ones
        async with SqlUnitOfWork(db) as uow:
            await uow.receipts.record(RequestKey(Platform.SLACK, "event", f"new-{expected_old}"))
            await uow.commit()
        keys = {key for _, _, key in await _rows(db)}
        assert len([k for k in keys if k.startswith("old-")]) == expected_old
    new = {stored_key(RequestKey(Platform.SLACK, "event", f"new-{n}")) for n in (5, 0)}
    assert keys == {"recent", *new}  # what is within the retention stays
