"""The generation queue on pgqueuer, inside the unit of work's transaction.

A job is a row in pgqueuer's table: entrypoint ``generate``, payload the generation id as ASCII,
and ``dedupe_key`` the same id, so a generation finds its job without a mapping table (and can't
be queued twice while its job waits or runs). ``PgJobQueue`` is bound to the asyncpg connection
that carries the unit of work's SQLAlchemy session: a generation row and its job commit together
or not at all. Workers claim jobs with pgqueuer's own dequeue, ordered by priority (higher first),
then arrival; ``position`` counts in that same order.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.domain.settings import DBSettings, db_settings

from core.db.models import OPTIONAL_INDEXES, OPTIONAL_TABLES

if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]  # no stubs

__all__ = [
    "ACTIVE_WORKER_WINDOW",
    "ETA_HISTORY",
    "GENERATE",
    "PgJobQueue",
    "include_name",
    "queue_table_names",
]

GENERATE: Final = "generate"
"""pgqueuer entrypoint of a generation job."""

ETA_HISTORY: Final = 50
"""How many recent finished generations of a model the ETA takes its median from."""

ACTIVE_WORKER_WINDOW: Final = timedelta(minutes=2)
"""A worker counts as active when it heart-beat a picked job this recently."""


def queue_table_names(settings: DBSettings | None = None) -> frozenset[str]:
    """The tables pgqueuer installs (Alembic leaves them to pgqueuer)."""
    s = settings or db_settings()
    return frozenset({s.queue_table, s.queue_table_log, s.statistics_table, s.schedules_table})


def include_name(name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
    """Alembic ``include_name`` hook: compare every table except pgqueuer's own, and every
    index and table except those that depend on an optional extension
    (``models.OPTIONAL_INDEXES``, ``models.OPTIONAL_TABLES``)."""
    if type_ == "index" and name in OPTIONAL_INDEXES:
        return False
    if type_ == "table" and name in OPTIONAL_TABLES:
        return False
    return not (type_ == "table" and name in queue_table_names())


class PgJobQueue:
    """``JobQueue`` on pgqueuer over one asyncpg connection (the unit of work's)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.queries = Queries.from_asyncpg_connection(connection)
        settings = self.queries.qbq.settings
        self._table = settings.qualified.queue_table
        self._log_table = settings.qualified.queue_table_log
        self._status_type = settings.qualified.queue_status_type

    async def enqueue(self, generation_id: uuid.UUID, *, priority: int) -> None:
        """Queue a job; ``pgqueuer.errors.DuplicateJobError`` if this generation's job exists."""
        key = str(generation_id)
        await self.queries.enqueue(GENERATE, key.encode("ascii"), priority, dedupe_key=key)

    async def remove(self, generation_id: uuid.UUID) -> bool:
        """Delete the job while it is still queued (logged as 'deleted', as pgqueuer does)."""
        removed = await self.connection.fetchval(
            f"""
            WITH deleted AS (
                DELETE FROM {self._table}
                WHERE dedupe_key = $1 AND entrypoint = $2 AND status = 'queued'
                RETURNING id, entrypoint, priority
            ), logged AS (
                INSERT INTO {self._log_table} (job_id, status, entrypoint, priority)
                SELECT id, 'deleted'::{self._status_type}, entrypoint, priority FROM deleted
            )
            SELECT count(*) FROM deleted
            """,
            str(generation_id),
            GENERATE,
        )
        return bool(removed)

    async def position(self, generation_id: uuid.UUID) -> int | None:
        """1 + queued jobs that pgqueuer claims first (priority DESC, id ASC)."""
        position: int | None = await self.connection.fetchval(
            f"""
            SELECT 1 + (
                SELECT count(*) FROM {self._table} ahead
                WHERE ahead.entrypoint = job.entrypoint
                  AND ahead.status = 'queued'
                  AND (ahead.priority > job.priority
                       OR (ahead.priority = job.priority AND ahead.id < job.id))
            )
            FROM {self._table} job
            WHERE job.dedupe_key = $1 AND job.entrypoint = $2 AND job.status = 'queued'
            """,
            str(generation_id),
            GENERATE,
        )
        return position

    async def eta_seconds(self, generation_id: uuid.UUID) -> float | None:
        """position × median run time of the model's last finished generations ÷ active workers.

        Workers are the queue managers holding a recently heart-beaten job: while this job
        waits, an idle worker would have claimed it, so busy workers are the live ones.
        """
        position = await self.position(generation_id)
        if position is None:
            return None
        row = await self.connection.fetchrow(
            f"""
            SELECT
                (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY recent.seconds)
                 FROM (
                     SELECT extract(epoch FROM done.finished_at - done.started_at) AS seconds
                     FROM generations done
                     WHERE done.status = 'done'
                       AND done.params->>'model' = target.params->>'model'
                       AND done.started_at IS NOT NULL
                       AND done.finished_at IS NOT NULL
                     ORDER BY done.finished_at DESC
                     LIMIT $2
                 ) recent) AS median_seconds,
                (SELECT count(DISTINCT queue_manager_id) FROM {self._table}
                 WHERE status = 'picked' AND queue_manager_id IS NOT NULL
                   AND heartbeat > now() - $3::interval) AS workers
            FROM generations target
            WHERE target.id = $1
            """,
            generation_id,
            ETA_HISTORY,
            ACTIVE_WORKER_WINDOW,
        )
        if row is None or row["median_seconds"] is None:
            return None
        return position * float(row["median_seconds"]) / max(1, int(row["workers"]))
