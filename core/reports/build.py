"""Campaign reports: what was made, what people liked, what was approved, what it cost.

Every figure is computed by PostgreSQL (CTEs, ``FILTER`` aggregates, ``GROUPING SETS``,
``percentile_cont``, a recursive CTE for lineage); Python only maps the results into frozen
dataclasses and renders them. Two statements read one snapshot: ``_FIGURES`` (totals,
engagement, cost, breakdowns) and ``_PICKS`` (top and approved images, lineage). Given a
``Database``, they run at the same time on two connections, the second importing the first's
snapshot (``pg_export_snapshot``), so the two halves use two cores. ``_PICKS`` also carries the
HTML contact sheet: the newest ``sheet`` images of the campaign's done generations, from a
top-N of the generations already in hand and one index probe per picked generation. The
per-image rows that the CSV and JSON exports carry come from a third statement in the same
snapshot (``include_images=False`` skips it).

How each figure is defined is documented in ``docs/reports.md``; the short version:

- the report covers the campaign's generations whose ``queued_at`` falls in ``since``–``until``
  (UTC days, both inclusive); feedback counts when it is on one of those generations (whenever it
  was given); blocked prompts count by the audit entry's time;
- feedback with an ``image_id`` is image-level, without one it is on the whole grid. Favourites,
  likes and dislikes of an image are its image-level rows; grid-level ones are counted apart
  (``grid_favourites`` …). An approval on a grid approves every image of that grid.

Authorisation is the caller's job: ``core.service`` lets admins and reviewers run reports and
refuses everyone else before calling in here.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.db.database import Database
from core.errors import NotFound, UserError

__all__ = [
    "CampaignInfo",
    "CampaignReport",
    "CostSpeed",
    "Engagement",
    "ImageRow",
    "Lineage",
    "LineageStep",
    "Slice",
    "Totals",
    "build_report",
    "export_zip",
    "pseudonym",
    "to_csv",
    "to_html",
    "to_json",
    "to_markdown",
]

SCHEMA_VERSION = 1
TOP_IMAGES = 12
SHEET_IMAGES = 48  # images on the HTML contact sheet by default (newest first)
MAX_LINEAGE_DEPTH = 50

# --- the report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignInfo:
    name: str
    preset: str
    starts_on: date | None
    ends_on: date | None
    gpu_budget_seconds: float | None


@dataclass(frozen=True)
class Totals:
    requests: int  # generations (any kind, any status)
    images: int
    users: int  # distinct requesters
    imagines: int
    variations: int
    upscales: int
    rerolls: int
    done: int
    cancelled: int
    failed: int
    pending: int  # queued or running when the report was made
    blocked_prompts: int  # audit_log 'prompt.blocked' for the campaign


@dataclass(frozen=True)
class Engagement:
    favourites: int  # image-level ⭐/1️⃣–4️⃣ rows
    grid_favourites: int  # ⭐ on a whole grid
    likes: int  # 👍 rows, image- and grid-level
    dislikes: int  # 👎 rows, image- and grid-level
    approvals: int  # ✅ rows, image- and grid-level
    favourited_images: int  # images with ≥ 1 image-level favourite
    approved_images: int  # images approved directly or through their grid
    favourite_rate: float | None  # favourited_images / images
    approval_rate: float | None  # approved_images / images
    median_seconds_to_first_favourite: float | None  # from the generation's finished_at
    median_seconds_to_approval: float | None


@dataclass(frozen=True)
class CostSpeed:
    gpu_seconds: float
    gpu_seconds_per_approved_image: float | None
    queue_wait_p50: float | None  # started_at − queued_at, seconds, every started generation
    queue_wait_p95: float | None
    generation_p50: float | None  # finished_at − started_at, seconds, done generations
    generation_p95: float | None


@dataclass(frozen=True)
class Slice:
    """One row of a breakdown: a user, a preset version, a UTC day or a platform."""

    key: str  # user label | "preset@version" | "YYYY-MM-DD" | platform
    requests: int
    images: int
    users: int
    favourites: int
    favourited_images: int
    approved_images: int
    favourite_rate: float | None
    approval_rate: float | None
    gpu_seconds: float


@dataclass(frozen=True)
class ImageRow:
    """One image with everything known about it (a CSV row; top and approved entries)."""

    generation_id: str
    index: int
    kind: str
    user: str
    platform: str
    created_at: datetime  # the generation's queued_at
    finished_at: datetime | None
    prompt: str
    final_prompt: str
    seed: int | None  # this image's own seed: the generation's seed + index − 1 (mod 2³²)
    model: str | None
    steps: int | None
    width: int
    height: int
    preset: str
    preset_version: str
    favourites: int
    likes: int
    dislikes: int
    grid_favourites: int
    grid_likes: int
    grid_dislikes: int
    approved: bool
    approved_by: tuple[str, ...]
    approved_at: datetime | None
    palette_score: float | None
    storage_key: str


@dataclass(frozen=True)
class LineageStep:
    depth: int  # 0 is the approved image's own generation, 1 its parent, …
    generation_id: str
    kind: str
    used_index: int | None  # which of this generation's images the next step was made from
    user: str
    prompt: str
    created_at: datetime


@dataclass(frozen=True)
class Lineage:
    generation_id: str
    index: int
    storage_key: str
    steps: tuple[LineageStep, ...]


@dataclass(frozen=True)
class CampaignReport:
    campaign: CampaignInfo
    since: date | None
    until: date | None
    generated_at: datetime
    pseudonymised: bool
    totals: Totals
    engagement: Engagement
    cost: CostSpeed
    per_user: tuple[Slice, ...]
    per_preset_version: tuple[Slice, ...]
    per_day: tuple[Slice, ...]
    per_platform: tuple[Slice, ...]
    top_images: tuple[ImageRow, ...]  # most favourited first
    approved_images: tuple[ImageRow, ...]  # in order of approval
    lineage: tuple[Lineage, ...]  # one per approved image, same order
    # the contact sheet: the newest ``sheet`` images of done generations, newest generation
    # first, each generation's images in index order (``totals.images`` − this = how many more)
    recent_images: tuple[ImageRow, ...]
    images: tuple[ImageRow, ...] | None  # every image; None when built without them


def pseudonym(platform: str, workspace: str, external_id: str) -> str:
    """The stable stand-in for a user in pseudonymised reports (same formula as the SQL)."""
    digest = hashlib.sha256(f"{platform}:{workspace}:{external_id}".encode()).hexdigest()
    return "user-" + digest[:10]


# --- SQL -----------------------------------------------------------------------------------

# The campaign's generations in range, their feedback, and one row per image with its
# engagement. {range} is one of the fixed fragments below, never user text.
_COMMON = """
WITH RECURSIVE
g AS MATERIALIZED (
    SELECT id, kind, status, platform, user_id, preset_name, preset_version,
           queued_at, started_at, finished_at, gpu_seconds
    FROM generations
    WHERE campaign_id = :cid {range}
),
fb AS MATERIALIZED (
    -- = ANY(array) makes PostgreSQL probe the feedback index per generation, in id order,
    -- instead of hashing the whole feedback table.
    SELECT f.generation_id, f.image_id, f.user_id, f.kind, f.created_at
    FROM feedback f
    WHERE f.generation_id = ANY (ARRAY(SELECT id FROM g))
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
lab AS MATERIALIZED (
    SELECT u.id,
           CASE WHEN :pseudo THEN 'user-' || left(encode(sha256(convert_to(
                    u.platform || ':' || w.external_id || ':' || u.external_id, 'UTF8')),
                    'hex'), 10)
                ELSE coalesce(nullif(u.display_name, ''), u.platform || ':' || u.external_id)
           END AS label
    FROM users u JOIN workspaces w ON w.id = u.workspace_id
),
appr AS MATERIALIZED (
    SELECT a.image_id, array_agg(lab.label ORDER BY a.at, lab.label) AS approved_by
    FROM (
        SELECT image_id, user_id, min(at) AS at
        FROM (
            SELECT fb.image_id, fb.user_id, fb.created_at AS at
            FROM fb WHERE fb.kind = 'approve' AND fb.image_id IS NOT NULL
            UNION ALL
            SELECT im.id, fb.user_id, fb.created_at
            FROM fb JOIN gim im ON im.generation_id = fb.generation_id
            WHERE fb.kind = 'approve' AND fb.image_id IS NULL
        ) x
        GROUP BY image_id, user_id
    ) a
    JOIN lab ON lab.id = a.user_id
    GROUP BY a.image_id
)
"""

_RANGES = {
    (False, False): "",
    (True, False): "AND queued_at >= :lo",
    (False, True): "AND queued_at < :hi",
    (True, True): "AND queued_at >= :lo AND queued_at < :hi",
}
_AUDIT_RANGES = {
    (False, False): "",
    (True, False): "AND at >= :lo",
    (False, True): "AND at < :hi",
    (True, True): "AND at >= :lo AND at < :hi",
}

# Images with every detail; {source} is a FROM clause giving `im` (images) and `gen`
# (their generations), {where} picks the images, {extra} adds columns after ImageRow's.
_DETAIL = """
SELECT im.generation_id::text AS generation_id, im.index, gen.kind, mk.label AS "user",
       gen.platform, gen.queued_at AS created_at, gen.finished_at,
       gen.raw_prompt AS prompt, gen.final_prompt,
       ((gen.params->>'seed')::bigint + im.index - 1) % 4294967296 AS seed,
       gen.params->>'model' AS model, (gen.params->>'steps')::int AS steps,
       im.width, im.height, gen.preset_name AS preset, gen.preset_version,
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

_PICKED = "FROM images im JOIN generations gen ON gen.id = im.generation_id"

_FIGURES = (
    _COMMON
    + """,
gi AS (
    SELECT generation_id, sum(favourites) AS favourites,
           count(*) FILTER (WHERE favourites > 0) AS favourited
    FROM fi GROUP BY generation_id
),
ga AS (SELECT generation_id, count(*) AS approved FROM ap GROUP BY generation_id),
ic AS (
    SELECT generation_id, count(*) AS images
    FROM images WHERE generation_id = ANY (ARRAY(SELECT id FROM g))
    GROUP BY generation_id
),
gg AS (
    SELECT g.*, (g.queued_at AT TIME ZONE 'UTC')::date AS day,
           coalesce(ic.images, 0) AS images,
           coalesce(gi.favourites, 0) AS favourites,
           coalesce(gi.favourited, 0) AS favourited, coalesce(ga.approved, 0) AS approved
    FROM g
    LEFT JOIN ic ON ic.generation_id = g.id
    LEFT JOIN gi ON gi.generation_id = g.id
    LEFT JOIN ga ON ga.generation_id = g.id
),
tot AS (
    SELECT count(*) AS requests,
           coalesce(sum(images), 0) AS images,
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
           coalesce(sum(favourited), 0) AS favourited_images,
           coalesce(sum(approved), 0) AS approved_images,
           coalesce(sum(gpu_seconds), 0) AS gpu_seconds,
           percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
               ORDER BY extract(epoch FROM started_at - queued_at))
               FILTER (WHERE started_at IS NOT NULL) AS queue_wait,
           percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
               ORDER BY extract(epoch FROM finished_at - started_at))
               FILTER (WHERE status = 'done' AND started_at IS NOT NULL
                       AND finished_at IS NOT NULL) AS generation
    FROM gg
),
fbc AS (
    SELECT count(*) FILTER (WHERE kind = 'favourite' AND image_id IS NULL) AS grid_favourites,
           count(*) FILTER (WHERE kind = 'like') AS likes,
           count(*) FILTER (WHERE kind = 'dislike') AS dislikes,
           count(*) FILTER (WHERE kind = 'approve') AS approvals
    FROM fb
),
med AS (
    SELECT (SELECT percentile_cont(0.5) WITHIN GROUP (
                ORDER BY extract(epoch FROM fi.first_favourite_at - g.finished_at))
            FROM fi JOIN g ON g.id = fi.generation_id
            WHERE fi.first_favourite_at IS NOT NULL AND g.finished_at IS NOT NULL
           ) AS to_favourite,
           (SELECT percentile_cont(0.5) WITHIN GROUP (
                ORDER BY extract(epoch FROM ap.approved_at - g.finished_at))
            FROM ap JOIN g ON g.id = ap.generation_id
            WHERE g.finished_at IS NOT NULL
           ) AS to_approval
),
ug AS (  -- one hashed pass down to (user, preset version, day, platform) cells
    SELECT user_id, preset_name, preset_version, day, platform,
           min(queued_at) AS first_at, count(*) AS requests, sum(images) AS images,
           sum(favourites) AS favourites, sum(favourited) AS favourited,
           sum(approved) AS approved, sum(gpu_seconds) AS gpu_seconds
    FROM gg
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
-- the picked images (top, approved, lineage) are _PICKS below
SELECT
    (SELECT row_to_json(t) FROM (
        SELECT tot.*, fbc.*, med.*,
               (SELECT count(*) FROM audit_log
                WHERE action = 'prompt.blocked' AND campaign_id = :cid {audit_range})
                   AS blocked_prompts
        FROM tot, fbc, med) t) AS totals,
    (SELECT json_agg(s ORDER BY s.images DESC, s.requests DESC, s.key)
       FILTER (WHERE s.dim = 'user') FROM slices s) AS per_user,
    (SELECT json_agg(s ORDER BY s.first_at, s.key)
       FILTER (WHERE s.dim = 'preset') FROM slices s) AS per_preset,
    (SELECT json_agg(s ORDER BY s.key) FILTER (WHERE s.dim = 'day') FROM slices s) AS per_day,
    (SELECT json_agg(s ORDER BY s.requests DESC, s.key)
       FILTER (WHERE s.dim = 'platform') FROM slices s) AS per_platform
"""
)

# The top and approved images with their details and the approved images' lineage. It needs
# the feedback CTEs but not the image counts, so it can run beside _FIGURES on a second
# connection in the same snapshot (see ``build_report``).
_PICKS = (
    _COMMON
    + """,
top AS (
    SELECT fi.image_id FROM fi JOIN g ON g.id = fi.generation_id
    WHERE fi.favourites > 0
    ORDER BY fi.favourites DESC, fi.likes DESC, g.queued_at, fi.image_id
    LIMIT :top
),
rg AS (  -- the newest generations that made images (only a done generation stores images)
    SELECT id, queued_at FROM g WHERE status = 'done'
    ORDER BY queued_at DESC, id DESC
    LIMIT :sheet
),
recent AS (  -- each has ≥ 1 image, so :sheet generations hold the newest :sheet images
    SELECT im.id FROM rg JOIN images im ON im.generation_id = rg.id
    ORDER BY rg.queued_at DESC, rg.id DESC, im.index
    LIMIT :sheet
),
chain AS (  -- walked once per approved generation; its images share the chain
    SELECT gen.id AS root, 0 AS depth, gen.id, gen.parent_id, gen.source_index,
           NULL::int AS used_index, gen.kind, gen.user_id, gen.raw_prompt, gen.queued_at
    FROM (SELECT DISTINCT generation_id FROM ap) a
    JOIN generations gen ON gen.id = a.generation_id
    UNION ALL
    SELECT c.root, c.depth + 1, p.id, p.parent_id, p.source_index,
           c.source_index, p.kind, p.user_id, p.raw_prompt, p.queued_at
    FROM chain c JOIN generations p ON p.id = c.parent_id
    WHERE p.campaign_id = :cid AND c.depth < :max_depth
),
steps AS MATERIALIZED (
    SELECT c.root,
           json_agg(json_build_object(
               'depth', c.depth, 'generation_id', c.id::text, 'kind', c.kind,
               'used_index', c.used_index, 'user', lab.label, 'prompt', c.raw_prompt,
               'created_at', c.queued_at) ORDER BY c.depth) AS steps
    FROM chain c JOIN lab ON lab.id = c.user_id
    GROUP BY c.root
)
-- One row per approved image (ImageRow's columns, then the generation its lineage starts
-- from), in order of approval; the first row (or a lone row of NULLs when nothing is approved)
-- also carries the top images, the lineage steps per generation and the contact sheet as JSON.
SELECT CASE WHEN d.n IS NULL OR d.n = 1 THEN h.top_images END AS top_images,
       CASE WHEN d.n IS NULL OR d.n = 1 THEN h.chains END AS chains,
       CASE WHEN d.n IS NULL OR d.n = 1 THEN h.recent_images END AS recent_images,
       d.*
FROM (
    SELECT (SELECT json_agg(t ORDER BY t.favourites DESC, t.likes DESC, t.created_at,
                            t.generation_id, t.index) FROM (
                """
    + _DETAIL.format(source=_PICKED, where="WHERE im.id IN (SELECT image_id FROM top)", extra="")
    + """
            ) t) AS top_images,
           (SELECT json_object_agg(root::text, steps) FROM steps) AS chains,
           (SELECT json_agg(t ORDER BY t.created_at DESC, t.generation_id DESC, t.index) FROM (
                """
    + _DETAIL.format(source=_PICKED, where="WHERE im.id IN (SELECT id FROM recent)", extra="")
    + """
            ) t) AS recent_images
) h
LEFT JOIN (
    SELECT a.*, row_number() OVER (ORDER BY a.approved_at, a.generation_id, a.index) AS n
    FROM (
        """
    + _DETAIL.format(
        source=_PICKED,
        where="WHERE im.id IN (SELECT image_id FROM ap)",
        extra=", ap.generation_id::text AS lineage_root",
    )
    + """
    ) a
) d ON true
ORDER BY d.n
"""
)

_IMAGES = (
    _COMMON
    + _DETAIL.format(
        source="FROM g JOIN images im ON im.generation_id = g.id "
        "JOIN generations gen ON gen.id = g.id",
        where="",
        extra="",
    )
    + " ORDER BY gen.queued_at, im.generation_id, im.index"
)


# --- building ------------------------------------------------------------------------------

Source = AsyncSession | AsyncConnection | Database


async def build_report(
    source: Source,
    campaign: str,
    *,
    since: date | None = None,
    until: date | None = None,
    pseudonymise: bool = False,
    include_images: bool = True,
    top: int = TOP_IMAGES,
    sheet: int = SHEET_IMAGES,
) -> CampaignReport:
    """The report for ``campaign``, generations queued from ``since`` to ``until`` (UTC, inclusive).

    ``source`` is a ``Database`` (the report then reads one REPEATABLE READ, read-only snapshot),
    or a session or connection whose transaction the caller owns. ``sheet`` caps the contact
    sheet (``recent_images``, 0 leaves it empty). Raises ``NotFound`` for an unknown campaign and
    ``UserError`` when ``since`` is after ``until`` or ``sheet`` is negative. The caller checks
    that the actor may see reports (admins and reviewers).
    """
    if sheet < 0:
        raise UserError(f"The contact sheet cannot show {sheet} images; give 0 or more.")
    if since is not None and until is not None and since > until:
        raise UserError(f"The start date {since} is after the end date {until}; swap them.")
    if isinstance(source, Database):
        async with source.engine.connect() as conn:
            await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                return await _build(
                    conn, campaign, since, until, pseudonymise, include_images, top, sheet, source
                )
    return await _build(source, campaign, since, until, pseudonymise, include_images, top, sheet)


async def _settings(conn: AsyncSession | AsyncConnection) -> None:
    # The estimated cost of these big statements is far above jit_above_cost; compiling them
    # takes seconds while running them takes milliseconds. SET LOCAL ends with the transaction.
    await conn.execute(text("SET LOCAL jit = off"))
    await conn.execute(text("SET LOCAL work_mem = '64MB'"))  # hashes and sorts stay in memory


async def _picks_beside(db: Database, snapshot: str, sql: str, params: dict[str, Any]) -> _Picks:
    """Run ``sql`` (_PICKS) on a second connection that reads the exported ``snapshot``."""
    if not re.fullmatch(r"[0-9A-Fa-f-]+", snapshot):
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            # must come first in the transaction, before any query
            await conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            await _settings(conn)
            return _picks((await conn.execute(text(sql), params)).all())


async def _build(
    conn: AsyncSession | AsyncConnection,
    campaign: str,
    since: date | None,
    until: date | None,
    pseudonymise: bool,
    include_images: bool,
    top: int,
    sheet: int,
    beside: Database | None = None,
) -> CampaignReport:
    found = (
        await conn.execute(
            text(
                "SELECT id, name, preset_name, starts_on, ends_on, gpu_budget_seconds "
                "FROM campaigns WHERE name = :name"
            ),
            {"name": campaign},
        )
    ).one_or_none()
    if found is None:
        raise NotFound(
            f"There is no campaign called “{campaign}”. "
            "Check the name with `onbrand campaign list`."
        )
    await _settings(conn)
    info = CampaignInfo(
        found.name, found.preset_name, found.starts_on, found.ends_on, found.gpu_budget_seconds
    )
    params: dict[str, Any] = {"cid": found.id, "pseudo": pseudonymise}
    if since is not None:
        params["lo"] = datetime.combine(since, time(), UTC)
    if until is not None:
        params["hi"] = datetime.combine(until + timedelta(days=1), time(), UTC)
    shape = (since is not None, until is not None)

    figures_sql = _FIGURES.format(range=_RANGES[shape], audit_range=_AUDIT_RANGES[shape])
    picks_sql = _PICKS.format(range=_RANGES[shape])
    picks_params = {**params, "top": top, "sheet": sheet, "max_depth": MAX_LINEAGE_DEPTH}
    if beside is not None:
        # Our own REPEATABLE READ transaction: the picks run on a second connection in the
        # same snapshot while this one computes the figures (two cores instead of one).
        snapshot = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
        picking = asyncio.create_task(_picks_beside(beside, snapshot, picks_sql, picks_params))
        try:
            row = (await conn.execute(text(figures_sql), params)).one()
        except BaseException:
            picking.cancel()
            await asyncio.gather(picking, return_exceptions=True)
            raise
        picks = await picking
    else:  # the caller's transaction (it may hold uncommitted rows): one after the other
        row = (await conn.execute(text(figures_sql), params)).one()
        picks = _picks((await conn.execute(text(picks_sql), picks_params)).all())
    t = _json(row.totals)
    queue_wait = t["queue_wait"] or [None, None]
    generation = t["generation"] or [None, None]
    images = int(t["images"])
    approved = int(t["approved_images"])
    favourited = int(t["favourited_images"])
    gpu = float(t["gpu_seconds"])

    rows: tuple[ImageRow, ...] | None = None
    if include_images:
        result = await conn.execute(text(_IMAGES.format(range=_RANGES[shape])), params)
        rows = tuple(_image_row_from_db(r) for r in result)

    return CampaignReport(
        campaign=info,
        since=since,
        until=until,
        generated_at=datetime.now(UTC),
        pseudonymised=pseudonymise,
        totals=Totals(
            requests=int(t["requests"]),
            images=images,
            users=int(t["users"]),
            imagines=int(t["imagines"]),
            variations=int(t["variations"]),
            upscales=int(t["upscales"]),
            rerolls=int(t["rerolls"]),
            done=int(t["done"]),
            cancelled=int(t["cancelled"]),
            failed=int(t["failed"]),
            pending=int(t["pending"]),
            blocked_prompts=int(t["blocked_prompts"]),
        ),
        engagement=Engagement(
            favourites=int(t["favourites"]),
            grid_favourites=int(t["grid_favourites"]),
            likes=int(t["likes"]),
            dislikes=int(t["dislikes"]),
            approvals=int(t["approvals"]),
            favourited_images=favourited,
            approved_images=approved,
            favourite_rate=favourited / images if images else None,
            approval_rate=approved / images if images else None,
            median_seconds_to_first_favourite=_float(t["to_favourite"]),
            median_seconds_to_approval=_float(t["to_approval"]),
        ),
        cost=CostSpeed(
            gpu_seconds=gpu,
            gpu_seconds_per_approved_image=gpu / approved if approved else None,
            queue_wait_p50=_float(queue_wait[0]),
            queue_wait_p95=_float(queue_wait[1]),
            generation_p50=_float(generation[0]),
            generation_p95=_float(generation[1]),
        ),
        per_user=_slices(row.per_user),
        per_preset_version=_slices(row.per_preset),
        per_day=_slices(row.per_day),
        per_platform=_slices(row.per_platform),
        top_images=picks.top_images,
        approved_images=picks.approved_images,
        lineage=picks.lineage,
        recent_images=picks.recent_images,
        images=rows,
    )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def _slices(value: Any) -> tuple[Slice, ...]:
    return tuple(
        Slice(
            key=str(d["key"]),
            requests=int(d["requests"]),
            images=int(d["images"]),
            users=int(d["users"]),
            favourites=int(d["favourites"]),
            favourited_images=int(d["favourited_images"]),
            approved_images=int(d["approved_images"]),
            favourite_rate=_float(d["favourite_rate"]),
            approval_rate=_float(d["approval_rate"]),
            gpu_seconds=float(d["gpu_seconds"]),
        )
        for d in _json(value) or ()
    )


def _image_row(d: Mapping[str, Any]) -> ImageRow:
    created = _when(d["created_at"])
    assert created is not None
    return ImageRow(
        generation_id=str(d["generation_id"]),
        index=int(d["index"]),
        kind=str(d["kind"]),
        user=str(d["user"]),
        platform=str(d["platform"]),
        created_at=created,
        finished_at=_when(d["finished_at"]),
        prompt=str(d["prompt"]),
        final_prompt=str(d["final_prompt"]),
        seed=None if d["seed"] is None else int(d["seed"]),
        model=d["model"],
        steps=None if d["steps"] is None else int(d["steps"]),
        width=int(d["width"]),
        height=int(d["height"]),
        preset=str(d["preset"]),
        preset_version=str(d["preset_version"]),
        favourites=int(d["favourites"]),
        likes=int(d["likes"]),
        dislikes=int(d["dislikes"]),
        grid_favourites=int(d["grid_favourites"]),
        grid_likes=int(d["grid_likes"]),
        grid_dislikes=int(d["grid_dislikes"]),
        approved=bool(d["approved"]),
        approved_by=tuple(d["approved_by"] or ()),
        approved_at=_when(d["approved_at"]),
        palette_score=_float(d["palette_score"]),
        storage_key=str(d["storage_key"]),
    )


_APPROVED_BY = [f.name for f in fields(ImageRow)].index("approved_by")


def _image_row_from_db(row: Sequence[Any]) -> ImageRow:
    """The fast path for the per-image statement: its columns are ImageRow's, in order."""
    values = list(row)
    values[_APPROVED_BY] = tuple(values[_APPROVED_BY])
    return ImageRow(*values)


_N_IMAGE_COLUMNS = len(fields(ImageRow))


@dataclass(frozen=True)
class _Picks:
    top_images: tuple[ImageRow, ...]
    approved_images: tuple[ImageRow, ...]
    lineage: tuple[Lineage, ...]
    recent_images: tuple[ImageRow, ...]


def _picks(picks: Sequence[Any]) -> _Picks:
    """_PICKS' rows: top images, approved ones (in order of approval), lineage, contact sheet."""
    chains = {
        root: tuple(_step(s) for s in steps) for root, steps in (_json(picks[0][1]) or {}).items()
    }
    approved: list[ImageRow] = []
    lineage: list[Lineage] = []
    for row in picks:
        if row[-1] is None:  # no approved image at all (n)
            continue
        image = _image_row_from_db(row[3 : 3 + _N_IMAGE_COLUMNS])
        approved.append(image)
        steps = chains.get(row[-2])  # lineage_root
        if steps is not None:
            lineage.append(Lineage(image.generation_id, image.index, image.storage_key, steps))
    top = tuple(_image_row(d) for d in _json(picks[0][0]) or ())
    recent = tuple(_image_row(d) for d in _json(picks[0][2]) or ())
    return _Picks(top, tuple(approved), tuple(lineage), recent)


def _step(s: Mapping[str, Any]) -> LineageStep:
    return LineageStep(
        depth=int(s["depth"]),
        generation_id=str(s["generation_id"]),
        kind=str(s["kind"]),
        used_index=None if s["used_index"] is None else int(s["used_index"]),
        user=str(s["user"]),
        prompt=str(s["prompt"]),
        created_at=_when(s["created_at"]) or datetime.min.replace(tzinfo=UTC),
    )


# --- renderers -----------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _range_words(report: CampaignReport) -> str:
    if report.since is None and report.until is None:
        return "all time"
    return f"{report.since or '…'} – {report.until or '…'}"


def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return out


def to_markdown(report: CampaignReport) -> str:
    """The terminal and chat rendering: headline figures, breakdowns, top and approved images."""
    t, e, c = report.totals, report.engagement, report.cost
    lines = [
        f"# Campaign report: {report.campaign.name}",
        "",
        f"Preset {report.campaign.preset} · {_range_words(report)} · generated "
        f"{report.generated_at:%Y-%m-%d %H:%M} UTC"
        + (" · users pseudonymised" if report.pseudonymised else ""),
        "",
        "## Totals",
        "",
        f"- **{t.requests:,}** requests → **{t.images:,}** images by **{t.users:,}** people",
        f"- {t.imagines:,} imagine · {t.variations:,} variations · {t.upscales:,} upscales · "
        f"{t.rerolls:,} rerolls",
        f"- {t.done:,} done · {t.failed:,} failed · {t.cancelled:,} cancelled · "
        f"{t.pending:,} pending · {t.blocked_prompts:,} blocked prompts",
        "",
        "## Engagement",
        "",
        f"- ⭐ {e.favourites:,} favourites (+{e.grid_favourites:,} on whole grids) · "
        f"👍 {e.likes:,} · 👎 {e.dislikes:,} · ✅ {e.approvals:,} approvals",
        f"- favourite rate {_pct(e.favourite_rate)} ({e.favourited_images:,} images) · "
        f"approval rate {_pct(e.approval_rate)} ({e.approved_images:,} images)",
        f"- median time to first favourite {_duration(e.median_seconds_to_first_favourite)} · "
        f"to approval {_duration(e.median_seconds_to_approval)}",
        "",
        "## Cost and speed",
        "",
        f"- GPU {_fmt(c.gpu_seconds)} s in all · {_fmt(c.gpu_seconds_per_approved_image)} s "
        "per approved image",
        f"- queue wait p50 {_duration(c.queue_wait_p50)} · p95 {_duration(c.queue_wait_p95)}",
        f"- generation time p50 {_duration(c.generation_p50)} · p95 {_duration(c.generation_p95)}",
    ]
    head = ["", "requests", "images", "⭐ rate", "✅ images", "GPU s"]
    for title, slices in (
        ("Per user", report.per_user),
        ("Per preset version", report.per_preset_version),
        ("Per platform", report.per_platform),
        ("Per day", report.per_day),
    ):
        if not slices:
            continue
        lines += ["", f"## {title}", ""]
        lines += _md_table(
            head,
            [
                (
                    s.key,
                    f"{s.requests:,}",
                    f"{s.images:,}",
                    _pct(s.favourite_rate),
                    f"{s.approved_images:,}",
                    _fmt(s.gpu_seconds),
                )
                for s in slices
            ],
        )
    for title, images in (
        ("Most favourited", report.top_images),
        ("Approved", report.approved_images),
    ):
        lines += ["", f"## {title}", ""]
        if not images:
            lines.append("_none_")
            continue
        lines += _md_table(
            ["image", "⭐", "by", "approved by", "seed", "preset", "prompt"],
            [
                (
                    f"{i.generation_id[:8]}#{i.index}",
                    i.favourites,
                    i.user,
                    ", ".join(i.approved_by) or "–",
                    i.seed if i.seed is not None else "–",
                    f"{i.preset}@{i.preset_version[:8]}",
                    i.prompt,
                )
                for i in images
            ],
        )
    if any(len(chain.steps) > 1 for chain in report.lineage):
        lines += ["", "## Lineage of approved images", ""]
        for chain in report.lineage:
            if len(chain.steps) > 1:
                path = " ← ".join(
                    f"{s.kind} {s.generation_id[:8]}"
                    + (f"#{s.used_index}" if s.used_index is not None else "")
                    for s in chain.steps
                )
                lines.append(f"- {chain.generation_id[:8]}#{chain.index}: {path}")
    return "\n".join(lines) + "\n"


CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ImageRow))


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, tuple):
        return "; ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def _image_csv(images: Sequence[ImageRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for image in images:
        writer.writerow([_csv_value(getattr(image, name)) for name in CSV_COLUMNS])
    return out.getvalue()


