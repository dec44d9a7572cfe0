"""The ``style_codes`` rows (``core.service.styles`` on PostgreSQL); each call one transaction.

A code is created once (``INSERT … ON CONFLICT DO NOTHING``: registering the same images for the
same brand and workspace again finds the existing code) and retired, never deleted: generations
keep naming it. Registering a retired code's images again brings it back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from core.brand.styles import StyleCodeInfo
from core.db import models_brand as b
from core.db.database import Database

__all__ = ["SqlStyleCodes"]


def _info(row: b.StyleCode) -> StyleCodeInfo:
    refs: Any = row.images or []
    workspace = (row.platform, row.workspace_external_id)
    return StyleCodeInfo(
        code=row.code,
        brand=row.brand,
        label=row.label,
        references=tuple((str(r["sha256"]), str(r["key"])) for r in refs),
        created_by=row.created_by,
        created_at=row.created_at,
        workspace=None if None in workspace else (str(workspace[0]), str(workspace[1])),
        retired_at=row.retired_at,
        retired_by=row.retired_by,
    )


class SqlStyleCodes:
    """Style codes in PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, info: StyleCodeInfo) -> tuple[StyleCodeInfo, bool]:
        """The code as stored, and whether this call created (or un-retired) it."""
        platform, workspace = info.workspace or (None, None)
        async with self._db.transaction() as session:
            created = (
                await session.execute(
                    insert(b.StyleCode)
                    .values(
                        code=info.code,
                        brand=info.brand,
                        platform=platform,
                        workspace_external_id=workspace,
                        label=info.label,
                        images=[{"sha256": s, "key": k} for s, k in info.references],
                        created_by=info.created_by,
                    )
                    .on_conflict_do_nothing(index_elements=["code"])
                    .returning(b.StyleCode.code)
                )
            ).scalar_one_or_none() is not None
            if not created:
                revived = await session.execute(
                    update(b.StyleCode)
                    .where(b.StyleCode.code == info.code, b.StyleCode.retired_at.is_not(None))
                    .values(retired_at=None, retired_by=None)
                    .returning(b.StyleCode.code)
                )
                created = revived.scalar_one_or_none() is not None
            row = await session.get(b.StyleCode, info.code, populate_existing=True)
            assert row is not None
            return _info(row), created

    async def get(self, code: str) -> StyleCodeInfo | None:
        async with self._db.transaction() as session:
            row = await session.get(b.StyleCode, code)
            return None if row is None else _info(row)

    async def list(self, brand: str | None = None, *, retired: bool = False) -> list[StyleCodeInfo]:
        query = select(b.StyleCode).order_by(b.StyleCode.brand, b.StyleCode.created_at)
        if brand is not None:
            query = query.where(func.lower(b.StyleCode.brand) == brand.casefold())
        if not retired:
            query = query.where(b.StyleCode.retired_at.is_(None))
        async with self._db.transaction() as session:
            return [_info(row) for row in (await session.scalars(query)).all()]

    async def retire(self, code: str, by: str) -> StyleCodeInfo | None:
        """Retire ``code`` (already retired: unchanged); ``None`` when there is no such code."""
        async with self._db.transaction() as session:
            await session.execute(
                update(b.StyleCode)
                .where(b.StyleCode.code == code, b.StyleCode.retired_at.is_(None))
                .values(retired_at=func.now(), retired_by=by)
            )
            row = await session.get(b.StyleCode, code, populate_existing=True)
            return None if row is None else _info(row)
