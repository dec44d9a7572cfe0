"""Queries for delivering finished generations to the chat they came from."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from core.db.database import Database
from core.db.models import Generation as GenerationRow
from core.db.models import Image as ImageRow
from core.db.models import Message as MessageRow
from core.domain import GenerationStatus, MessageRef, Platform

FINISHED = (GenerationStatus.DONE, GenerationStatus.FAILED, GenerationStatus.CANCELLED)


async def undelivered(db: Database, platform: Platform, limit: int = 50) -> list[uuid.UUID]:
    """Finished generations of this platform whose result hasn't been posted, oldest first."""
    async with db.sessions() as session:
        rows = await session.scalars(
            select(GenerationRow.id)
            .where(
                GenerationRow.platform == platform.value,
                GenerationRow.delivered_at.is_(None),
                GenerationRow.status.in_(FINISHED),
            )
            .order_by(GenerationRow.finished_at)
            .limit(limit)
        )
        return list(rows)


async def mark_delivered(db: Database, generation_id: uuid.UUID) -> float | None:
    """Mark the result posted; the delivery lag in seconds (finished → posted), None if it
    was already marked."""
    async with db.transaction() as session:
        row = (
            await session.execute(
                update(GenerationRow)
                .where(GenerationRow.id == generation_id, GenerationRow.delivered_at.is_(None))
                .values(delivered_at=func.now())
                .returning(GenerationRow.id, GenerationRow.finished_at)
            )
        ).one_or_none()
    if row is None:
        return None
    if row.finished_at is None:
        return 0.0
    lag: float = (datetime.now(UTC) - row.finished_at).total_seconds()
    return max(0.0, lag)


async def image_keys(db: Database, generation_id: uuid.UUID) -> list[str]:
    async with db.sessions() as session:
        rows = await session.scalars(
            select(ImageRow.storage_key)
            .where(ImageRow.generation_id == generation_id)
            .order_by(ImageRow.index)
        )
        return list(rows)


async def status_message(db: Database, generation_id: uuid.UUID) -> MessageRef | None:
    """The 'Queued…' message the adapter posted for this generation, if any."""
    async with db.sessions() as session:
        row = (
            await session.execute(
                select(MessageRow.platform, MessageRow.channel_id, MessageRow.message_id)
                .where(MessageRow.generation_id == generation_id, MessageRow.role == "status")
                .order_by(MessageRow.id.desc())
                .limit(1)
            )
        ).one_or_none()
    return (
        None if row is None else MessageRef(Platform(row.platform), row.channel_id, row.message_id)
    )


async def progress(db: Database, generation_id: uuid.UUID) -> float:
    async with db.sessions() as session:
        value = await session.scalar(
            select(GenerationRow.progress).where(GenerationRow.id == generation_id)
        )
    return float(value or 0.0)


async def is_delivered(db: Database, generation_id: uuid.UUID) -> bool:
    async with db.sessions() as session:
        delivered = await session.scalar(
            select(GenerationRow.delivered_at).where(GenerationRow.id == generation_id)
        )
    return delivered is not None
