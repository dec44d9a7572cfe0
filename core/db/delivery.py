"""Queries for delivering finished generations to the chat they came from.

A failed post is counted and waits before its next try (``delivery_retry_at``); a result given
up (``undeliverable``: the channel is gone, or too many failures) is never tried again, so failing
results never keep deliverable ones waiting. The first try's start is kept
(``delivery_began_at``): a later try looks whether it posted after all before posting again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import func, or_, select, update

from core.db.database import Database
from core.db.models import Generation as GenerationRow
from core.db.models import Image as ImageRow
from core.db.models import Message as MessageRow
from core.domain import GenerationStatus, MessageRef, Platform

FINISHED = (GenerationStatus.DONE, GenerationStatus.FAILED, GenerationStatus.CANCELLED)


# A result is due: not posted, not given up, not waiting for its next try.
_DUE = (
    GenerationRow.delivered_at.is_(None),
    GenerationRow.undeliverable.is_(None),
    or_(
        GenerationRow.delivery_retry_at.is_(None),
        GenerationRow.delivery_retry_at <= func.now(),
    ),
)


async def undelivered(db: Database, platform: Platform, limit: int = 50) -> list[uuid.UUID]:
    """Finished generations of this platform whose result is due, oldest first."""
    async with db.sessions() as session:
        rows = await session.scalars(
            select(GenerationRow.id)
            .where(
                GenerationRow.platform == platform.value,
                GenerationRow.status.in_(FINISHED),
                *_DUE,
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


class Due(NamedTuple):
    earlier: datetime | None  # when an earlier attempt to post began (it may have posted)


async def begin_delivery(db: Database, generation_id: uuid.UUID) -> Due | None:
    """An attempt to post the result begins: None when it is no longer due (a sweep's list read
    a moment ago may name one that another attempt has since posted, given up, or put off until
    its next try). The first attempt's start is kept (``delivery_began_at``); a later attempt is
    told when it was, so that it looks whether that one posted before it posts again."""
    async with db.transaction() as session:
        row = (
            await session.execute(
                select(GenerationRow.delivery_began_at)
                .where(GenerationRow.id == generation_id, *_DUE)
                .with_for_update(key_share=True)  # FOR NO KEY UPDATE
            )
        ).first()
        if row is None:
            return None
        if row.delivery_began_at is None:
            await session.execute(
                update(GenerationRow)
                .where(GenerationRow.id == generation_id)
                .values(delivery_began_at=func.now())
            )
        return Due(earlier=row.delivery_began_at)


class FailedDelivery(NamedTuple):
    attempts: int  # failed attempts so far
    gave_up: bool  # no further try: ``undeliverable`` says why


async def delivery_failed(
    db: Database,
    generation_id: uuid.UUID,
    reason: str,
    *,
    permanent: bool,
    max_attempts: int,
    retry_in: Callable[[int], timedelta],
) -> FailedDelivery:
    """Count a failed post. A permanent refusal, or the ``max_attempts``-th failure, gives the
    result up with ``reason``; otherwise the next try waits ``retry_in(attempts)``."""
    async with db.transaction() as session:
        attempts = await session.scalar(
            update(GenerationRow)
            .where(GenerationRow.id == generation_id, GenerationRow.delivered_at.is_(None))
            .values(delivery_attempts=GenerationRow.delivery_attempts + 1)
            .returning(GenerationRow.delivery_attempts)
        )
        if attempts is None:  # posted meanwhile by another process
            return FailedDelivery(0, gave_up=False)
        gave_up = permanent or attempts >= max_attempts
        if gave_up:
            why = reason if permanent else f"gave up after {attempts} attempts: {reason}"
            values: dict[str, object] = {"undeliverable": why[:2000], "delivery_retry_at": None}
        else:
            values = {"delivery_retry_at": func.now() + retry_in(attempts)}
        await session.execute(
            update(GenerationRow).where(GenerationRow.id == generation_id).values(**values)
        )
    return FailedDelivery(attempts, gave_up)


class GivenUp(NamedTuple):
    generation_id: uuid.UUID
    platform: str
    reason: str
    finished_at: datetime | None


async def given_up(db: Database, *, since: datetime, limit: int = 20) -> tuple[int, list[GivenUp]]:
    """Results given up since ``since``: how many, and the newest ``limit`` of them."""
    where = (GenerationRow.undeliverable.is_not(None), GenerationRow.finished_at >= since)
    async with db.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(GenerationRow).where(*where))
        rows = await session.execute(
            select(
                GenerationRow.id,
                GenerationRow.platform,
                GenerationRow.undeliverable,
                GenerationRow.finished_at,
            )
            .where(*where)
            .order_by(GenerationRow.finished_at.desc())
            .limit(limit)
        )
        return int(count or 0), [GivenUp(r[0], r[1], str(r[2]), r[3]) for r in rows]
