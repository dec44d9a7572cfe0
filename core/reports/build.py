"""Building a campaign report: run the statements of ``core.reports.queries``, map the rows.

The report reads one snapshot. Given a ``Database``, ``build_report`` opens a REPEATABLE READ,
read-only transaction and runs the figures and the picks at the same time on two connections,
the second importing the first's snapshot (``pg_export_snapshot``), so the two halves use two
cores. The per-image rows that the CSV and JSON exports carry come from a third statement in
the same snapshot (``include_images=False`` skips it).

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
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncResult, AsyncSession

from core.db.database import Database
from core.errors import NotFound, UserError
from core.memory.duplicates import clusters
from core.reports.acceptance import acceptance
from core.reports.model import (
    CampaignInfo,
    CampaignReport,
    CostSpeed,
    Engagement,
    ImageRow,
    Totals,
)
from core.reports.queries import Which, statements
from core.reports.rows import Picks, as_float, as_json, image_row_from_db, picks_from, slices

__all__ = [
    "ROWS_PER_FETCH",
    "SHEET_IMAGES",
    "TOP_IMAGES",
    "Opened",
    "Source",
    "build_report",
    "open_report",
]

TOP_IMAGES = 12
SHEET_IMAGES = 48  # images on the HTML contact sheet by default (newest first)
MAX_LINEAGE_DEPTH = 50
ROWS_PER_FETCH = 1000  # per-image rows per round trip when they stream (open_report)

Source = AsyncSession | AsyncConnection | Database


async def build_report(
    source: Source,
    campaign: str,
    *,
    since: date | None = None,
    until: date | None = None,
    pseudonymise: bool = False,
    include_images: bool = True,
    memory: bool = False,
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
        async with _snapshot(source) as conn:
            report = await _build(
                conn, campaign, since, until, pseudonymise, include_images, top, sheet, source
            )
            return await _with_memory(conn, report) if memory else report
    report = await _build(source, campaign, since, until, pseudonymise, include_images, top, sheet)
    return await _with_memory(source, report) if memory else report


@contextlib.asynccontextmanager
async def _snapshot(db: Database) -> AsyncIterator[AsyncConnection]:
    """A connection in a REPEATABLE READ, read-only transaction: one snapshot for a report."""
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            yield conn


@dataclass(frozen=True)
class Opened:
    """A report whose per-image rows stream: ``images`` yields them from a server-side cursor,
    ``ROWS_PER_FETCH`` at a time, in the report's order; ``report`` (without ``images``) is the
    summary read from the same snapshot, or ``None`` when it was not asked for."""

    report: CampaignReport | None
    images: AsyncIterator[ImageRow]


@contextlib.asynccontextmanager
async def open_report(
    source: Source,
    campaign: str,
    *,
    since: date | None = None,
    until: date | None = None,
    pseudonymise: bool = False,
    which: Which = "all",
    summary: bool = True,
    memory: bool = False,
) -> AsyncIterator[Opened]:
    """``build_report``'s per-image rows (only the ``which`` ones), streamed in constant
    memory, beside its summary (``summary=False`` skips it): the CSV and JSON exports and
    ``export_zip`` write each row as it arrives. The rows are read inside the block; the
    transaction (our own given a ``Database``, else the caller's) stays open until it ends."""
    if since is not None and until is not None and since > until:
        raise UserError(f"The start date {since} is after the end date {until}; swap them.")
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(source, Database):
            conn = await stack.enter_async_context(_snapshot(source))
        elif isinstance(source, AsyncSession):
            conn = await source.connection()
        else:
            conn = source
        report = None
        if summary:
            report = await _build(
                conn, campaign, since, until, pseudonymise, False, TOP_IMAGES, 0,
                source if isinstance(source, Database) else None,
            )  # fmt: skip
            report = await _with_memory(conn, report) if memory else report
        else:
            await _settings(conn)
        cid = await _campaign_id(conn, campaign)
        params = _params(cid, pseudonymise, since, until)
        sql = statements(since=since is not None, until=until is not None, which=which).images
        result = await conn.stream(text(sql), params)
        try:
            yield Opened(report, _rows(result))
        finally:
            await result.close()


async def _rows(result: AsyncResult[Any]) -> AsyncIterator[ImageRow]:
    async for part in result.partitions(ROWS_PER_FETCH):
        for row in part:
            yield image_row_from_db(row)


async def _campaign_id(conn: AsyncSession | AsyncConnection, campaign: str) -> int:
    found = await conn.execute(text("SELECT id FROM campaigns WHERE name = :n"), {"n": campaign})
    cid = found.scalar_one_or_none()
    if cid is None:
        raise _unknown(campaign)
    return int(cid)


def _unknown(campaign: str) -> NotFound:
    return NotFound(
        f"There is no campaign called “{campaign}”. Check the name with `onbrand campaign list`."
    )


def _params(cid: int, pseudonymise: bool, since: date | None, until: date | None) -> dict[str, Any]:
    params: dict[str, Any] = {"cid": cid, "pseudo": pseudonymise}
    if since is not None:
        params["lo"] = datetime.combine(since, time(), UTC)
    if until is not None:
        params["hi"] = datetime.combine(until + timedelta(days=1), time(), UTC)
    return params


async def _with_memory(
    conn: AsyncSession | AsyncConnection, report: CampaignReport
) -> CampaignReport:
    """The report plus what ``core.memory`` knows (near-duplicate clusters of approved images)
    and acceptance per week: off by default, since they cost more than the summary itself (at
    50,000 generations ~150 ms beside its ~100 ms); ``onbrand report`` asks for them."""
    found = await conn.execute(
        text("SELECT id FROM campaigns WHERE name = :name"), {"name": report.campaign.name}
    )
    cid = found.scalar_one()
    params: dict[str, Any] = {"cid": cid}
    if report.since is not None:
        params["lo"] = datetime.combine(report.since, time(), UTC)
    if report.until is not None:
        params["hi"] = datetime.combine(report.until + timedelta(days=1), time(), UTC)
    near = tuple(await clusters(conn, cid)) if report.engagement.approved_images else ()
    return replace(report, near_duplicates=near, acceptance=await acceptance(conn, params))


async def _settings(conn: AsyncSession | AsyncConnection) -> None:
    # The estimated cost of these big statements is far above jit_above_cost; compiling them
    # takes seconds while running them takes milliseconds. SET LOCAL ends with the transaction.
    await conn.execute(text("SET LOCAL jit = off"))
    await conn.execute(text("SET LOCAL work_mem = '64MB'"))  # hashes and sorts stay in memory


async def _picks_beside(db: Database, snapshot: str, sql: str, params: dict[str, Any]) -> Picks:
    """Run ``sql`` (the picks) on a second connection that reads the exported ``snapshot``."""
    if not re.fullmatch(r"[0-9A-Fa-f-]+", snapshot):
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            # must come first in the transaction, before any query
            await conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            await _settings(conn)
            return picks_from(await _records(conn, sql, params))


async def _records(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> Sequence[Any]:
    """``sql``'s rows as asyncpg's own records, fetched on ``conn``'s driver connection (in its
    transaction): for the picks' 3,798 rows of the flagship campaign, fetching and mapping took
    ~170 ms through SQLAlchemy's rows and ~135 ms this way. ``text`` still binds the names."""
    compiled = text(sql).bindparams(**params).compile(dialect=conn.dialect)
    args = [compiled.params[name] for name in compiled.positiontup or ()]
    raw = await conn.get_raw_connection()
    records: Sequence[Any] = await raw.driver_connection.fetch(compiled.string, *args)  # type: ignore[union-attr]
    return records


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
        raise _unknown(campaign)
    await _settings(conn)
    info = CampaignInfo(
        found.name, found.preset_name, found.starts_on, found.ends_on, found.gpu_budget_seconds
    )
    params = _params(found.id, pseudonymise, since, until)
    sql = statements(since=since is not None, until=until is not None)
    picks_params = {**params, "top": top, "sheet": sheet, "max_depth": MAX_LINEAGE_DEPTH}
    if beside is not None:
        # Our own REPEATABLE READ transaction: the picks run on a second connection in the
        # same snapshot while this one computes the figures (two cores instead of one).
        snapshot = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
        picking = asyncio.create_task(_picks_beside(beside, snapshot, sql.picks, picks_params))
        figured = False
        try:
            row = (await conn.execute(text(sql.figures), params)).one()
            figured = True
        finally:
            if not figured:  # failed or cancelled: the picks are not wanted either
                picking.cancel()
                await asyncio.gather(picking, return_exceptions=True)
        picks = await picking
    else:  # the caller's transaction (it may hold uncommitted rows): one after the other
        row = (await conn.execute(text(sql.figures), params)).one()
        picks = picks_from((await conn.execute(text(sql.picks), picks_params)).all())
    t = as_json(row.totals)
    queue_wait = t["queue_wait"] or [None, None]
    generation = t["generation"] or [None, None]
    images = int(t["images"])
    approved = int(t["approved_images"])
    favourited = int(t["favourited_images"])
    gpu = float(t["gpu_seconds"])

    rows: tuple[ImageRow, ...] | None = None
    if include_images:
        result = await conn.execute(text(sql.images), params)
        rows = tuple(image_row_from_db(r) for r in result)

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
            undelivered=int(t["undelivered"]),
            packs=int(t.get("packs") or 0),
            pack_files=int(t.get("pack_files") or 0),
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
            median_seconds_to_first_favourite=as_float(t["to_favourite"]),
            median_seconds_to_approval=as_float(t["to_approval"]),
        ),
        cost=CostSpeed(
            gpu_seconds=gpu,
            gpu_seconds_per_approved_image=gpu / approved if approved else None,
            queue_wait_p50=as_float(queue_wait[0]),
            queue_wait_p95=as_float(queue_wait[1]),
            generation_p50=as_float(generation[0]),
            generation_p95=as_float(generation[1]),
        ),
        per_user=slices(row.per_user),
        per_preset_version=slices(row.per_preset),
        per_day=slices(row.per_day),
        per_platform=slices(row.per_platform),
        top_images=picks.top_images,
        approved_images=picks.approved_images,
        lineage=picks.lineage,
        recent_images=picks.recent_images,
        images=rows,
    )
