"""The ``uploads`` rows (``core.ports.UploadRecords`` on PostgreSQL).

An upload is recorded after its clean PNG is durably in the image store, in one transaction with
the user's row: a failure leaves no row. A file whose row never came (the process died between
the two) is an unreferenced, content-addressed blob: harmless, and the same picture sent again
reuses it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert

from core.db import models as m
from core.db.database import Database
from core.db.repository import SqlRepository
from core.domain import FeedbackKind, NewUpload, Upload

__all__ = ["SqlUploads", "upload_from_row"]


def upload_from_row(row: m.Upload) -> Upload:
    notes: Any = row.notes.get("notes", []) if isinstance(row.notes, dict) else []
    return Upload(
        id=row.id,
        sha256=row.sha256,
        storage_key=row.storage_key,
        mime=row.mime,
        width=row.width,
        height=row.height,
        size=row.bytes,
        has_alpha=row.has_alpha,
        notes=tuple(str(note) for note in notes),
    )


class SqlUploads:
    """Uploads in PostgreSQL; each call is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, upload: NewUpload) -> Upload:
        async with self._db.transaction() as session:
            user_id = await SqlRepository(session).ensure_user(upload.actor)
            where = upload.where
            row = (
                await session.execute(
                    insert(m.Upload)
                    .values(
                        user_id=user_id,
                        platform=upload.actor.platform.value,
                        workspace_external_id=upload.actor.workspace_id,
                        channel_id=where.channel_id if where is not None else None,
                        campaign_id=upload.campaign_id,
                        sha256=upload.sha256,
                        storage_key=upload.storage_key,
                        mime=upload.mime,
                        bytes=upload.size,
                        width=upload.width,
                        height=upload.height,
                        has_alpha=upload.has_alpha,
                        notes={"notes": list(upload.notes)},
                    )
                    .returning(m.Upload)
                )
            ).scalar_one()
            return upload_from_row(row)

    async def image_key(self, generation_id: uuid.UUID, index: int) -> str | None:
        async with self._db.sessions() as session:
            key: str | None = await session.scalar(
                select(m.Image.storage_key).where(
                    m.Image.generation_id == generation_id, m.Image.index == index
                )
            )
            return key

    async def clean_key(self, generation_id: uuid.UUID, index: int) -> str | None:
        async with self._db.sessions() as session:
            key: str | None = await session.scalar(
                select(m.Image.clean_key).where(
                    m.Image.generation_id == generation_id, m.Image.index == index
                )
            )
            return key

    async def approvals(self, generation_id: uuid.UUID, index: int) -> int:
        image = (
            select(m.Image.id)
            .where(m.Image.generation_id == generation_id, m.Image.index == index)
            .scalar_subquery()
        )
        async with self._db.sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(m.Feedback)
                .where(
                    m.Feedback.generation_id == generation_id,
                    m.Feedback.kind == FeedbackKind.APPROVE,
                    or_(m.Feedback.image_id.is_(None), m.Feedback.image_id == image),
                )
            )
            return int(count or 0)

    async def get(self, upload_id: int) -> Upload | None:
        async with self._db.sessions() as session:
            row = (
                await session.execute(select(m.Upload).where(m.Upload.id == upload_id))
            ).scalar_one_or_none()
            return upload_from_row(row) if row is not None else None
