"""The worker's side of the records: start, progress, finish, fail — each one statement or one
transaction, each guarded by the generation's status so a job that was cancelled, or finished by
another worker after a crash, is never overwritten."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from core.db.database import Database
from core.db.models import Generation as GenerationRow
from core.db.models import Image as ImageRow
from core.db.repository import params_from_json
from core.domain import GenerationKind, GenerationStatus, Params
from core.events import Event, EventType, publish

RUNNABLE = (GenerationStatus.QUEUED, GenerationStatus.RUNNING)


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


async def _notify(session: Any, type_: EventType, generation_id: uuid.UUID, platform: str) -> None:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    await publish(raw.driver_connection, Event(type_, generation_id, platform))


async def start(db: Database, generation_id: uuid.UUID) -> StartedJob | None:
    """Mark the generation running and count the attempt; None if it's no longer runnable."""
    async with db.transaction() as session:
        row = (
            await session.execute(
                update(GenerationRow)
                .where(GenerationRow.id == generation_id, GenerationRow.status.in_(RUNNABLE))
                .values(
                    status=GenerationStatus.RUNNING,
                    attempts=GenerationRow.attempts + 1,
                    started_at=func.coalesce(GenerationRow.started_at, func.now()),
                )
                .returning(
                    GenerationRow.kind,
                    GenerationRow.platform,
                    GenerationRow.params,
                    GenerationRow.attempts,
                    GenerationRow.parent_id,
                    GenerationRow.source_index,
                )
            )
        ).one_or_none()
    if row is None:
        return None
    return StartedJob(
        generation_id,
        row.kind,
        row.platform,
        params_from_json(row.params),
        row.attempts,
        row.parent_id,
        row.source_index,
    )


async def source_image_key(db: Database, generation_id: uuid.UUID, index: int) -> str | None:
    async with db.sessions() as session:
        key: str | None = await session.scalar(
            select(ImageRow.storage_key).where(
                ImageRow.generation_id == generation_id, ImageRow.index == index
            )
        )
    return key


async def write_progress(
    db: Database, progress: Mapping[uuid.UUID, tuple[float, str]]
) -> set[uuid.UUID]:
    """Store progress of running generations, NOTIFY it; return those that were cancelled."""
    if not progress:
        return set()
    cancelled: set[uuid.UUID] = set()
    async with db.transaction() as session:
        for generation_id, (fraction, platform) in progress.items():
            status = await session.scalar(
                update(GenerationRow)
                .where(GenerationRow.id == generation_id)
                .values(progress=fraction)
                .returning(GenerationRow.status)
            )
            if status is GenerationStatus.CANCELLED:
                cancelled.add(generation_id)
            elif status is GenerationStatus.RUNNING:
                await _notify(session, "progress", generation_id, platform)
    return cancelled


async def status_of(db: Database, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, GenerationStatus]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(GenerationRow.id, GenerationRow.status).where(GenerationRow.id.in_(ids))
        )
        return {r.id: r.status for r in rows}


async def finish(
    db: Database,
    job: StartedJob,
    images: Sequence[StoredImage],
    gpu_seconds: float,
) -> bool:
    """Record the stored images and mark the generation done, atomically; False if it was
    cancelled (or finished elsewhere) meanwhile."""
    async with db.transaction() as session:
        moved = await session.scalar(
            update(GenerationRow)
            .where(GenerationRow.id == job.id, GenerationRow.status == GenerationStatus.RUNNING)
            .values(
                status=GenerationStatus.DONE,
                progress=1.0,
                error=None,
                finished_at=func.now(),
                gpu_seconds=func.coalesce(GenerationRow.gpu_seconds, 0) + gpu_seconds,
            )
            .returning(GenerationRow.id)
        )
        if moved is None:
            return False
        if images:
            await session.execute(
                insert(ImageRow)
                .values(
                    [
                        {
                            "generation_id": job.id,
                            "index": image.index,
                            "storage_key": image.storage_key,
                            "sha256": image.sha256,
                            "width": image.width,
                            "height": image.height,
                            "bytes": image.size,
                            "palette_score": image.palette_score,
                        }
                        for image in images
                    ]
                )
                .on_conflict_do_nothing(index_elements=["generation_id", "index"])
            )
        await _notify(session, "done", job.id, job.platform)
    return True


async def end(
    db: Database,
    job: StartedJob,
    status: GenerationStatus,
    error: str | None,
    gpu_seconds: float = 0.0,
) -> bool:
    """End a running generation as failed or cancelled (or put it back to queued for a retry)."""
    async with db.transaction() as session:
        moved = await session.scalar(
            update(GenerationRow)
            .where(GenerationRow.id == job.id, GenerationRow.status.in_(RUNNABLE))
            .values(
                status=status,
                error=error,
                finished_at=None if status is GenerationStatus.QUEUED else func.now(),
                gpu_seconds=func.coalesce(GenerationRow.gpu_seconds, 0) + gpu_seconds,
            )
            .returning(GenerationRow.id)
        )
        if moved is not None and status.finished:
            event: EventType = "failed" if status is GenerationStatus.FAILED else "cancelled"
            await _notify(session, event, job.id, job.platform)
    return moved is not None


async def add_gpu_seconds(db: Database, generation_id: uuid.UUID, seconds: float) -> None:
    async with db.transaction() as session:
        await session.execute(
            text(
                "UPDATE generations SET gpu_seconds = coalesce(gpu_seconds, 0) + :s WHERE id = :id"
            ),
            {"s": seconds, "id": generation_id},
        )
