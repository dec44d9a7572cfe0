"""Near-duplicates by perceptual hash: an image approved in one campaign that is (almost) the
same picture as one already approved in another, and clusters of near-duplicates for reports.

Two originals are near-duplicates when their 64-bit pHashes differ in at most
``NEAR_DUPLICATE_BITS`` bits: the same picture re-encoded, resized, lightened or lightly edited.
Approved images are few, so both queries start from the approvals (image- or grid-level) and
compare hashes among them, not across every image.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.memory.model import NEAR_DUPLICATE_BITS, ImageRef, Scope
from core.memory.search import PSEUDONYM_SQL

__all__ = ["Duplicate", "approved_elsewhere", "clusters"]

# Approved images (an approval on a grid approves each of its images), with their campaign.
_APPROVED = """
approved AS MATERIALIZED (
    SELECT DISTINCT ON (x.id) x.id, x.generation_id, x.index, x.phash, g.campaign_id,
           x.approved_at, x.approver
    FROM (
        SELECT im.id, im.generation_id, im.index, im.phash, f.created_at AS approved_at,
               f.user_id AS approver
        FROM feedback f JOIN images im ON im.id = f.image_id
        WHERE f.kind = 'approve' AND f.image_id IS NOT NULL
        UNION ALL
        SELECT im.id, im.generation_id, im.index, im.phash, f.created_at, f.user_id
        FROM feedback f JOIN images im ON im.generation_id = f.generation_id
        WHERE f.kind = 'approve' AND f.image_id IS NULL
    ) x
    JOIN generations g ON g.id = x.generation_id
    WHERE x.phash IS NOT NULL
    ORDER BY x.id, x.approved_at
)"""

_ELSEWHERE = (
    "WITH "
    + _APPROVED
    + """
SELECT mine.index AS mine, a.generation_id, a.index, c.name AS campaign, a.approved_at,
       {pseudonym} AS approver,
       bit_count((a.phash # mine.phash)::bit(64)) AS distance
FROM images mine
JOIN generations mg ON mg.id = mine.generation_id
JOIN approved a ON a.id <> mine.id
               AND a.campaign_id IS DISTINCT FROM mg.campaign_id
               AND bit_count((a.phash # mine.phash)::bit(64)) <= :bits
JOIN campaigns c ON c.id = a.campaign_id
JOIN generations ag ON ag.id = a.generation_id
JOIN users owner ON owner.id = ag.user_id
JOIN workspaces ow ON ow.id = owner.workspace_id
JOIN users u ON u.id = a.approver
JOIN workspaces w ON w.id = u.workspace_id
WHERE mine.generation_id = :gen AND mine.phash IS NOT NULL {index} {scope}
ORDER BY distance, a.approved_at
LIMIT 5
"""
)


@dataclass(frozen=True)
class Duplicate:
    """``image`` (one of ours) looks like ``other``, approved in ``campaign``."""

    index: int
    other: ImageRef
    campaign: str
    approved_at: datetime
    approver: str  # pseudonym
    distance: int


async def approved_elsewhere(
    session: AsyncSession, generation_id: uuid.UUID, index: int | None, scope: Scope
) -> list[Duplicate]:
    """Images approved in another campaign (in ``scope``) that are near-duplicates of
    ``generation_id``'s image ``index`` (every image of it when None)."""
    params: dict[str, object] = {"gen": generation_id, "bits": NEAR_DUPLICATE_BITS}
    where_index = ""
    if index is not None:
        where_index = "AND mine.index = :index"
        params["index"] = index
    where_scope = ""
    if not scope.everywhere:
        where_scope = "AND ow.platform = :platform AND ow.external_id = :workspace"
        params |= {"platform": scope.platform, "workspace": scope.workspace}
    sql = _ELSEWHERE.format(pseudonym=PSEUDONYM_SQL, index=where_index, scope=where_scope)
    rows = (await session.execute(text(sql), params)).mappings().all()
    return [
        Duplicate(
            r["mine"],
            ImageRef(r["generation_id"], r["index"]),
            r["campaign"],
            r["approved_at"],
            r["approver"],
            r["distance"],
        )
        for r in rows
    ]


_CLUSTERS = (
    "WITH "
    + _APPROVED
    + """,
ours AS (SELECT * FROM approved WHERE campaign_id = :cid)
SELECT o.generation_id::text AS generation_id, o.index,
       json_agg(json_build_object(
           'generation_id', a.generation_id::text, 'index', a.index, 'campaign', c.name,
           'distance', bit_count((a.phash # o.phash)::bit(64)))
           ORDER BY bit_count((a.phash # o.phash)::bit(64)), a.generation_id, a.index)
           AS near
FROM ours o
JOIN approved a ON a.id <> o.id AND bit_count((a.phash # o.phash)::bit(64)) <= :bits
LEFT JOIN campaigns c ON c.id = a.campaign_id
GROUP BY o.generation_id, o.index
ORDER BY o.generation_id, o.index
"""
)


@dataclass(frozen=True)
class Cluster:
    """An approved image of the campaign and the approved images (any campaign) like it."""

    image: ImageRef
    near: tuple[tuple[ImageRef, str | None, int], ...]  # (image, campaign, distance)


async def clusters(session: AsyncSession | AsyncConnection, campaign_id: int) -> list[Cluster]:
    """The campaign's approved images that have approved near-duplicates, each with them."""
    rows = (
        await session.execute(text(_CLUSTERS), {"cid": campaign_id, "bits": NEAR_DUPLICATE_BITS})
    ).mappings()
    return [
        Cluster(
            ImageRef(uuid.UUID(r["generation_id"]), r["index"]),
            tuple(
                (ImageRef(uuid.UUID(n["generation_id"]), n["index"]), n["campaign"], n["distance"])
                for n in r["near"]
            ),
        )
        for r in rows
    ]
