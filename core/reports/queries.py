"""The report's SQL: three statements that PostgreSQL answers from one snapshot.

Every figure is computed by PostgreSQL (CTEs, ``FILTER`` aggregates, ``GROUPING SETS``,
``percentile_cont``, a recursive CTE for lineage); ``core.reports.build`` only runs these and
maps the rows into the dataclasses of ``core.reports.model``.

- ``figures``: totals, engagement, cost and the four breakdowns, one row of JSON columns;
- ``picks`` (``core.reports.picks``): the top and approved images, their lineage and the HTML
  contact sheet (the newest ``:sheet`` images of the campaign's done generations);
- ``images``: one row per image with every detail, for the CSV and JSON exports.

``figures`` sums the generations' engagement counters (kept by triggers, migration d770701256a5);
``picks`` reads the images' counters (migration de10912017cf); ``images`` computes each image's
engagement from the feedback rows (``_COMMON``).
``figures`` and ``picks`` are independent, so they run side by side on two connections. Every
statement takes ``:cid`` (the campaign's id) and ``:pseudo``, plus ``:lo`` and ``:hi`` for the
range it was made for; ``picks`` also takes ``:top``, ``:sheet`` and ``:max_depth``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from core.reports.fragments import (
    AUDIT_RANGES,
    COLUMNS,
    COPY_RANGES,
    DETAIL_HEAD,
    IN_RANGE,
    LABELS,
    RANGES,
)
from core.reports.picks import PICKS

__all__ = ["Statements", "Which", "pseudonym", "statements"]


def pseudonym(platform: str, workspace: str, external_id: str) -> str:
    """The stable stand-in for a user in pseudonymised reports (the same formula as ``lab``)."""
    digest = hashlib.sha256(f"{platform}:{workspace}:{external_id}".encode()).hexdigest()
    return "user-" + digest[:10]


# The generations, their feedback, and one row per image with its engagement (for the picks
# and the per-image rows; the figures read the generations' counters instead).
_COMMON = (
    """
WITH RECURSIVE
g AS MATERIALIZED (SELECT """
    + COLUMNS
    + "\n    "
    + IN_RANGE
    + """),
fb AS MATERIALIZED (
    -- feedback carries its generation's campaign_id and queued_at (kept by triggers): one
    -- range scan of ix_feedback_campaign_id_report instead of a probe per generation
    SELECT f.generation_id, f.image_id, f.user_id, f.kind, f.created_at
    FROM feedback f
    WHERE f.campaign_id = :cid {copy_range}
),
fi AS MATERIALIZED (
    SELECT image_id, generation_id,
           count(*) FILTER (WHERE kind = 'favourite') AS favourites,
           count(*) FILTER (WHERE kind = 'like') AS likes,
           count(*) FILTER (WHERE kind = 'dislike') AS dislikes,
           min(created_at) FILTER (WHERE kind = 'favourite') AS first_favourite_at,
           min(created_at) FILTER (WHERE kind = 'approve') AS approved_at
    FROM fb WHERE image_id IS NOT NULL
    GROUP BY image_id, generation_id
),
fg AS MATERIALIZED (
    SELECT generation_id,
           count(*) FILTER (WHERE kind = 'favourite') AS favourites,
           count(*) FILTER (WHERE kind = 'like') AS likes,
           count(*) FILTER (WHERE kind = 'dislike') AS dislikes,
           min(created_at) FILTER (WHERE kind = 'approve') AS approved_at
    FROM fb WHERE image_id IS NULL
    GROUP BY generation_id
),
gim AS MATERIALIZED (  -- the images of grids approved as a whole, read once for ap and appr
    SELECT im.id, im.generation_id FROM images im
    WHERE im.generation_id IN (
        SELECT generation_id FROM fb WHERE kind = 'approve' AND image_id IS NULL)
),
ap AS MATERIALIZED (
    SELECT image_id, generation_id, min(at) AS approved_at
    FROM (
        SELECT image_id, generation_id, approved_at AS at
        FROM fi WHERE approved_at IS NOT NULL
        UNION ALL
        SELECT im.id, fg.generation_id, fg.approved_at
        FROM fg JOIN gim im ON im.generation_id = fg.generation_id
        WHERE fg.approved_at IS NOT NULL
    ) x
    GROUP BY image_id, generation_id
),
"""
    + LABELS
    + """,