def to_csv(report: CampaignReport) -> str:
    """One row per image (columns: ``CSV_COLUMNS``); needs a report built with its images."""
    if report.images is None:
        raise ValueError("this report was built with include_images=False; the CSV needs them")
    return _image_csv(report.images)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def report_dict(report: CampaignReport) -> dict[str, Any]:
    """The JSON document as a dict; keys documented in ``docs/reports.md``."""
    doc = {
        "totals": asdict(report.totals),
        "engagement": asdict(report.engagement),
        "cost": asdict(report.cost),
        "breakdowns": {
            "per_user": [asdict(s) for s in report.per_user],
            "per_preset_version": [asdict(s) for s in report.per_preset_version],
            "per_day": [asdict(s) for s in report.per_day],
            "per_platform": [asdict(s) for s in report.per_platform],
        },
        "top_images": [asdict(i) for i in report.top_images],
        "approved_images": [asdict(i) for i in report.approved_images],
        "lineage": [asdict(chain) for chain in report.lineage],
        "images": None if report.images is None else [asdict(i) for i in report.images],
        "campaign": asdict(report.campaign),
        "range": {"since": report.since, "until": report.until},
        "generated_at": report.generated_at,
        "pseudonymised": report.pseudonymised,
        "schema_version": SCHEMA_VERSION,
    }
    result: dict[str, Any] = _jsonable(doc)
    return result


