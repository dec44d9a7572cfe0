"""The report scope (each image's and feedback row's copy of its generation's ``campaign_id`` and
``queued_at``, migration 004631b64596) equals a fresh join after any sequence of writes.

Hypothesis drives sequences of inserts, updates and deletes (new generations, images, feedback,
moving a generation to another campaign or day, status changes, deleting a campaign, feedback,
images or a generation, and writing a wrong copy by hand) through the real triggers, several
writes per transaction; after each sequence the per-campaign aggregates read through the copies
must equal the ones read by joining the generations.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.db import Database, plain_url

pytestmark = pytest.mark.integration

SLOTS = 2  # generations a sequence plays with (few, so writes meet on the same one)
CAMPAIGNS = (1, 2, 3)


def _gid(slot: int) -> str:
    return f"00000000-0000-0000-0000-{slot + 1:012d}"


_slot = st.integers(0, SLOTS - 1)
_campaign = st.sampled_from((*CAMPAIGNS, None))
_day = st.integers(1, 5)
_ops = st.one_of(
    st.tuples(st.just("generation"), _slot, _campaign, _day),
    st.tuples(st.just("image"), _slot, st.integers(1, 4)),
    st.tuples(
        st.just("feedback"),
        _slot,
        st.sampled_from(("favourite", "like", "approve")),
        st.one_of(st.none(), st.integers(1, 4)),
    ),
    st.tuples(st.just("move"), _slot, _campaign),
    st.tuples(st.just("requeue"), _slot, _day),
    st.tuples(st.just("status"), _slot, st.sampled_from(("running", "done", "failed"))),
    st.tuples(st.just("drop campaign"), st.sampled_from(CAMPAIGNS)),
    st.tuples(st.just("drop feedback"), _slot),
    st.tuples(st.just("drop image"), _slot, st.integers(1, 4)),
    st.tuples(st.just("drop generation"), _slot),
    st.tuples(st.just("tamper"), _slot),
)
# a sequence: transactions of 1–4 writes each
_sequences = st.lists(st.lists(_ops, min_size=1, max_size=4), min_size=1, max_size=8)


async def _apply(conn: asyncpg.Connection, op: tuple[Any, ...]) -> None:
    kind, slot = op[0], op[1]
    gid = _gid(slot) if kind != "drop campaign" else None
    if kind == "generation":
        _, _, campaign, day = op
        await conn.execute(
            """
            INSERT INTO generations (id, kind, platform, user_id, campaign_id, preset_id,
                preset_name, preset_version, raw_prompt, final_prompt, negative_prompt, params,
                status, queued_at, reply_target)
            VALUES ($1, 'imagine', 'slack', 1, $2, 1, 'brand', 'v1', 'p', 'p', '', '{}',
                    'queued', timestamptz '2026-03-01' + $3::int * interval '1 day', '{}')
            ON CONFLICT DO NOTHING
            """,
            gid,
            campaign,
            day,
        )
    elif kind == "image":
        await conn.execute(
            """
            INSERT INTO images (generation_id, index, storage_key, sha256, width, height, bytes)
            SELECT id, $2::int, 'k/' || id || '/' || $2::int, 'x', 64, 64, 1
            FROM generations WHERE id = $1
            ON CONFLICT DO NOTHING
            """,
            gid,
            op[2],
        )
    elif kind == "feedback":
        await conn.execute(
            """
            INSERT INTO feedback (generation_id, image_id, user_id, kind, emoji)
            SELECT g.id,
                   (SELECT i.id FROM images i WHERE i.generation_id = g.id AND i.index = $3::int),
                   1, $2, ''
            FROM generations g WHERE g.id = $1
            ON CONFLICT DO NOTHING
            """,
            gid,
            op[2],
            op[3],
        )
    elif kind == "move":
        await conn.execute("UPDATE generations SET campaign_id = $2 WHERE id = $1", gid, op[2])
    elif kind == "requeue":
        await conn.execute(
            "UPDATE generations "
            "SET queued_at = timestamptz '2026-03-01' + $2::int * interval '1 day' WHERE id = $1",
            gid,
            op[2],
        )
    elif kind == "status":
        await conn.execute("UPDATE generations SET status = $2 WHERE id = $1", gid, op[2])
    elif kind == "drop campaign":  # generations.campaign_id ON DELETE SET NULL
        await conn.execute("DELETE FROM campaigns WHERE id = $1", slot)
        await conn.execute(
            "INSERT INTO campaigns (id, name, preset_name) "
            "VALUES ($1::int, 'c' || $1::int, 'brand')",
            slot,
        )
    elif kind == "drop feedback":
        await conn.execute("DELETE FROM feedback WHERE generation_id = $1", gid)
    elif kind == "drop image":
        await conn.execute("DELETE FROM images WHERE generation_id = $1 AND index = $2", gid, op[2])
    elif kind == "drop generation":
        await conn.execute("DELETE FROM generations WHERE id = $1", gid)
    elif kind == "tamper":  # a wrong copy written by hand is put right by the trigger
        await conn.execute(
            "UPDATE images SET campaign_id = 999, generation_queued_at = now() "
            "WHERE generation_id = $1",
            gid,
        )
        await conn.execute("UPDATE feedback SET campaign_id = 999 WHERE generation_id = $1", gid)


# per campaign and day: images, feedback rows by kind; through the copies vs through generations
_THROUGH_COPIES = """
SELECT 'image' AS what, campaign_id, generation_queued_at AS day, count(*) FROM images
GROUP BY 1, 2, 3
UNION ALL
SELECT kind::text, campaign_id, generation_queued_at, count(*) FROM feedback GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""
_THROUGH_GENERATIONS = """
SELECT 'image' AS what, g.campaign_id, g.queued_at AS day, count(*)
FROM images i JOIN generations g ON g.id = i.generation_id GROUP BY 1, 2, 3
UNION ALL
SELECT f.kind::text, g.campaign_id, g.queued_at, count(*)
FROM feedback f JOIN generations g ON g.id = f.generation_id GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""


async def _run(dsn: str, sequence: list[list[tuple[Any, ...]]]) -> None:
    """Play ``sequence`` inside one transaction that is rolled back (each of its transactions a
    savepoint: the triggers fire the same), then compare."""
    conn = await asyncpg.connect(dsn)
    try:
        outer = conn.transaction()
        await outer.start()
        try:
            await conn.execute(
                """
                INSERT INTO workspaces (id, platform, external_id, name)
                    VALUES (1, 'slack', 'T1', 'A');
                INSERT INTO users (id, platform, workspace_id, external_id, display_name)
                    VALUES (1, 'slack', 1, 'U1', 'Alice');
                INSERT INTO presets (id, name, version, yaml_text) VALUES (1, 'brand', 'v1', 'x');
                INSERT INTO campaigns (id, name, preset_name)
                    SELECT c, 'c' || c, 'brand' FROM generate_series(1, 3) c;
                """
            )
            for transaction in sequence:
                async with conn.transaction():
                    for op in transaction:
                        await _apply(conn, op)
            copies = [tuple(r) for r in await conn.fetch(_THROUGH_COPIES)]
            fresh = [tuple(r) for r in await conn.fetch(_THROUGH_GENERATIONS)]
            assert copies == fresh
        finally:
            await outer.rollback()
    finally:
        await conn.close()


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=_sequences)
def test_copies_equal_a_fresh_join_after_any_writes(
    db: Database, database_url: str, sequence: list[list[tuple[Any, ...]]]
) -> None:
    asyncio.run(_run(plain_url(database_url), sequence))
