"""Finding a generation by the start of its id, as a person copies it from a terminal."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from core.db.database import Database


async def generations_starting(db: Database, prefix: str, limit: int = 2) -> list[uuid.UUID]:
    """Ids of generations whose text form starts with ``prefix`` (lower-case hex and dashes),
    at most ``limit`` of them (two tell "one" from "ambiguous")."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id FROM generations WHERE id::text LIKE :pattern "
                "ORDER BY queued_at LIMIT :limit"
            ),
            {"pattern": prefix + "%", "limit": limit},
        )
        return [row.id for row in rows]