def to_json(report: CampaignReport) -> str:
    return json.dumps(report_dict(report), ensure_ascii=False, indent=2) + "\n"


def to_html(report: CampaignReport, thumbnails: Mapping[str, bytes]) -> str:
    """A single self-contained HTML page; ``thumbnails`` maps storage keys to original bytes."""
    from core.reports.html import render_html

    return render_html(report, thumbnails)


# --- export --------------------------------------------------------------------------------


async def export_zip(
    source: Source,
    campaign: str,
    which: Literal["approved", "favourites"],
    out: Path,
    read_image: Callable[[str], Awaitable[bytes]],
    pseudonymise: bool = False,
) -> int:
    """Write the approved (or favourited) originals and a ``manifest.csv`` to ``out``.

    Returns the number of images written. Files are named ``<generation>-<index>.<ext>`` after
    the stored key's extension; the manifest has the CSV report's columns plus ``file``.
    """
    report = await build_report(source, campaign, pseudonymise=pseudonymise, sheet=0)
    assert report.images is not None
    if which == "approved":
        chosen = [i for i in report.images if i.approved]
    else:
        chosen = [i for i in report.images if i.favourites > 0]
    manifest = io.StringIO()
    writer = csv.writer(manifest, lineterminator="\n")
    writer.writerow(("file", *CSV_COLUMNS))
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for image in chosen:
            suffix = Path(image.storage_key).suffix or ".png"
            name = f"{image.generation_id}-{image.index}{suffix}"
            archive.writestr(name, await read_image(image.storage_key))
            writer.writerow([name, *(_csv_value(getattr(image, c)) for c in CSV_COLUMNS)])
        archive.writestr("manifest.csv", manifest.getvalue())
    return len(chosen)
