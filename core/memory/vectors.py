"""Image embeddings in pgvector: written beside the worker, read by search.

``image_embeddings`` (made by the migration only where the server has pgvector) holds one
unit-length vector per image and embedding model. Reading:

- text → images: the query's text embedding, nearest images by cosine distance, fused with the
  keyword ranking by reciprocal rank fusion in one statement (``core.memory.search``);
- more like this: the image's own embedding, nearest images first (itself at distance 0).

Writing: ``embed_pending`` claims a batch of images that have no vector for the model yet
(``FOR UPDATE SKIP LOCKED``: any number of workers share the work), reads their originals from
the store, embeds them in a thread and saves the vectors; the indexer calls it after each batch
of perceptual hashes, and ``onbrand search reindex`` backfills with it.

Each HNSW index serves one width (``embedding::vector(N)``, partial on ``vector_dims = N``);
``ensure_index`` adds the one for a model's width the first time it is used.
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.database import Database
from core.ports import Embedder, ImageStore

log = logging.getLogger(__name__)

BATCH = 32
DEPTH = 40  # candidates each ranking (keyword, vector) brings to the fusion (≥ the page)
RRF_K = 60  # reciprocal rank fusion: score = Σ 1 / (RRF_K + rank), as in Cormack et al. 2009
EF_SEARCH = 40  # HNSW candidate list (pgvector's default); iterative scans read on for filters
# The most index tuples one filtered vector scan reads (pgvector's default is 20,000): bounds a
# filtered query's time (bench search's data at --scale 0.05 --vectors 1, 200,000 vectors, a
# campaign keeping 4%: more like this p95 1.1 s → 0.13 s with DEPTH and ef_search 100 → 40 and
# this cap); a filter that keeps under ~1% may then find fewer than DEPTH.
MAX_SCAN_TUPLES = 5000
# When at most this many vectors pass the filters that the embedding rows carry (workspace,
# campaign, since), all of them are compared, exactly, instead of walking the graph: found
# through ix_image_embeddings_scope, that is faster than an iterative scan that reads ~1/selectivity
# candidates per result, and it never misses one.
EXACT_MAX = 20_000

# The filters the embedding rows answer themselves (copies kept by triggers, migration
# e3b7a4c9d215): the workspace, the campaign and the generation's queued_at.
ON_EMBEDDINGS = {
    "scope": "e.workspace_id = (SELECT id FROM workspaces "
    "WHERE platform = :platform AND external_id = :workspace)",
    "campaign": "e.campaign_id = :campaign_id",
    "since": "e.generation_queued_at >= :since",
}
# The rest (the user, approved, favourites) through the image's generation, per candidate.
_THROUGH_IMAGES = """(SELECT true FROM images im
           JOIN generations g ON g.id = im.generation_id
           JOIN users u ON u.id = g.user_id
           JOIN workspaces w ON w.id = u.workspace_id
           WHERE im.id = e.image_id AND {where} LIMIT 1)"""

# The images nearest the query vector that pass the filters, ``:depth`` of them. From the graph
# (``{distance}`` the indexed expression ``embedding::vector(N)``), read in order with the filters
# checked on each candidate, the scan stopping once ``:depth`` rows pass (iterative scans,
# ``tune``); or, exactly (``{distance}`` on the bare column, which no index serves), every
# vector that passes. Re-sorted exactly after, since the graph's order is relaxed.
_NEAREST = """nn AS MATERIALIZED (
    SELECT e.image_id, {distance} AS d
    FROM image_embeddings e
    WHERE e.model = :model AND vector_dims(e.embedding) = {dims} AND {where}
    ORDER BY d LIMIT :depth
)"""
_GRAPH = "e.embedding::vector({dims}) <=> CAST(:qvec AS vector({dims}))"
_EXACT = "e.embedding <=> CAST(:qvec AS vector)"
_PASSING = """SELECT count(*) FROM (
    SELECT 1 FROM image_embeddings e WHERE e.model = :model AND {where} LIMIT :most
) x"""


async def nearest(
    session: AsyncSession,
    dims: int,
    on_embeddings: list[str],
    elsewhere: list[str],
    params: dict[str, Any],
) -> str:
    """The ``nn`` CTE: the nearest images passing ``on_embeddings`` (conditions on ``e``, from
    ``ON_EMBEDDINGS``) and ``elsewhere`` (conditions on ``im``, ``g``, ``u``, ``w``), exact
    when few pass the first, from the HNSW index otherwise (which ``tune`` sets up)."""
    dims = int(dims)
    passing = await session.scalar(
        text(_PASSING.format(where=" AND ".join(on_embeddings) or "true")),
        params | {"most": EXACT_MAX + 1},
    )
    exact = int(passing or 0) <= EXACT_MAX
    if not exact:
        await tune(session)
    where = list(on_embeddings)
    if elsewhere:
        where.append(_THROUGH_IMAGES.format(where=" AND ".join(elsewhere)))
    distance = _EXACT if exact else _GRAPH.format(dims=dims)
    return _NEAREST.format(distance=distance, dims=dims, where=" AND ".join(where) or "true")


# Reciprocal rank fusion of the keyword ranking (kw) and the vector ranking (nn): an image's
# score is Σ 1 / (RRF_K + its rank in each), so one found by both comes before one found by
# either alone, and neither ranking's raw scores need to be comparable.
FUSED = """WITH kw AS MATERIALIZED (
    SELECT im.id AS image_id,
           row_number() OVER (ORDER BY {score} DESC, g.queued_at DESC, im.id) AS r
    FROM {source}
    JOIN images im ON im.generation_id = g.id
    JOIN users u ON u.id = g.user_id
    JOIN workspaces w ON w.id = u.workspace_id
    WHERE {where}
    ORDER BY r LIMIT :depth
), {nearest}, fused AS (
    SELECT image_id, sum(1.0 / (:rrf_k + r)) AS score FROM (
        SELECT image_id, r FROM kw
        UNION ALL
        SELECT image_id, row_number() OVER (ORDER BY d, image_id) FROM nn
    ) ranked GROUP BY image_id
)"""


@dataclass(frozen=True)
class QueryVector:
    """What the vector arm of a search compares with: ``model``'s vectors of width ``dims``
    against ``vector`` (a text's embedding), or, for more like this, the like image's own."""

    model: str
    dims: int
    vector: Sequence[float] | None = None


def literal(vector: Sequence[float]) -> str:
    """pgvector's text form, ``[0.1,0.2,…]`` (bound as a parameter, cast to vector)."""
    return "[" + ",".join(f"{float(x):.9g}" for x in vector) + "]"


async def has_vectors(session: AsyncSession) -> bool:
    """Whether this database has the embeddings table (pgvector was there at migration)."""
    return bool(await session.scalar(text("SELECT to_regclass('image_embeddings') IS NOT NULL")))


async def vectors_available(db: Database) -> bool:
    async with db.sessions() as session:
        return await has_vectors(session)


async def ensure_index(session: AsyncSession, dims: int) -> None:
    """The HNSW index for vectors of width ``dims`` (the migration makes 512's)."""
    dims = int(dims)
    await session.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS ix_image_embeddings_hnsw_{dims} ON image_embeddings "
            f"USING hnsw ((embedding::vector({dims})) vector_cosine_ops) "
            f"WHERE vector_dims(embedding) = {dims}"
        )
    )


