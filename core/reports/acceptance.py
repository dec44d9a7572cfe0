"""Acceptance over time: per ISO week (Monday, UTC), model and preset version, how the campaign's
grids were received, so a team sees whether a new preset version or model did better.

Over the done ``imagine``, ``variation`` and ``reroll`` generations queued in the report's range
(their images, "grid images"):

- ``favourite_rate``: grid images with an image-level favourite ÷ grid images;
- ``approval_rate``: grid images approved (image-level, or their grid approved) ÷ grid images;
- ``upscale_rate``: grid images someone upscaled ÷ grid images;
- ``reroll_rate``: grids someone rerolled ÷ grids.

One statement, run in the report's snapshot; it reads the campaign's generations through
``ix_generations_campaign_id_queued_at`` and probes images and feedback per generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

_RANGES = {
    (False, False): "",
    (True, False): "AND queued_at >= :lo",
    (False, True): "AND queued_at < :hi",
    (True, True): "AND queued_at >= :lo AND queued_at < :hi",
}

_ACCEPTANCE = """
WITH g AS MATERIALIZED (
    SELECT id, coalesce(params->>'model', '') AS model,
           preset_name || '@' || left(preset_version, 8) AS preset,
           date_trunc('week', queued_at AT TIME ZONE 'UTC')::date AS week
    FROM generations
    WHERE campaign_id = :cid AND status = 'done' AND kind IN ('imagine', 'variation', 'reroll')
          {range}
),
im AS MATERIALIZED (
    SELECT id, generation_id, index FROM images
    WHERE generation_id = ANY (ARRAY(SELECT id FROM g))
),
fb AS MATERIALIZED (
    SELECT generation_id, image_id, kind FROM feedback
    WHERE generation_id = ANY (ARRAY(SELECT id FROM g)) AND kind IN ('favourite', 'approve')
),
kids AS MATERIALIZED (
    SELECT parent_id, source_index, kind FROM generations
    WHERE parent_id = ANY (ARRAY(SELECT id FROM g)) AND kind IN ('upscale', 'reroll')
),
per_image AS (
    SELECT g.week, g.model, g.preset, g.id AS generation_id,
           EXISTS (SELECT 1 FROM fb WHERE fb.image_id = im.id AND fb.kind = 'favourite')
               AS favourited,
           EXISTS (SELECT 1 FROM fb WHERE fb.generation_id = im.generation_id
                   AND fb.kind = 'approve' AND (fb.image_id = im.id OR fb.image_id IS NULL))
               AS approved,
           EXISTS (SELECT 1 FROM kids WHERE kids.parent_id = im.generation_id
                   AND kids.kind = 'upscale' AND kids.source_index = im.index) AS upscaled,
           EXISTS (SELECT 1 FROM kids WHERE kids.parent_id = g.id AND kids.kind = 'reroll')
               AS rerolled
    FROM g JOIN im ON im.generation_id = g.id
)
SELECT week, model, preset, count(DISTINCT generation_id) AS grids, count(*) AS images,
       avg(favourited::int) AS favourite_rate, avg(approved::int) AS approval_rate,
       avg(upscaled::int) AS upscale_rate,
       count(DISTINCT generation_id) FILTER (WHERE rerolled)::float8
           / count(DISTINCT generation_id) AS reroll_rate
FROM per_image
GROUP BY week, model, preset
ORDER BY week, model, preset
"""


@dataclass(frozen=True)
class Acceptance:
    week: date  # the Monday the ISO week starts on
    model: str
    preset: str  # name@version (8 characters of the version)
    grids: int
    images: int
    favourite_rate: float
    approval_rate: float
    upscale_rate: float
    reroll_rate: float


async def acceptance(
    conn: AsyncSession | AsyncConnection, params: dict[str, Any]
) -> tuple[Acceptance, ...]:
    """The rows for ``params`` (``cid``, and ``lo``/``hi`` when the range has them)."""
    sql = _ACCEPTANCE.format(range=_RANGES["lo" in params, "hi" in params])
    rows = (await conn.execute(text(sql), params)).mappings()
    return tuple(
        Acceptance(
            r["week"],
            r["model"],
            r["preset"],
            int(r["grids"]),
            int(r["images"]),
            float(r["favourite_rate"]),
            float(r["approval_rate"]),
            float(r["upscale_rate"]),
            float(r["reroll_rate"]),
        )
        for r in rows
    )
