"""A generation's engagement counters (``image_count``, ``favourites`` …, kept by the triggers of
migration d770701256a5) equal a recount from its images and feedback rows after any writes,
alone or from concurrent transactions.

The recount here is Python over the raw rows, with the report's definitions (docs/reports.md):
image-level favourite rows and the images they are on, images approved directly or through an
approval of their grid (each once), grid-level favourites, and like, dislike and approve rows at
either level, all counted on the feedback row's generation.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from core.db import Database, plain_url
from core.db.models import GENERATION_COUNTERS
from core.db.uow import SqlUnitOfWork
from core.domain import FeedbackKind

pytestmark = pytest.mark.integration

SLOTS = 2  # generations a sequence plays with (few, so writes meet on the same one)
USERS = (1, 2, 3)
KINDS = ("favourite", "like", "dislike", "approve")
# Changes that lock a row before their trigger locks the generation: concurrent writers on one
# generation take the generation's lock first (a BEFORE trigger does it for inserts)
LOCK_FIRST = ("unfeedback", "rekind", "drop image")

SETUP = """
INSERT INTO workspaces (id, platform, external_id, name) VALUES (1, 'slack', 'T1', 'A');
INSERT INTO users (id, platform, workspace_id, external_id, display_name)
    SELECT u, 'slack', 1, 'U' || u, 'User ' || u FROM generate_series(1, 3) u;
