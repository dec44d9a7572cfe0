"""The worker's side of the records: start, progress, finish, end.

This is the hot path of every job, so each operation is **one SQL statement, one round trip**,
sent as plain SQL on an asyncpg connection pool (prepared once per connection by asyncpg's
statement cache; no ORM compilation, no pool pre-ping, no BEGIN/COMMIT round trips: a single
statement is its own transaction). Every write is guarded by the generation's status, so a job
that was cancelled, or finished by another worker after a crash, is never overwritten. Events
(NOTIFY) go out in the same statement, so they are sent exactly when the change commits.
``start_many`` and ``finish_many`` take many jobs in that one statement: the worker gathers the
calls of concurrent jobs into them (``core.jobs.batching.Coalescer``).

Durability: ``finish`` and ``end`` commit synchronously (a ``done`` that a user was told about
survives a database crash). ``start`` and progress writes commit asynchronously
(``synchronous_commit = off`` for that one statement): PostgreSQL writes them to disk within a
fraction of a second, and if the database crashed before that, the generation is merely back to
``queued``/its previous progress, which the queue's retry makes good. This saves a WAL flush
(~3 ms here) before each job can join a batch. A later synchronous commit flushes all WAL written
before it, so a durable ``done`` always implies its ``running`` was durable too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from core.db.events import CHANNEL, Event, EventType
from core.db.mapping import params_from_json
from core.domain import GenerationKind, GenerationStatus, Params

__all__ = [
    "Finished",
    "Sql",
    "StartedJob",
    "StoredImage",
    "end",
    "finish",
    "finish_many",
    "source_image_key",
    "source_image_keys",
    "start",
    "start_many",
    "sync_running",
]


class Sql(Protocol):
    """What the worker's statements need: an asyncpg ``Pool`` or ``Connection``."""

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class StartedJob:
    id: uuid.UUID
    kind: GenerationKind
    platform: str
    params: Params
    attempts: int
    parent_id: uuid.UUID | None
    source_index: int | None


@dataclass(frozen=True)
class StoredImage:
    index: int
    storage_key: str
    sha256: str
    width: int
    height: int
    size: int
    palette_score: float | None
    # pHash of the picture before its invisible watermark (core.memory.phash): the same picture
    # hashes the same in every copy. None: the worker has no imagehash; the indexer hashes it.
    phash: int | None = None
    # The logo-free master's key (core.jobs.finishing): None when the preset draws no logo/badge.
    clean_key: str | None = None


# For one statement: commit without waiting for the WAL flush (see the module docstring).
_RELAXED: Final = "(SELECT set_config('synchronous_commit', 'off', true)) AS relaxed"

_START: Final = f"""
UPDATE generations
SET status = 'running', attempts = attempts + 1, started_at = coalesce(started_at, now())
FROM {_RELAXED}
WHERE id = ANY($1::uuid[]) AND status IN ('queued', 'running')
RETURNING id, kind, platform, params::text AS params, attempts, parent_id, source_index
"""

_FINISH: Final = """
WITH batch AS (
    SELECT * FROM unnest($1::uuid[], $2::float8[], $3::text[]) AS b(id, gpu_seconds, event)
), moved AS (
    UPDATE generations AS g
    SET status = 'done', progress = 1.0, error = NULL, finished_at = now(),
        gpu_seconds = coalesce(g.gpu_seconds, 0) + b.gpu_seconds
    FROM batch AS b
    WHERE g.id = b.id AND g.status = 'running'
    RETURNING g.id, b.event
), stored AS (
    INSERT INTO images
        (generation_id, "index", storage_key, sha256, width, height, bytes, palette_score, phash,
         clean_key)
    SELECT i.* FROM unnest(
        $4::uuid[], $5::int[], $6::text[], $7::text[], $8::int[], $9::int[], $10::bigint[],
        $11::float8[], $13::bigint[], $14::text[]
    ) AS i(generation_id, "index", storage_key, sha256, width, height, bytes, palette_score, phash,
           clean_key)
    WHERE i.generation_id IN (SELECT id FROM moved)
    ON CONFLICT (generation_id, "index") DO NOTHING
)
SELECT moved.id, pg_notify($12, moved.event) FROM moved
"""

_END: Final = """
WITH moved AS (
    UPDATE generations
    SET status = $2, error = $3,
        finished_at = CASE WHEN $4 THEN now() END,
        gpu_seconds = coalesce(gpu_seconds, 0) + $5
    WHERE id = $1 AND status IN ('queued', 'running')
    RETURNING id
)
SELECT moved.id, CASE WHEN $7::text IS NOT NULL THEN pg_notify($6, $7) END FROM moved
"""

# Progress of running generations (NULL fraction: no news, just asking for the status), the
# NOTIFY of each one that moved, and the status of every generation asked about.
_SYNC_RUNNING: Final = f"""
WITH batch AS (
    SELECT * FROM unnest($1::uuid[], $2::float8[], $3::text[]) AS b(id, fraction, event)
), moved AS (
    UPDATE generations AS g
    SET progress = b.fraction
    FROM batch AS b, {_RELAXED}
    WHERE g.id = b.id AND b.fraction IS NOT NULL AND g.status = 'running'
    RETURNING g.id, b.event
)
SELECT g.id, g.status, (SELECT pg_notify($4, m.event) FROM moved AS m WHERE m.id = g.id)
FROM generations AS g JOIN batch USING (id)
"""

_SOURCE_IMAGE_KEY: Final = """
SELECT storage_key FROM images WHERE generation_id = $1 AND "index" = $2
"""