appr AS MATERIALIZED (
    SELECT a.image_id, array_agg(lab.label ORDER BY a.at, lab.label) AS approved_by
    FROM (
        SELECT image_id, user_id, min(at) AS at
        FROM (
            SELECT fb.image_id, fb.user_id, fb.created_at AS at
            FROM fb WHERE fb.kind = 'approve' AND fb.image_id IS NOT NULL
            UNION ALL
            -- a grid's approvals reach its images through the images index (one probe per
            -- approval); joined to gim instead, PostgreSQL rescans that CTE per approval
            SELECT im.id, fb.user_id, fb.created_at
            FROM fb JOIN images im ON im.generation_id = fb.generation_id
            WHERE fb.kind = 'approve' AND fb.image_id IS NULL
        ) x
        GROUP BY image_id, user_id
    ) a
    JOIN lab ON lab.id = a.user_id
    GROUP BY a.image_id
)
"""
)

# Images with every detail; {source} is a FROM clause giving `im` (images) and `gen`
# (their generations), {where} picks the images, {extra} adds columns after ImageRow's.
_DETAIL = (
    DETAIL_HEAD
    + """
       coalesce(fi.favourites, 0) AS favourites,
       coalesce(fi.likes, 0) AS likes,
       coalesce(fi.dislikes, 0) AS dislikes,
       coalesce(fg.favourites, 0) AS grid_favourites,
       coalesce(fg.likes, 0) AS grid_likes,
       coalesce(fg.dislikes, 0) AS grid_dislikes,
       ap.approved_at IS NOT NULL AS approved,
       coalesce(appr.approved_by, ARRAY[]::text[]) AS approved_by,
       ap.approved_at, im.palette_score, im.storage_key{extra}
{source}
JOIN lab mk ON mk.id = gen.user_id
LEFT JOIN fi ON fi.image_id = im.id
LEFT JOIN fg ON fg.generation_id = im.generation_id
LEFT JOIN ap ON ap.image_id = im.id
LEFT JOIN appr ON appr.image_id = im.id
{where}
"""
)

# The figures read each generation's engagement from its counters (kept by triggers, migration
# d770701256a5) in the covering index; the medians to the first favourite and approval of an
# image read the favourited and approved images' own (migration de10912017cf).
_FIGURES = (
    """
WITH
g AS MATERIALIZED (
    SELECT """
    + COLUMNS
    + """, (queued_at AT TIME ZONE 'UTC')::date AS day,
           image_count, favourites, favourited_images, approved_images,
           grid_favourites, likes, dislikes, approvals
    """
    + IN_RANGE
    + """
),
fa AS (  -- per image: from its generation's end to its first favourite and first approval,
          -- kept on the image (migration de10912017cf) and read from two small partial indexes
    SELECT im.first_favourite_at - g.finished_at AS to_favourite, NULL::interval AS to_approval
    FROM images im JOIN g ON g.id = im.generation_id
    WHERE im.campaign_id = :cid AND im.favourites > 0 {copy_range}
      AND g.finished_at IS NOT NULL
    UNION ALL
    SELECT NULL, im.approved_at - g.finished_at
    FROM images im JOIN g ON g.id = im.generation_id
    WHERE im.campaign_id = :cid AND im.approved_at IS NOT NULL {copy_range}
      AND g.finished_at IS NOT NULL
),"""
    + LABELS
    + """,
