"""Acceptance over time: per ISO week (Monday, UTC), model and preset version, how the campaign's
grids were received, so a team sees whether a new preset version or model did better.

Over the done ``imagine``, ``variation`` and ``reroll`` generations queued in the report's range
(their images, "grid images"):

- ``favourite_rate``: grid images with an image-level favourite ÷ grid images;
- ``approval_rate``: grid images approved (image-level, or their grid approved) ÷ grid images;
- ``upscale_rate``: grid images someone upscaled ÷ grid images;
- ``reroll_rate``: grids someone rerolled ÷ grids.

One statement, run in the report's snapshot; it reads the campaign's generations through
``ix_generations_campaign_id_queued_at``, images, feedback and children by generation id, and
joins them by hash.
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
fav AS (SELECT DISTINCT image_id FROM fb WHERE kind = 'favourite' AND image_id IS NOT NULL),
appr_image AS (SELECT DISTINCT image_id FROM fb WHERE kind = 'approve' AND image_id IS NOT NULL),
appr_grid AS (SELECT DISTINCT generation_id FROM fb WHERE kind = 'approve' AND image_id IS NULL),
up AS (SELECT DISTINCT parent_id, source_index FROM kids WHERE kind = 'upscale'),
rr AS (SELECT DISTINCT parent_id FROM kids WHERE kind = 'reroll'),
per_image AS (  -- hash joins against small sets, no per-image probes
    SELECT g.week, g.model, g.preset, g.id AS generation_id,
           fav.image_id IS NOT NULL AS favourited,
           (ai.image_id IS NOT NULL OR ag.generation_id IS NOT NULL) AS approved,
           up.parent_id IS NOT NULL AS upscaled,
           rr.parent_id IS NOT NULL AS rerolled
    FROM g JOIN im ON im.generation_id = g.id
    LEFT JOIN fav ON fav.image_id = im.id
    LEFT JOIN appr_image ai ON ai.image_id = im.id
    LEFT JOIN appr_grid ag ON ag.generation_id = g.id
    LEFT JOIN up ON up.parent_id = g.id AND up.source_index = im.index
    LEFT JOIN rr ON rr.parent_id = g.id
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
