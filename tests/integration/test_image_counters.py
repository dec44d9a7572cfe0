"""An image's engagement (``favourites``, ``likes``, ``dislikes``, ``first_favourite_at``,
``approved_at``) and a generation's grid-level ``grid_likes`` and ``grid_dislikes`` (kept by the
triggers of migration de10912017cf) equal a recount from the raw rows after any writes, alone or
from concurrent transactions; the migration's backfill and the bench's seed write the same.

The recount here is Python over the raw rows, with the report's definitions (docs/reports.md):
an image counts the image-level rows on it that belong to its generation; its first approval is
the earliest approval of it or of its whole grid. The write sequences and writers are those of
``test_generation_counters``.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings

from core.db import Database, plain_url
from core.db.migrate import upgrade
from tests.integration.test_generation_counters import (
    _apply,
    _gid,
    _play,
    _sequences,
    _setup,
    _waiting_for_a_lock,
    _write_concurrently,
)
from tests.integration.test_generation_counters import three as three  # a fixture

pytestmark = pytest.mark.integration

Counters = tuple[dict[int, tuple[Any, ...]], dict[str, tuple[int, int]]]


async def _counters(conn: asyncpg.Connection) -> Counters:
    images = await conn.fetch(
        "SELECT id, favourites, likes, dislikes, first_favourite_at, approved_at FROM images"
    )
    grids = await conn.fetch("SELECT id::text, grid_likes, grid_dislikes FROM generations")
    return (
        {r["id"]: tuple(r)[1:] for r in images},
        {r["id"]: (r["grid_likes"], r["grid_dislikes"]) for r in grids},
    )


async def _recount(conn: asyncpg.Connection) -> Counters:
    """The counters from the raw rows, in Python."""
    images = await conn.fetch("SELECT id, generation_id::text AS gid FROM images")
    feedback = await conn.fetch(
        "SELECT generation_id::text AS gid, image_id, kind, created_at FROM feedback"
    )
    generations = await conn.fetch("SELECT id::text FROM generations")
    gid_of = {im["id"]: im["gid"] for im in images}
    counts: dict[int, dict[str, int]] = {i: defaultdict(int) for i in gid_of}
    first: dict[tuple[int, str], datetime] = {}
    grid_approved: dict[str, datetime] = {}
    grids = {r["id"]: [0, 0] for r in generations}

    def earliest(d: dict[Any, datetime], key: Any, at: datetime) -> None:
        d[key] = min(d.get(key, at), at)

    for f in feedback:
        image, kind, at = f["image_id"], f["kind"], f["created_at"]
        if image is None:
            if kind in ("like", "dislike"):
                grids[f["gid"]][kind == "dislike"] += 1
            elif kind == "approve":
                earliest(grid_approved, f["gid"], at)
        elif gid_of.get(image) == f["gid"]:  # a row on the image, of its generation
            counts[image][kind] += 1
            earliest(first, (image, kind), at)
    out = {}
    for image, gid in gid_of.items():
        approvals = [t for t in (first.get((image, "approve")), grid_approved.get(gid)) if t]
        c = counts[image]
        out[image] = (
            *(c["favourite"], c["like"], c["dislike"]),
            first.get((image, "favourite")),
            min(approvals) if approvals else None,
        )
    return out, {gid: (likes, dislikes) for gid, (likes, dislikes) in grids.items()}


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=_sequences)
def test_image_counters_equal_a_recount_after_any_writes(
    db: Database, database_url: str, sequence: list[list[tuple[Any, ...]]]
) -> None:
    # rows get their own times (clock_timestamp), so the first favourite and approval differ
    clock = "ALTER TABLE feedback ALTER COLUMN created_at SET DEFAULT clock_timestamp()"
    asyncio.run(_play(plain_url(database_url), sequence, _counters, _recount, prepare=clock))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # the second one's statement starts before the first commits: it must wait, then count
        # what the first committed
        (("feedback", 0, 1, "favourite", 1), ("feedback", 0, 2, "favourite", 1)),
        (("feedback", 0, 1, "approve", None), ("feedback", 0, 2, "approve", 2)),
        (("feedback", 0, 1, "like", None), ("unfeedback", 0, 3, "favourite", 2)),
        (("feedback", 0, 1, "approve", 3), ("drop image", 0, 3)),
        (("rekind", 0, 3, "favourite", "like"), ("feedback", 0, 2, "dislike", 2)),
    ],
)
async def test_a_writer_that_waited_counts_what_the_first_committed(
    three: list[asyncpg.Connection], first: tuple[Any, ...], second: tuple[Any, ...]
) -> None:
    one, two, reader = three
    await _apply(reader, ("feedback", 0, 2, "like", None))
    await _apply(reader, ("feedback", 0, 3, "favourite", 2))
    async with one.transaction():
        await _apply(one, first)
        task = asyncio.create_task(_apply(two, second))
        await _waiting_for_a_lock(reader, two.get_server_pid())
    await task
    assert await _counters(reader) == await _recount(reader)


async def test_concurrent_random_writers_leave_correct_image_counters(
    three: list[asyncpg.Connection], database_url: str
) -> None:
    """The interleaving is the server's, so the end state varies: in 3 of 24 runs here no
    favourite, like or dislike on an image was left, which compares little. Approvals count as
    something to compare too (the first round sufficed in 30 of 30 runs), and rounds of writers
    go on, each compared, until one leaves image counters."""
    await _apply(three[2], ("generation", 1))
    rng = random.Random(19)
    for _ in range(6):
        await _write_concurrently(plain_url(database_url), rng)
        images, grids = await _counters(three[2])
        assert (images, grids) == await _recount(three[2])
        if any(any(c[:3]) or c[4] for c in images.values()):
            return
    pytest.fail("six rounds of writers left no image counters")


async def test_the_backfill_counts_the_rows_written_before(scratch_db: Database) -> None:
    """Rows written at d770701256a5 (its triggers on): the upgrade fills the new counters."""
    db = scratch_db
    await upgrade(db, "d770701256a5")
    conn = await asyncpg.connect(db.dsn)
    try:
        await _setup(conn)
        for op in (
            *(("image", slot, index) for slot in (0, 1) for index in (1, 2, 3)),
            ("feedback", 0, 1, "favourite", 1),
            ("feedback", 0, 2, "favourite", 1),
            ("feedback", 0, 2, "like", 2),
            ("feedback", 0, 3, "dislike", None),
            ("feedback", 0, 1, "like", None),
            ("feedback", 0, 3, "approve", 2),
            ("feedback", 1, 1, "approve", None),
            ("feedback", 1, 2, "approve", 3),
        ):
            await _apply(conn, op)
        await upgrade(db)
        counted = await _counters(conn)
        assert counted == await _recount(conn)
        assert counted[1][_gid(0)] == (1, 1)
        assert sum(c[0] for c in counted[0].values()) == 2
        assert sum(c[4] is not None for c in counted[0].values()) == 4  # 1 + a grid of 3
    finally:
        await conn.close()


async def test_the_bench_seed_writes_what_the_triggers_would(scratch_db: Database) -> None:
    """The bench seeds with triggers off and writes the counters itself: recounting every
    generation with the triggers' function changes nothing."""
    from bench.report import _seed

    dsn = scratch_db.dsn
    await upgrade(scratch_db)
    await _seed(dsn, 0.002)
    conn = await asyncpg.connect(dsn)
    try:
        images = "SELECT * FROM images ORDER BY id"
        generations = "SELECT * FROM generations ORDER BY id"
        seeded = (await conn.fetch(images), await conn.fetch(generations))
        assert sum(r["approved_at"] is not None for r in seeded[0]) > 10
        assert sum(r["grid_likes"] for r in seeded[1]) > 10
        async with conn.transaction():
            await conn.execute(
                "SELECT onbrand_generation_counts(array_agg(id ORDER BY id)) FROM generations"
            )
            assert (await conn.fetch(images), await conn.fetch(generations)) == seeded
    finally:
        await conn.close()