async def tune(session: AsyncSession) -> None:
    """HNSW settings for this transaction: a deeper candidate list, and iterative scans so a
    filtered query keeps reading the index until its page is full (pgvector ≥ 0.8)."""
    await session.execute(
        text(
            "SELECT set_config('hnsw.ef_search', :ef, true), "
            "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.max_scan_tuples', :most, true)"
        ),
        {"ef": str(EF_SEARCH), "most": str(MAX_SCAN_TUPLES)},
    )


_PENDING = """
FROM images im
WHERE NOT EXISTS (SELECT 1 FROM image_embeddings e
                  WHERE e.model = :model AND e.image_id = im.id) {more}
"""
_CLAIM = (
    "SELECT im.id, im.storage_key "
    + _PENDING
    + " ORDER BY im.id LIMIT :batch FOR UPDATE OF im SKIP LOCKED"
)
_SKIP = "AND NOT (im.id = ANY (:skip))"
_ONLY = "AND im.generation_id = ANY (CAST(:only AS uuid[]))"
_SAVE = """
INSERT INTO image_embeddings (image_id, model, embedding)
SELECT v.id, :model, CAST(v.vec AS vector)
FROM unnest(CAST(:ids AS bigint[]), CAST(:vecs AS text[])) AS v(id, vec)
ON CONFLICT (model, image_id) DO UPDATE SET embedding = EXCLUDED.embedding, created_at = now()
"""


async def unembedded(db: Database, model: str) -> int:
    async with db.engine.connect() as conn:
        found = await conn.scalar(
            text("SELECT count(*) " + _PENDING.format(more="")), {"model": model}
        )
        return int(found or 0)


async def save(
    session: AsyncSession, model: str, ids: Sequence[int], vectors: Sequence[Sequence[float]]
) -> None:
    """Store (or replace) ``model``'s vectors of the images ``ids``."""
    if ids:
        await session.execute(
            text(_SAVE),
            {"model": model, "ids": list(ids), "vecs": [literal(v) for v in vectors]},
        )


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


async def embed_pending(
    db: Database,
    store: ImageStore,
    embedder: Embedder,
    *,
    batch: int = BATCH,
    skip: set[int] | None = None,
    only: Sequence[uuid.UUID] | None = None,
) -> int:
    """Embed one batch of images with no vector for ``embedder`` yet (of the generations
    ``only``, if given); the number claimed (0: none left). Images missing from the store go
    to ``skip`` so a later batch doesn't claim them again."""
    skip = skip if skip is not None else set()
    params: dict[str, Any] = {"model": embedder.name, "batch": batch, "skip": sorted(skip)}
    more = _SKIP + (" " + _ONLY if only is not None else "")
    if only is not None:
        params["only"] = list(only)
    async with db.transaction() as session:
        rows = (await session.execute(text(_CLAIM.format(more=more)), params)).all()
        ids: list[int] = []
        images: list[Image.Image] = []
        for image_id, key in rows:
            try:
                images.append(_open(await store.get(key)))
            except (KeyError, OSError, ValueError) as exc:  # missing or unreadable original
                log.warning("can't embed image %s (%s): %s", image_id, key, exc)
                skip.add(image_id)
                continue
            ids.append(image_id)
        if ids:
            vectors = await asyncio.to_thread(embedder.embed_images, images)
            await save(session, embedder.name, ids, vectors)
    return len(rows)


async def reindex_vectors(
    db: Database,
    store: ImageStore,
    embedder: Embedder,
    progress: Callable[[int, int], None] | None = None,
    *,
    batch: int = BATCH,
) -> tuple[int, int]:
    """Embed every image that has no vector for ``embedder``; (embedded, skipped)."""
    async with db.transaction() as session:
        await ensure_index(session, embedder.dims)
    total = await unembedded(db, embedder.name)
    skip: set[int] = set()
    done = 0
    while claimed := await embed_pending(db, store, embedder, batch=batch, skip=skip):
        done += claimed
        if progress is not None:
            progress(min(done, total), total)
    return done - len(skip), len(skip)
