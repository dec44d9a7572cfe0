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
import math
import os
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.runner import Row, median, report
from core.db import Database, plain_url
from core.db.migrate import upgrade

DEFAULT_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CAMPAIGNS = 50
PRESETS = 5
VERSIONS = 4


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def _coprime_step(n: int, start: int = 37) -> int:
    step = start
    while math.gcd(step, n) != 1:
        step += 1
    return step


def seed_statements(scale: float) -> list[tuple[str, str]]:
    """(label, SQL) pairs that fill an empty, migrated database."""
    n_gen = max(100, round(1_000_000 * scale))
    n_users = max(20, round(400 * scale))
    n_hot = max(10, round(0.4 * n_gen))  # generations that get feedback
    n_feedback = max(10, round(1_000_000 * scale))
    step = _coprime_step(n_gen)
    blocked = max(5, n_gen // 100)

    # gen n → campaign: every 25th is the flagship (1), else the stretch-of-the-year campaign.
    def campaign_of(n: str) -> str:
        return f"(CASE WHEN {n} % 25 = 0 THEN 1 ELSE 2 + ({n} * 49) / {n_gen} END)"

    # generation n's queued_at; images and feedback carry copies of it and of its campaign
    # (triggers keep them in the app; the seed runs with triggers off, so it writes them)
    def queued_of(n: str) -> str:
        return (
            f"(timestamptz '2026-01-01 00:00+00' + ({n}::float8 / {n_gen}) * interval '365 days')"
        )

    uuid_of = "lpad(to_hex({}), 32, '0')::uuid"
    return [
        (
            "workspaces, users, presets, campaigns",
            f"""
            INSERT INTO workspaces (id, platform, external_id, name) VALUES
                (1, 'slack', 'T0ACME', 'Acme'), (2, 'discord', '9000001', 'Acme Discord');
            INSERT INTO users (id, platform, workspace_id, external_id, display_name)
            SELECT u, CASE WHEN u % 2 = 1 THEN 'slack' ELSE 'discord' END, 2 - u % 2,
                   'U' || lpad(u::text, 6, '0'), 'Person ' || u
            FROM generate_series(1, {n_users}) u;
            INSERT INTO presets (id, name, version, yaml_text)
            SELECT 1 + p * {VERSIONS} + v, 'brand-' || p, left(md5(p || ':' || v), 12),
                   'name: brand-' || p
            FROM generate_series(0, {PRESETS - 1}) p, generate_series(0, {VERSIONS - 1}) v;
            INSERT INTO campaigns (id, name, preset_name, gpu_budget_seconds)
            SELECT c, CASE WHEN c = 1 THEN 'flagship' ELSE 'campaign-' || c END,
                   'brand-' || c % {PRESETS}, 1e6
            FROM generate_series(1, {CAMPAIGNS}) c;
            """,
        ),
        (
            "generations",
            f"""
            INSERT INTO generations (
                id, parent_id, source_index, kind, platform, user_id, campaign_id, preset_id,
                preset_name, preset_version, raw_prompt, final_prompt, negative_prompt, params,
                status, progress, attempts, queued_at, started_at, finished_at, gpu_seconds,
                reply_target, delivered_at)
            SELECT {uuid_of.format("n")},
                   CASE WHEN k % 10 >= 6 AND p >= 0 AND c = {campaign_of("p")} THEN
                       {uuid_of.format("p")}
                   END,
                   CASE WHEN k % 10 IN (6, 7, 8) AND p >= 0 AND c = {campaign_of("p")}
                       THEN 1 + k % 4 END,
                   (ARRAY['imagine','imagine','imagine','imagine','imagine','imagine',
                          'variation','variation','upscale','reroll'])[1 + k % 10],
                   CASE WHEN u % 2 = 1 THEN 'slack' ELSE 'discord' END,
                   u, c, 1 + (c % {PRESETS}) * {VERSIONS} + v,
                   'brand-' || c % {PRESETS}, left(md5((c % {PRESETS}) || ':' || v), 12),
                   'a sneaker on a beach at sunset, take ' || n % 997,
                   'a sneaker on a beach at sunset, take ' || n % 997
                       || ', brand colours, soft daylight, 35mm, clean background',
                   'text, watermark',
                   jsonb_build_object('seed', (n::bigint * 2654435761) % 4294967296,
                       'model', CASE WHEN v < 2 THEN 'sdxl-base-1.0' ELSE 'sdxl-turbo' END,
                       'steps', 30, 'width', 1024, 'height', 1024, 'n', 4, 'guidance', 7.0,
                       'engine', 'diffusers'),
                   (CASE WHEN (k * 31) % 100 = 97 THEN 'failed'
                         WHEN (k * 31) % 100 = 98 THEN 'cancelled' ELSE 'done' END),
                   1, 1, q, q + w, q + w + r, extract(epoch FROM r),
                   '{{"platform": "slack", "workspace_id": "T0ACME", "channel_id": "C1"}}',
                   q + w + r
            FROM (
                SELECT n, {campaign_of("n")} AS c,
                       -- k numbers a campaign's own generations; p is the previous one (parent)
                       CASE WHEN n % 25 = 0 THEN n / 25 ELSE n END AS k,
                       CASE WHEN n % 25 = 0 THEN n - 25
                            WHEN (n - 1) % 25 = 0 THEN n - 2 ELSE n - 1 END AS p,
                       1 + (n * 7 + {campaign_of("n")} * 13) % {n_users} AS u,
                       (n::bigint * {VERSIONS}) / {n_gen} AS v,
                       {queued_of("n")} AS q,
                       (1 + (n * 7919) % 600 / 10.0) * interval '1 second' AS w,
                       (2 + (n * 104729) % 400 / 10.0) * interval '1 second' AS r
                FROM generate_series(0::bigint, {n_gen - 1}) n
            ) s;
            """,
        ),
        (
            "images",
            f"""
            INSERT INTO images (id, generation_id, index, storage_key, sha256, width, height,
                                bytes, palette_score, created_at, campaign_id,
                                generation_queued_at)
            SELECT n * 4 + i, {uuid_of.format("n")}, i,
                   'img/' || to_hex(n * 4 + i) || '.png', md5(n::text) || md5(i::text),
                   1024, 1024, 1500000 + (n * 4 + i) % 100000, ((n * 13 + i) % 100) / 100.0,
                   {queued_of("n")}, {campaign_of("n")}, {queued_of("n")}
            FROM generate_series(0::bigint, {n_gen - 1}) n, generate_series(1, 4) i;
            """,
        ),
        (
            "feedback",
            f"""
            INSERT INTO feedback (id, generation_id, image_id, user_id, kind, emoji, created_at,
                                  campaign_id, generation_queued_at)
            SELECT j, {uuid_of.format("n")},
                   CASE WHEN kind = 'favourite' OR h / 100 % 10 < 7
                        THEN n * 4 + 1 + h / 1000 % 4 END,
                   1 + (n + 97 * k) % {n_users}, kind, '',
                   {queued_of("n")} + (h % 86400) * interval '1 second' + interval '1 minute',
                   {campaign_of("n")}, {queued_of("n")}
            FROM (
                SELECT j, k, h, (r * {step}) % {n_gen} AS n,
                       CASE WHEN h % 100 < 55 THEN 'favourite'
                            WHEN h % 100 < 80 THEN 'like'
                            WHEN h % 100 < 95 THEN 'dislike' ELSE 'approve' END AS kind
                FROM (SELECT j, j % {n_hot} AS r, j / {n_hot} AS k,
                             (j * 2654435761) >> 12 AS h  -- a hash: kinds independent of n
                      FROM generate_series(0::bigint, {n_feedback - 1}) j) jj
            ) s;
            """,
        ),
        (  # the counters the triggers keep (migration d770701256a5), filled as its backfill
            "generation counters",
            """
            UPDATE generations g
            SET image_count = c.i, favourites = c.fav, favourited_images = c.favd,
                approved_images = c.appd, grid_favourites = c.gfav, likes = c.l,
                dislikes = c.d, approvals = c.a
            FROM (
                SELECT id, sum(i) AS i, sum(fav) AS fav, sum(favd) AS favd, sum(appd) AS appd,
                       sum(gfav) AS gfav, sum(l) AS l, sum(d) AS d, sum(a) AS a
                FROM (
                    SELECT generation_id AS id, count(*) AS i, 0 AS fav, 0 AS favd, 0 AS appd,
                           0 AS gfav, 0 AS l, 0 AS d, 0 AS a
                    FROM images GROUP BY 1
                    UNION ALL
                    SELECT generation_id, 0,
                           count(*) FILTER (WHERE kind = 'favourite' AND image_id IS NOT NULL),
                           count(DISTINCT image_id) FILTER (WHERE kind = 'favourite'), 0,
                           count(*) FILTER (WHERE kind = 'favourite' AND image_id IS NULL),
                           count(*) FILTER (WHERE kind = 'like'),
                           count(*) FILTER (WHERE kind = 'dislike'),
                           count(*) FILTER (WHERE kind = 'approve')
                    FROM feedback GROUP BY 1
                    UNION ALL  -- approved images: directly or through their grid, once
                    SELECT generation_id, 0, 0, 0, count(*), 0, 0, 0, 0 FROM (
                        SELECT generation_id, image_id FROM feedback
                        WHERE kind = 'approve' AND image_id IS NOT NULL
                        UNION
                        SELECT i.generation_id, i.id FROM images i JOIN feedback a
                            ON a.generation_id = i.generation_id AND a.kind = 'approve'
                           AND a.image_id IS NULL) x
                    GROUP BY 1) u
                GROUP BY id) c
            WHERE g.id = c.id
            """,
        ),
        # the UPDATE leaves a dead version of every generation at once (twice the table; bench
        # search's keyword --campaign p50 29 -> 334 ms), as no live table does: rewrite it packed
        ("compact generations", "VACUUM FULL generations"),
        (
            "audit log",
            f"""
            INSERT INTO audit_log (actor, action, subject, campaign_id, details, at)
            SELECT 'slack:T0ACME:U' || lpad((1 + b % {n_users})::text, 6, '0'),
                   CASE WHEN b % 5 = 0 THEN 'binding.created' ELSE 'prompt.blocked' END,
                   'slack:C1', 1 + b % {CAMPAIGNS}, '{{"term": "rival"}}',
                   timestamptz '2026-01-01 00:00+00' + (b::float8 / {blocked}) * interval '365 days'
            FROM generate_series(0::bigint, {blocked - 1}) b;
            """,
        ),
    ]


async def _seed(dsn: str, scale: float) -> dict[str, float]:
    timings: dict[str, float] = {}
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")  # no FK triggers in bulk
        await conn.execute("SET maintenance_work_mem = '256MB'")
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
    counts found with one index probe per generation instead of the copied report scope."""
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
