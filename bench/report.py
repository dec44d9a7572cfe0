"""``python -m bench report [--scale S]``: the campaign report on a million-generation database.

Creates its own database on the test server (``DATABASE_URL``, else postgres on 127.0.0.1:5432),
migrates it, seeds 1,000,000 generations, 4,000,000 images and 1,000,000 feedback rows across 50
campaigns (times ``--scale``) with server-side ``INSERT … SELECT generate_series`` (no rows travel
over the wire), VACUUM ANALYZEs it, then times — median of 3 after one warm-up each —

- a plain ``SELECT count(*) FROM images`` (the yardstick),
- ``build_report`` for the largest campaign without the per-image rows (what chat, markdown and the
  HTML contact sheet show),
- ``build_report`` with the per-image rows (what the CSV and JSON exports carry),

prints them with the ratios to the count(*) scan, and drops the database (``--keep`` keeps it;
``--database NAME`` reuses a kept one without seeding).

The shape: campaigns 2–50 each own a stretch of the year (like real, time-boxed campaigns); campaign
1, "flagship", is always on and takes every 25th generation, so its rows are spread over the whole
table (the hard case for locality). Every generation has 4 images (4M ÷ 1M); 40% of generations get
2–3 reactions from distinct users; 5% of the reactions are approvals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.report_seed import seed_statements
from bench.runner import Row, median, report
from core.db import Database, plain_url
from core.db.migrate import upgrade

DEFAULT_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


async def _seed(dsn: str, scale: float) -> dict[str, float]:
    timings: dict[str, float] = {}
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")  # no FK triggers in bulk
        await conn.execute("SET maintenance_work_mem = '256MB'")
        await conn.execute("SET work_mem = '256MB'")  # the images' counters: one hash join
        for label, sql in seed_statements(scale):
            start = time.perf_counter()
            await conn.execute(sql)
            timings[label] = time.perf_counter() - start
            print(f"  seeded {label} in {timings[label]:.1f} s", flush=True)
        start = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        timings["vacuum analyze"] = time.perf_counter() - start
        print(f"  vacuum analyze in {timings['vacuum analyze']:.1f} s", flush=True)
    finally:
        await conn.close()
    return timings


async def _largest_campaign(dsn: str) -> tuple[str, int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            """
            SELECT c.name, count(*) AS generations
            FROM generations g JOIN campaigns c ON c.id = g.campaign_id
            GROUP BY c.name ORDER BY count(*) DESC, c.name LIMIT 1
            """
        )
        assert row is not None
        images = await conn.fetchval(
            """
            SELECT count(*) FROM images i JOIN generations g ON g.id = i.generation_id
            JOIN campaigns c ON c.id = g.campaign_id WHERE c.name = $1
            """,
            row["name"],
        )
        return str(row["name"]), int(row["generations"]), int(images)
    finally:
        await conn.close()


async def _timed(fn: object, repeat: int) -> list[float]:
    await fn()  # type: ignore[operator]  # warm-up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return samples


async def _interleaved(fns: Sequence[Any], repeat: int) -> list[list[float]]:
    for fn in fns:
        await fn()  # warm-up
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, samples, strict=True):
            start = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - start)
    return samples


async def _measure(url: str, repeat: int) -> tuple[list[Row], dict[str, float]]:
    from core.reports.build import build_report

    name, generations, images = await _largest_campaign(plain_url(url))
    db = Database(url)
    try:

        async def count_images() -> None:
            async with db.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT count(*) FROM images")

        async def summary() -> None:
            await build_report(db, name, include_images=False)

        async def full() -> None:
            await build_report(db, name)

        async def probing() -> None:
            with _probing_per_generation():
                await build_report(db, name, include_images=False)

        # the two shapes must agree (a seed that wrote wrong copies would show here)
        when = datetime(2026, 1, 1, tzinfo=UTC)
        now = replace(await build_report(db, name, include_images=False), generated_at=when)
        with _probing_per_generation():
            before = await build_report(db, name, include_images=False)
        assert now == replace(before, generated_at=when), "the report scope copies are wrong"

        # the count, the summary and the summary the old way take turns (a busy machine's
        # slow spells then hit all three alike)
        counts, summaries, probings = await _interleaved((count_images, summary, probing), repeat)
        count_s, summary_s, probing_s = median(counts), median(summaries), median(probings)
        full_s = median(await _timed(full, repeat))
    finally:
        await db.dispose()
    where = {"campaign": name, "generations": generations, "images": images}
    rows = [
        Row("count(*) images", count_s * 1000, "ms"),
        Row("report (summary)", summary_s * 1000, "ms", where),
        Row("report (summary, probing per generation)", probing_s * 1000, "ms", where),
        Row("report (+ image rows)", full_s * 1000, "ms", where),
    ]
    ratios = {
        "report summary / count(*)": summary_s / count_s,
        "report summary probing per generation / count(*)": probing_s / count_s,
        "report full / count(*)": full_s / count_s,
    }
    return rows, ratios


async def run(args: argparse.Namespace) -> int:
    admin = plain_url(os.environ.get("DATABASE_URL") or DEFAULT_ADMIN)
    name = args.database or f"onbrand_bench_{uuid.uuid4().hex[:10]}"
    url = _with_database(admin, name)
    seeded: dict[str, float] = {}
    if not args.database:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
    try:
        if not args.database:
            db = Database(url)
            try:
                await upgrade(db)
            finally:
                await db.dispose()
            print(f"seeding {name} at scale {args.scale}", flush=True)
            seeded = await _seed(url, args.scale)
        if args.indexes:
            conn = await asyncpg.connect(url)
            try:
                for ddl in RECOMMENDED_INDEXES:
                    await conn.execute(ddl)
                await conn.execute("VACUUM ANALYZE generations")
                await conn.execute("VACUUM ANALYZE feedback")
            finally:
                await conn.close()
        rows, ratios = await _measure(url, args.repeat)
    finally:
        if not args.keep and not args.database:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
        elif args.keep:
            print(f"kept database {name}")
    notes = f"scale={args.scale}; seed seconds: " + ", ".join(
        f"{k} {v:.1f}" for k, v in seeded.items()
    )
    report(
        "report" if args.scale == 1.0 else f"report-scale-{args.scale:g}",
        rows,
        ratios=ratios,
        notes=notes,
    )
    return 0


@contextlib.contextmanager
def _probing_per_generation() -> Iterator[None]:
    """The report as it was before migration 004631b64596: the campaign's feedback and image
    counts found with one index probe per generation instead of the copied report scope. Since
    de10912017cf the summary reads neither through those fragments, so this runs the same
    statements as the summary (its timing shows the noise of a run)."""
    from core.reports import build, queries

    def old(**kwargs: Any) -> queries.Statements:
        new = queries.statements(**kwargs)
        swap = {
            "f.campaign_id = :cid": "f.generation_id = ANY (ARRAY(SELECT id FROM g)) AND :cid > 0",
            "FROM images WHERE campaign_id = :cid": (
                "FROM images WHERE generation_id = ANY (ARRAY(SELECT id FROM g)) AND :cid > 0"
            ),
        }
        texts = {}
        for field in ("figures", "picks", "images"):
            text = getattr(new, field)
            for a, b in swap.items():
                text = text.replace(a, b)
            texts[field] = re.sub(r"AND generation_queued_at [<>]= :(lo|hi)", "", text)
        return queries.Statements(**texts)

    saved = build.statements
    build.statements = old  # type: ignore[assignment]
    try:
        yield
    finally:
        build.statements = saved


# Indexes the report would like beyond the schema's own (see docs/reports.md); ``--indexes``
# creates them in the bench database to measure the difference.
RECOMMENDED_INDEXES: tuple[str, ...] = (
    # a generation's feedback by index only
    "CREATE INDEX IF NOT EXISTS ix_feedback_generation_id_report ON feedback (generation_id) "
    "INCLUDE (image_id, user_id, kind, created_at)",
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench report", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 1M/4M/1M rows")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (the median is shown)")
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    parser.add_argument("--database", help="reuse this kept database instead of seeding one")
    parser.add_argument("--indexes", action="store_true", help="create RECOMMENDED_INDEXES first")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))