INSERT INTO presets (id, name, version, yaml_text) VALUES (1, 'brand', 'v1', 'x');
INSERT INTO campaigns (id, name, preset_name) VALUES (1, 'c1', 'brand');
"""


def _gid(slot: int) -> str:
    return f"00000000-0000-0000-0000-{slot + 1:012d}"


_slot = st.integers(0, SLOTS - 1)
_index = st.integers(1, 4)
_target = st.one_of(st.none(), _index)  # None: the whole grid
_user = st.sampled_from(USERS)
_kind = st.sampled_from(KINDS)
_ops = st.one_of(
    st.tuples(st.just("generation"), _slot),
    st.tuples(st.just("image"), _slot, _index),
    st.tuples(st.just("feedback"), _slot, _user, _kind, _target),
    st.tuples(st.just("unfeedback"), _slot, _user, _kind, _target),
    st.tuples(st.just("rekind"), _slot, _user, _kind, _kind),
    st.tuples(st.just("move image"), _slot, _index, _slot),
    st.tuples(st.just("drop image"), _slot, _index),
    st.tuples(st.just("drop feedback"), _slot),
    st.tuples(st.just("drop generation"), _slot),
)
# a sequence: transactions of 1–4 writes each
_sequences = st.lists(st.lists(_ops, min_size=1, max_size=4), min_size=1, max_size=10)


async def _apply(conn: asyncpg.Connection, op: tuple[Any, ...]) -> None:
    kind, gid = op[0], _gid(op[1])
    if kind == "generation":
        await conn.execute(
            """
            INSERT INTO generations (id, kind, platform, user_id, campaign_id, preset_id,
                preset_name, preset_version, raw_prompt, final_prompt, negative_prompt, params,
                status, reply_target)
            VALUES ($1, 'imagine', 'slack', 1, 1, 1, 'brand', 'v1', 'p', 'p', '', '{}',
                    'done', '{}')
            ON CONFLICT DO NOTHING
            """,
            gid,
        )
    elif kind == "image":
        await conn.execute(
            """
            INSERT INTO images (generation_id, index, storage_key, sha256, width, height, bytes)
            SELECT id, $2::int, 'k/' || id || '/' || $2::int || '/' || clock_timestamp(),
                   'x', 64, 64, 1
            FROM generations WHERE id = $1
            ON CONFLICT DO NOTHING
            """,
            gid,
            op[2],
        )
    elif kind in ("feedback", "unfeedback"):
        _, _, user, what, index = op
        # the image at ``index``, or the grid (NULL) when index is None; an index whose image
        # is missing writes nothing (never a grid row by accident)
        image = (
            "CASE WHEN $4::int IS NOT NULL THEN (SELECT i.id FROM images i "
            "WHERE i.generation_id = $1 AND i.index = $4::int) END"
        )
        if kind == "feedback":
            sql = f"""
                INSERT INTO feedback (generation_id, image_id, user_id, kind, emoji)
                SELECT $1, {image}, $2, $3, '' FROM generations
                WHERE id = $1 AND ($4::int IS NULL OR {image} IS NOT NULL)
                ON CONFLICT DO NOTHING
            """
        else:
            sql = f"""
                DELETE FROM feedback WHERE generation_id = $1 AND user_id = $2 AND kind = $3
                AND image_id IS NOT DISTINCT FROM {image}
            """
        await conn.execute(sql, gid, user, what, index)
    elif kind == "rekind":  # one row of the user's changes kind, unless that makes a twin
        await conn.execute(
            """
            UPDATE feedback f SET kind = $4 WHERE f.id = (
                SELECT id FROM feedback WHERE generation_id = $1 AND user_id = $2 AND kind = $3
                ORDER BY id LIMIT 1)
            AND NOT EXISTS (
                SELECT 1 FROM feedback t WHERE t.user_id = f.user_id AND t.kind = $4
                AND t.generation_id = f.generation_id
                AND t.image_id IS NOT DISTINCT FROM f.image_id)
            """,
            gid,
            op[2],
            op[3],
            op[4],
        )
    elif kind == "move image":  # to another generation's free index (its feedback stays)
        await conn.execute(
            """
            UPDATE images SET generation_id = $3
            WHERE generation_id = $1 AND index = $2 AND EXISTS (
                    SELECT 1 FROM generations WHERE id = $3)
              AND NOT EXISTS (SELECT 1 FROM images WHERE generation_id = $3 AND index = $2)
            """,
            gid,
            op[2],
            _gid(op[3]),
        )
    elif kind == "drop image":  # its feedback goes with it (ON DELETE CASCADE)
        await conn.execute("DELETE FROM images WHERE generation_id = $1 AND index = $2", gid, op[2])
    elif kind == "drop feedback":
        await conn.execute("DELETE FROM feedback WHERE generation_id = $1", gid)
    elif kind == "drop generation":
        await conn.execute("DELETE FROM generations WHERE id = $1", gid)


async def _counters(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    rows = await conn.fetch(f"SELECT id::text, {', '.join(GENERATION_COUNTERS)} FROM generations")
    return {r["id"]: {c: r[c] for c in GENERATION_COUNTERS} for r in rows}


async def _recount(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    """The counters from the raw rows, in Python."""
    images = await conn.fetch("SELECT id, generation_id::text AS gid FROM images")
    feedback = await conn.fetch("SELECT generation_id::text AS gid, image_id, kind FROM feedback")
    generations = await conn.fetch("SELECT id::text FROM generations")
    out = {r["id"]: dict.fromkeys(GENERATION_COUNTERS, 0) for r in generations}
    images_of: dict[str, set[int]] = defaultdict(set)
    for im in images:
        images_of[im["gid"]].add(im["id"])
        out[im["gid"]]["image_count"] += 1
    favourited: dict[str, set[int]] = defaultdict(set)
    approved: dict[str, set[int]] = defaultdict(set)
    for f in feedback:
        c, image = out[f["gid"]], f["image_id"]
        if f["kind"] == "favourite":
            if image is None:
                c["grid_favourites"] += 1
            else:
                c["favourites"] += 1
                favourited[f["gid"]].add(image)
        elif f["kind"] in ("like", "dislike"):
            c[f["kind"] + "s"] += 1
        else:
            c["approvals"] += 1
            approved[f["gid"]] |= images_of[f["gid"]] if image is None else {image}
    for gid, c in out.items():
        c["favourited_images"] = len(favourited[gid])
        c["approved_images"] = len(approved[gid])
    return out


async def _setup(conn: asyncpg.Connection) -> None:
    await conn.execute(SETUP)
    for slot in range(SLOTS):
        await _apply(conn, ("generation", slot))


Read = Callable[[asyncpg.Connection], Awaitable[Any]]


async def _play(
    dsn: str,
    sequence: list[list[tuple[Any, ...]]],
    counters: Read = _counters,
    recount: Read = _recount,
    *,
    prepare: str = "",
) -> None:
    """Play ``sequence`` inside one transaction that is rolled back (each of its transactions a
    savepoint: the triggers fire the same), comparing ``counters`` with ``recount`` after every
    one; ``prepare`` runs first, inside the rolled-back transaction."""
    conn = await asyncpg.connect(dsn)
    try:
        outer = conn.transaction()
        await outer.start()
        try:
            if prepare:
                await conn.execute(prepare)
            await _setup(conn)
            for transaction in sequence:
                async with conn.transaction():
                    for op in transaction:
                        await _apply(conn, op)
                assert await counters(conn) == await recount(conn), transaction
        finally:
            await outer.rollback()
    finally:
        await conn.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=_sequences)
def test_counters_equal_a_recount_after_any_writes(
    db: Database, database_url: str, sequence: list[list[tuple[Any, ...]]]
) -> None:
    asyncio.run(_play(plain_url(database_url), sequence))


async def _waiting_for_a_lock(probe: asyncpg.Connection, pid: int) -> None:
    for _ in range(200):
        if await probe.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second writer never waited for the first")


@pytest.fixture
async def three(db: Database, database_url: str) -> Any:
    """Two writers and a reader on a database with one generation of four images."""
    dsn = plain_url(database_url)
    conns = [await asyncpg.connect(dsn) for _ in range(3)]
    await _setup(conns[2])
    for index in range(1, 5):
        await _apply(conns[2], ("image", 0, index))
    yield conns
    for conn in conns:
        await conn.close()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # the second one's statement starts before the first commits: it must wait, then count
        # what the first committed (a delete has no BEFORE trigger: only the counting locks)
        (("feedback", 0, 1, "favourite", 1), ("unfeedback", 0, 2, "like", None)),
        (("unfeedback", 0, 2, "like", None), ("feedback", 0, 1, "approve", None)),
        (("feedback", 0, 1, "approve", None), ("drop image", 0, 2)),
        (("drop image", 0, 3), ("feedback", 0, 2, "favourite", 4)),
        (("feedback", 0, 1, "favourite", 1), ("feedback", 0, 2, "favourite", 1)),
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
    assert (await _counters(reader))[_gid(0)] != dict.fromkeys(GENERATION_COUNTERS, 0)


async def test_two_writers_inside_one_statement_each_do_not_deadlock(
    three: list[asyncpg.Connection],
) -> None:
    """Each statement writes a row, sleeps, writes a second (both on one generation): with a
    shared lock before the write and a stronger one after it, the two would deadlock."""
    sql = """
        INSERT INTO feedback (generation_id, image_id, user_id, kind, emoji)
        SELECT $1, NULL, $2, k, '' FROM unnest(ARRAY['like', 'dislike']) WITH ORDINALITY s(k, n)
        WHERE n = 1 OR pg_sleep(0.3)::text = ''
    """
    one, two, reader = three
    await asyncio.gather(one.execute(sql, _gid(0), 1), two.execute(sql, _gid(0), 2))
    counters = (await _counters(reader))[_gid(0)]
    assert (counters["likes"], counters["dislikes"]) == (2, 2)
    assert await _counters(reader) == await _recount(reader)


async def test_a_reaction_removed_while_it_is_added_again_does_not_deadlock(
    db: Database, three: list[asyncpg.Connection]
) -> None:
    """The repository's ``remove_feedback`` takes the generation's lock before it deletes. It
    deleted first: an addition of the same reaction that held the lock (its BEFORE trigger)
    waited for the deleted row, the delete's trigger for the lock, and PostgreSQL failed one of
    the two (a toggled reaction lost or an error)."""
    adder, _, reader = three
    await _apply(reader, ("feedback", 0, 1, "like", None))
    gid = uuid.UUID(_gid(0))
    pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def remove() -> bool:
        async with SqlUnitOfWork(db) as uow:
            session = uow.repo.session  # type: ignore[attr-defined]  # a SqlRepository
            pid.set_result(await session.scalar(text("SELECT pg_backend_pid()")))
            removed = await uow.repo.remove_feedback(gid, None, 1, FeedbackKind.LIKE)
            await uow.commit()
        return removed

    async with adder.transaction():
        # the addition's BEFORE trigger, at the instant the removal starts
        await adder.execute("SELECT 1 FROM generations WHERE id = $1 FOR NO KEY UPDATE", gid)
        removal = asyncio.create_task(remove())
        await _waiting_for_a_lock(reader, await pid)
        await _apply(adder, ("feedback", 0, 1, "like", None))  # still there: a no-op
    assert await asyncio.wait_for(removal, 10)
    assert (await _counters(reader))[_gid(0)]["likes"] == 0
    assert await _counters(reader) == await _recount(reader)


async def _write_concurrently(dsn: str, rng: random.Random) -> None:
    """Four writers, 40 transactions each, of one to three random changes on a random slot."""

    def op(slot: int) -> tuple[Any, ...]:
        user, index = rng.choice(USERS), rng.choice((None, 1, 2, 3))
        return rng.choice(
            [
                ("feedback", slot, user, rng.choice(KINDS), index),
                ("feedback", slot, user, rng.choice(KINDS), index),
                ("unfeedback", slot, user, rng.choice(KINDS), index),
                ("rekind", slot, user, rng.choice(KINDS), rng.choice(KINDS)),
                ("image", slot, rng.randint(1, 4)),
                ("drop image", slot, rng.randint(1, 4)),
            ]
        )

    async def writer(conn: asyncpg.Connection) -> None:
        for _ in range(40):
            slot = rng.randrange(SLOTS)
            try:
                async with conn.transaction():
                    for _ in range(rng.randint(1, 3)):
                        change = op(slot)
                        if change[0] in LOCK_FIRST:  # as the repository's remove_feedback
                            await conn.execute(
                                "SELECT 1 FROM generations WHERE id = $1 FOR NO KEY UPDATE",
                                _gid(slot),
                            )
                        await _apply(conn, change)
            except (asyncpg.ForeignKeyViolationError, asyncpg.UniqueViolationError):
                pass  # a race lost (feedback on an image deleted meanwhile …): rolled back

    conns = [await asyncpg.connect(dsn) for _ in range(4)]
    try:
        await asyncio.gather(*(writer(conn) for conn in conns))
    finally:
        for conn in conns:
            await conn.close()


async def test_concurrent_random_writers_leave_correct_counters(
    three: list[asyncpg.Connection], database_url: str
) -> None:
    await _apply(three[2], ("generation", 1))
    await _write_concurrently(plain_url(database_url), random.Random(19))
    assert await _counters(three[2]) == await _recount(three[2])