_SOURCE_IMAGE_KEYS: Final = """
SELECT storage_key, clean_key FROM images WHERE generation_id = $1 AND "index" = $2
"""


def _event(type_: EventType, generation_id: uuid.UUID, platform: str) -> str:
    return Event(type_, generation_id, platform).encode()


async def start_many(sql: Sql, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StartedJob]:
    """Mark the generations running and count their attempts; those no longer runnable
    (cancelled while waiting, finished by another worker) are left out."""
    rows = await sql.fetch(_START, list(ids))
    return {
        row["id"]: StartedJob(
            row["id"],
            GenerationKind(row["kind"]),
            row["platform"],
            params_from_json(json.loads(row["params"])),
            row["attempts"],
            row["parent_id"],
            row["source_index"],
        )
        for row in rows
    }


async def start(sql: Sql, generation_id: uuid.UUID) -> StartedJob | None:
    """``start_many`` for one generation; None if it's no longer runnable."""
    return (await start_many(sql, [generation_id])).get(generation_id)


async def source_image_key(sql: Sql, generation_id: uuid.UUID, index: int) -> str | None:
    key: str | None = await sql.fetchval(_SOURCE_IMAGE_KEY, generation_id, index)
    return key


async def source_image_keys(
    sql: Sql, generation_id: uuid.UUID, index: int
) -> tuple[str, str | None] | None:
    """The keys of a source image and of its logo-free master (``None`` without one): an
    upscale or a variation starts from the master, so the source's logo is not carried into it
    under its own; the original gives its ``parameters``."""
    row = await sql.fetchrow(_SOURCE_IMAGE_KEYS, generation_id, index)
    return None if row is None else (row["storage_key"], row["clean_key"])


async def sync_running(
    sql: Sql,
    generations: Iterable[uuid.UUID],
    progress: Mapping[uuid.UUID, tuple[float, str]],
) -> dict[uuid.UUID, GenerationStatus]:
    """Store and NOTIFY the progress of running generations; return the status of every one
    in ``generations`` and ``progress`` (a cancelled one is never written to)."""
    ids = list(dict.fromkeys([*progress, *generations]))
    if not ids:
        return {}
    fractions = [progress[gid][0] if gid in progress else None for gid in ids]
    events = [_event("progress", gid, progress[gid][1]) if gid in progress else None for gid in ids]
    rows = await sql.fetch(_SYNC_RUNNING, ids, fractions, events, CHANNEL)
    return {row["id"]: GenerationStatus(row["status"]) for row in rows}


@dataclass(frozen=True)
class Finished:
    """A job whose images are all durably stored, ready to be marked done."""

    job: StartedJob
    images: Sequence[StoredImage]
    gpu_seconds: float


async def finish_many(sql: Sql, finished: Sequence[Finished]) -> set[uuid.UUID]:
    """Record the stored images, mark the generations done and NOTIFY each, in one atomic
    statement; return the ids that were done here (not those cancelled or finished elsewhere
    meanwhile, whose images are not recorded)."""
    if not finished:
        return set()
    images = [(f.job.id, image) for f in finished for image in f.images]
    rows = await sql.fetch(
        _FINISH,
        [f.job.id for f in finished],
        [f.gpu_seconds for f in finished],
        [_event("done", f.job.id, f.job.platform) for f in finished],
        [gid for gid, _ in images],
        [i.index for _, i in images],
        [i.storage_key for _, i in images],
        [i.sha256 for _, i in images],
        [i.width for _, i in images],
        [i.height for _, i in images],
        [i.size for _, i in images],
        [i.palette_score for _, i in images],
        CHANNEL,
        [i.phash for _, i in images],
        [i.clean_key for _, i in images],
    )
    return {row["id"] for row in rows}


async def finish(
    sql: Sql, job: StartedJob, images: Sequence[StoredImage], gpu_seconds: float
) -> bool:
    """``finish_many`` for one job; False if it was cancelled (or finished elsewhere)."""
    return job.id in await finish_many(sql, [Finished(job, images, gpu_seconds)])


async def charge_cancelled(sql: Sql, generation_id: uuid.UUID, gpu_seconds: float) -> None:
    """Charge the GPU time a job used before it saw that it was cancelled (the cancel itself
    ended the generation, so ``end`` no longer writes to it)."""
    await sql.fetchval(
        "UPDATE generations SET gpu_seconds = coalesce(gpu_seconds, 0) + $2 "
        "WHERE id = $1 AND status = 'cancelled' RETURNING id",
        generation_id,
        gpu_seconds,
    )


async def end_cancelled(sql: Sql, job: StartedJob, gpu_seconds: float) -> None:
    """End a job the engine stopped for a cancel, charged for the GPU time it used, whether the
    cancel already ended it (a button) or not yet."""
    if not await end(sql, job, GenerationStatus.CANCELLED, None, gpu_seconds):
        await charge_cancelled(sql, job.id, gpu_seconds)


async def end(
    sql: Sql,
    job: StartedJob,
    status: GenerationStatus,
    error: str | None,
    gpu_seconds: float = 0.0,
) -> bool:
    """End a running generation as failed or cancelled (or put it back to queued for a retry),
    with its event when it ended."""
    event: str | None = None
    if status.finished:
        type_: EventType = "failed" if status is GenerationStatus.FAILED else "cancelled"
        event = _event(type_, job.id, job.platform)
    row = await sql.fetchrow(
        _END, job.id, status.value, error, status.finished, gpu_seconds, CHANNEL, event
    )
    return row is not None
