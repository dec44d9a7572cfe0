"""What verify asks the records: which image a watermark id or a signed generation id names,
with its generation, campaign, who made it (as a pseudonym), when, approvals and lineage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import text

from core.db.database import Database

_FIND: Final = """
WITH RECURSIVE hit AS (
    SELECT i.id AS image_id, i.generation_id, i."index", i.watermark_id
    FROM images i
    WHERE (CAST(:wid AS bigint) IS NOT NULL AND i.watermark_id = :wid)
       OR (CAST(:gid AS uuid) IS NOT NULL AND i.generation_id = :gid AND i."index" = :idx)
    LIMIT 5
), lineage AS (
    -- "used": which image of this generation its child was made from
    SELECT h.image_id, g.id, g.parent_id, g.source_index, g.kind, 0 AS depth, h."index" AS used
    FROM hit h JOIN generations g ON g.id = h.generation_id
    UNION ALL
    SELECT l.image_id, p.id, p.parent_id, p.source_index, p.kind, l.depth + 1, l.source_index
    FROM lineage l JOIN generations p ON p.id = l.parent_id
    WHERE l.depth < 32
)
SELECT h."index", h.watermark_id, g.id AS generation_id, g.kind, g.status, g.queued_at,
       g.platform, g.preset_name, c.name AS campaign, w.external_id AS workspace,
       'user-' || left(encode(sha256(convert_to(
           u.platform || ':' || w.external_id || ':' || u.external_id, 'UTF8')), 'hex'), 10)
           AS made_by,
       (SELECT count(*) FROM feedback f
         WHERE f.generation_id = g.id AND f.kind = 'approve'
           AND (f.image_id IS NULL OR f.image_id = h.image_id)) AS approvals,
       ARRAY(SELECT l.kind || ' ' || l.id::text || coalesce('#' || l.used, '')
             FROM lineage l WHERE l.image_id = h.image_id AND l.depth > 0
             ORDER BY l.depth) AS lineage
FROM hit h
JOIN generations g ON g.id = h.generation_id
JOIN users u ON u.id = g.user_id
JOIN workspaces w ON w.id = u.workspace_id
LEFT JOIN campaigns c ON c.id = g.campaign_id
ORDER BY g.queued_at DESC
"""


@dataclass(frozen=True)
class ImageRecord:
    generation_id: uuid.UUID
    index: int
    watermark_id: int
    kind: str
    status: str
    made_at: datetime
    platform: str
    workspace: str  # the platform's id of the workspace (Slack team, Discord guild) that made it
    preset: str
    campaign: str | None
    made_by: str  # a pseudonym, the reports' formula
    approvals: int
    lineage: tuple[str, ...]  # "kind <generation>#<image>" of each ancestor image, parent first


async def find_images(
    db: Database,
    *,
    watermark_id: int | None = None,
    generation_id: uuid.UUID | None = None,
    index: int | None = None,
) -> list[ImageRecord]:
    """The images (at most 5) a watermark id, or a generation id and index, names."""
    async with db.sessions() as session:
        rows = (
            await session.execute(
                text(_FIND),
                {"wid": watermark_id, "gid": generation_id, "idx": index},
            )
        ).mappings()
        return [
            ImageRecord(
                generation_id=row["generation_id"],
                index=row["index"],
                watermark_id=row["watermark_id"],
                kind=row["kind"],
                status=row["status"],
                made_at=row["queued_at"],
                platform=row["platform"],
                workspace=row["workspace"],
                preset=row["preset_name"],
                campaign=row["campaign"],
                made_by=row["made_by"],
                approvals=row["approvals"],
                lineage=tuple(row["lineage"]),
            )
            for row in rows
        ]