tot AS (
    SELECT count(*) AS requests,
           coalesce(sum(image_count), 0) AS images,
           count(DISTINCT user_id) AS users,
           count(*) FILTER (WHERE kind = 'imagine') AS imagines,
           count(*) FILTER (WHERE kind = 'variation') AS variations,
           count(*) FILTER (WHERE kind = 'upscale') AS upscales,
           count(*) FILTER (WHERE kind = 'reroll') AS rerolls,
           count(*) FILTER (WHERE status = 'done') AS done,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status IN ('queued', 'running')) AS pending,
           coalesce(sum(favourites), 0) AS favourites,
           coalesce(sum(favourited_images), 0) AS favourited_images,
           coalesce(sum(approved_images), 0) AS approved_images,
           coalesce(sum(gpu_seconds), 0) AS gpu_seconds,
           percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
               ORDER BY extract(epoch FROM started_at - queued_at))
               FILTER (WHERE started_at IS NOT NULL) AS queue_wait,
           percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
               ORDER BY extract(epoch FROM finished_at - started_at))
               FILTER (WHERE status = 'done' AND started_at IS NOT NULL
                       AND finished_at IS NOT NULL) AS generation,
           coalesce(sum(grid_favourites), 0) AS grid_favourites,
           coalesce(sum(likes), 0) AS likes,
           coalesce(sum(dislikes), 0) AS dislikes,
           coalesce(sum(approvals), 0) AS approvals
    FROM g
),
med AS (
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM to_favourite))
               AS to_favourite,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM to_approval))
               AS to_approval
    FROM fa
),
ug AS (  -- one hashed pass down to (user, preset version, day, platform) cells
    SELECT user_id, preset_name, preset_version, day, platform,
           min(queued_at) AS first_at, count(*) AS requests, sum(image_count) AS images,
           sum(favourites) AS favourites, sum(favourited_images) AS favourited,
           sum(approved_images) AS approved, sum(gpu_seconds) AS gpu_seconds
    FROM g
    GROUP BY user_id, preset_name, preset_version, day, platform
),
sl AS (
    SELECT CASE WHEN GROUPING(user_id) = 0 THEN 'user'
                WHEN GROUPING(preset_name) = 0 THEN 'preset'
                WHEN GROUPING(day) = 0 THEN 'day'
                ELSE 'platform' END AS dim,
           user_id, preset_name || '@' || preset_version AS preset, day, platform,
           min(first_at) AS first_at,
           sum(requests) AS requests, sum(images) AS images, count(DISTINCT user_id) AS users,
           sum(favourites) AS favourites, sum(favourited) AS favourited_images,
           sum(approved) AS approved_images, coalesce(sum(gpu_seconds), 0) AS gpu_seconds
    FROM ug
    GROUP BY GROUPING SETS ((user_id), (preset_name, preset_version), (day), (platform))
),
slices AS (
    SELECT sl.dim,
           CASE sl.dim WHEN 'user' THEN lab.label WHEN 'preset' THEN sl.preset
                       WHEN 'day' THEN sl.day::text ELSE sl.platform END AS key,
           sl.requests, sl.images, sl.users, sl.favourites, sl.favourited_images,
           sl.approved_images,
           sl.favourited_images::float8 / nullif(sl.images, 0) AS favourite_rate,
           sl.approved_images::float8 / nullif(sl.images, 0) AS approval_rate,
           sl.gpu_seconds, sl.first_at
    FROM sl LEFT JOIN lab ON lab.id = sl.user_id
)
-- the picked images (top, approved, lineage) are core.reports.picks
SELECT
    (SELECT row_to_json(t) FROM (
        SELECT tot.*, med.*,
               (SELECT count(*) FROM audit_log
                WHERE action = 'prompt.blocked' AND campaign_id = :cid {audit_range})
                   AS blocked_prompts,
               (SELECT count(*) FROM generations
                WHERE campaign_id = :cid {range} AND undeliverable IS NOT NULL)
                   AS undelivered,
               (SELECT count(*) FROM packs WHERE generation_id IN
                   (SELECT id FROM generations WHERE campaign_id = :cid {range})) AS packs,
               (SELECT count(*) FROM pack_files JOIN packs ON packs.id = pack_files.pack_id
                WHERE packs.generation_id IN
                   (SELECT id FROM generations WHERE campaign_id = :cid {range})) AS pack_files
        FROM tot, med) t) AS totals,
    (SELECT json_agg(s ORDER BY s.images DESC, s.requests DESC, s.key)
       FILTER (WHERE s.dim = 'user') FROM slices s) AS per_user,
    (SELECT json_agg(s ORDER BY s.first_at, s.key)
       FILTER (WHERE s.dim = 'preset') FROM slices s) AS per_preset,
    (SELECT json_agg(s ORDER BY s.key) FILTER (WHERE s.dim = 'day') FROM slices s) AS per_day,
    (SELECT json_agg(s ORDER BY s.requests DESC, s.key)
       FILTER (WHERE s.dim = 'platform') FROM slices s) AS per_platform
"""
)

_IMAGES = (
    _COMMON
    + _DETAIL.format(
        source="FROM g JOIN images im ON im.generation_id = g.id "
        "JOIN generations gen ON gen.id = g.id",
        where="{which}",
        extra="",
    )
    + " ORDER BY gen.queued_at, im.generation_id, im.index"
)

# Which images the per-image statement returns: every one, the approved (directly or through
# the grid: ``ImageRow.approved``) or the favourited (``ImageRow.favourites > 0``) ones.
Which = Literal["all", "approved", "favourites"]
_WHICH: dict[str, str] = {
    "all": "",
    "approved": "WHERE ap.approved_at IS NOT NULL",
    "favourites": "WHERE fi.favourites > 0",
}


@dataclass(frozen=True)
class Statements:
    """The three statements for one shape of date range."""

    figures: str
    picks: str
    images: str


def statements(*, since: bool, until: bool, which: Which = "all") -> Statements:
    """The statements for a range with a lower bound (``:lo``) if ``since``, an upper (``:hi``)
    if ``until``, the per-image one limited to ``which`` images; the bounds are fixed
    fragments, never user text."""
    shape = (since, until)
    ranges = {"range": RANGES[shape], "copy_range": COPY_RANGES[shape]}
    return Statements(
        figures=_FIGURES.format(**ranges, audit_range=AUDIT_RANGES[shape]),
        picks=PICKS.format(**ranges),
        images=_IMAGES.format(**ranges, which=_WHICH[which]),
    )
