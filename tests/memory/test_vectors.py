"""Vector search on PostgreSQL with pgvector (the embedded server's binaries), with a tiny
random-weight CLIP: the plumbing, checked against rankings computed with numpy from the same
model. Random weights say nothing about what images show; they make distinct vectors, which is
all the SQL needs to be tested honestly."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from core.db import Database
from core.errors import ConfigError, NotFound
from core.memory import vectors as vectors_module
from core.memory.embedder import ClipEmbedder
from core.memory.indexer import Indexer, indexing
from core.memory.model import Hit, ImageRef, Scope, SearchFilters
from core.memory.search import search
from core.memory.store import MemoryStore, search_features
from core.memory.vectors import QueryVector, reindex_vectors, save
from core.storage.local import LocalImageStore
from tests.memory.seed import B1, B2, B3, D1, E1, T0, U1, V1, image_id, seed

pytestmark = pytest.mark.integration

T1 = Scope("slack", "T1")
RRF_K = 60
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedder(tiny_clip: Path) -> ClipEmbedder:
    return ClipEmbedder(str(tiny_clip))


@pytest.fixture
async def team(vector_db: Database, tmp_path: Path) -> LocalImageStore:
    store = LocalImageStore(tmp_path / "images")
    await seed(vector_db, store)
    return store


async def expected_vectors(db: Database, store: LocalImageStore, embedder: ClipEmbedder
                           ) -> dict[str, np.ndarray]:  # fmt: skip
    """Every T1 image's embedding, computed here from its stored original with the same model."""
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT im.generation_id, im.index, im.storage_key FROM images im "
                    "JOIN generations g ON g.id = im.generation_id "
                    "WHERE g.reply_target->>'workspace_id' = 'T1'"
                )
            )
        ).all()
    pictures = [Image.open(io.BytesIO(await store.get(key))) for _, _, key in rows]
    vectors = embedder.embed_images(pictures)
    return {
        f"{g}:{i}": np.asarray(v, dtype=np.float64)
        for (g, i, _), v in zip(rows, vectors, strict=True)
    }


def by_distance(target: np.ndarray, vectors: dict[str, np.ndarray]) -> dict[str, float]:
    """Cosine distance of each vector to ``target``."""
    t = target / np.linalg.norm(target)
    return {ref: float(1.0 - v @ t / np.linalg.norm(v)) for ref, v in vectors.items()}


def assert_in_order(hits: tuple[Hit, ...], distance: dict[str, float]) -> None:
    """The hits are exactly ``distance``'s images, nearest first (ties within float32's
    precision may come either way)."""
    found = [str(h.ref) for h in hits]
    assert set(found) == set(distance)
    gaps = [distance[b] - distance[a] for a, b in itertools.pairwise(found)]
    assert min(gaps) > -1e-6, list(zip(found, [round(distance[r], 6) for r in found], strict=True))


async def test_each_image_is_its_own_nearest_neighbour(
    vector_db: Database, team: LocalImageStore, embedder: ClipEmbedder
) -> None:
    progress: list[tuple[int, int]] = []
    embedded, skipped = await reindex_vectors(
        vector_db, team, embedder, lambda d, t: progress.append((d, t)), batch=8
    )
    assert (embedded, skipped) == (20, 0)
    assert progress[-1] == (20, 20)
    assert len(progress) == 3
    vectors = await expected_vectors(vector_db, team, embedder)
    spread = by_distance(vectors[f"{B1}:1"], vectors)
    assert sorted(spread.values())[1] > 1e-4, "the tiny CLIP must tell the pictures apart"
    qv = QueryVector(embedder.name, embedder.dims)
    for ref in vectors:
        like = ImageRef.parse(ref)
        found = await search(vector_db, "", SearchFilters(like=like, limit=50), T1, vectors=qv)
        assert str(found.hits[0].ref) == ref
        assert found.hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert_in_order(found.hits, by_distance(vectors[ref], vectors))
        assert "image embeddings" in found.notes[0]


@pytest.fixture(params=["exact", "graph"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways to the nearest images: comparing every vector that passes the filters (what
    a few thousand get), or the HNSW graph with the filters checked on each candidate (what a
    large workspace gets; forced here by lowering the threshold to nothing)."""
    if request.param == "graph":
        monkeypatch.setattr(vectors_module, "EXACT_MAX", 0)
    return str(request.param)


async def test_filters_and_workspace_apply_to_vectors(
    vector_db: Database, team: LocalImageStore, embedder: ClipEmbedder, path: str
) -> None:
    await reindex_vectors(vector_db, team, embedder)
    vectors = await expected_vectors(vector_db, team, embedder)
    qv = QueryVector(embedder.name, embedder.dims)
    like = ImageRef(B1, 1)
    autumn = await search(
        vector_db, "", SearchFilters(like=like, campaign="autumn", limit=50), T1, vectors=qv
    )
    wanted = {r: d for r, d in by_distance(vectors[str(like)], vectors).items()
              if r.startswith((str(B3), str(D1)))}  # fmt: skip
    assert_in_order(autumn.hits, wanted)
    approved = await search(
        vector_db, "", SearchFilters(like=like, approved=True, limit=50), T1, vectors=qv
    )
    assert {str(h.ref) for h in approved.hits} == {f"{B1}:3", f"{B3}:1", f"{B3}:2"}
    # another workspace's images are never found, and can't be the source
    everything = await search(vector_db, "", SearchFilters(like=like, limit=50), T1, vectors=qv)
    assert not any(h.generation_id == E1 for h in everything.hits)
    with pytest.raises(NotFound):
        await search(vector_db, "", SearchFilters(like=ImageRef(E1, 1)), T1, vectors=qv)
    theirs = await search(
        vector_db, "", SearchFilters(like=ImageRef(E1, 1), limit=50), Scope("slack", "T2"),
        vectors=qv,
    )  # fmt: skip
    assert {h.generation_id for h in theirs.hits} == {E1}
    # since: the embedding rows' copy of the generation's time (B1, B2, V1, U1 are day 0)
    since = await search(
        vector_db, "", SearchFilters(like=ImageRef(B3, 1), since=(T0 + timedelta(days=1)).date(),
                                     limit=50), T1, vectors=qv,
    )  # fmt: skip
    later = {r: d for r, d in by_distance(vectors[f"{B3}:1"], vectors).items()
             if r.startswith((str(B3), str(D1)))}  # fmt: skip
    assert_in_order(since.hits, later)
    # the user filter is answered through the image's generation, on both paths
    bobs = await search(
        vector_db, "", SearchFilters(like=like, user="Bob", limit=50), T1, vectors=qv
    )
    assert {h.generation_id for h in bobs.hits} == {B2, V1}


async def test_an_embedding_follows_its_generation_to_another_campaign(
    vector_db: Database, team: LocalImageStore, embedder: ClipEmbedder, path: str
) -> None:
    """The embedding rows carry copies of their image's workspace, campaign and time (kept by
    triggers): a generation moved to another campaign is found there, and no longer in the old
    one; a new embedding gets its copies when it is saved."""
    await reindex_vectors(vector_db, team, embedder)
    qv = QueryVector(embedder.name, embedder.dims)
    async with vector_db.transaction() as session:
        await session.execute(
            text("UPDATE generations SET campaign_id = 2 WHERE id = :g"), {"g": U1}
        )
    autumn = await search(
        vector_db, "", SearchFilters(like=ImageRef(B3, 1), campaign="autumn", limit=50), T1,
        vectors=qv,
    )  # fmt: skip
    assert {h.generation_id for h in autumn.hits} == {B3, D1, U1}
    spring = await search(
        vector_db, "", SearchFilters(like=ImageRef(B1, 1), campaign="spring", limit=50), T1,
        vectors=qv,
    )  # fmt: skip
    assert U1 not in {h.generation_id for h in spring.hits}
    async with vector_db.engine.connect() as conn:
        copies = (
            await conn.execute(
                text(
                    "SELECT DISTINCT e.workspace_id, e.campaign_id FROM image_embeddings e "
                    "JOIN images im ON im.id = e.image_id WHERE im.generation_id = :g"
                ),
                {"g": E1},
            )
        ).all()
    assert copies == [(2, None)]  # Eve's workspace, no campaign


async def test_text_finds_the_images_nearest_its_embedding_and_an_update_reranks(
    vector_db: Database, team: LocalImageStore, embedder: ClipEmbedder
) -> None:
    await reindex_vectors(vector_db, team, embedder)
    vectors = await expected_vectors(vector_db, team, embedder)
    memory = MemoryStore(vector_db, team, embedder=embedder)
    (words,) = np.asarray(embedder.embed_texts(["zebra"]), dtype=np.float64)
    found = await memory.search("zebra", SearchFilters(limit=50), T1)  # no keyword matches
    assert "reciprocal rank fusion" in found.notes[-1]
    assert_in_order(found.hits, by_distance(words, vectors))
    # an update: the last image's vector now is the text's own; it comes first, the rest as before
    last = str(found.hits[-1].ref)
    ref = ImageRef.parse(last)
    async with vector_db.transaction() as session:
        await save(session, embedder.name, [image_id(ref.generation_id, ref.index)], [words])
    again = await memory.search("zebra", SearchFilters(limit=50), T1)
    assert str(again.hits[0].ref) == last
    rest = {r: d for r, d in by_distance(words, vectors).items() if r != last}
    assert_in_order(again.hits[1:], rest)


async def test_keyword_and_vector_rankings_are_fused(
    vector_db: Database, team: LocalImageStore, embedder: ClipEmbedder
) -> None:
    """Each hit's score is Σ 1/(60 + rank) over the keyword ranking (keyword-only search) and
    the vector ranking (numpy), and the hits come in that order."""
    await reindex_vectors(vector_db, team, embedder)
    vectors = await expected_vectors(vector_db, team, embedder)
    query = "blue square"
    keyword = await search(vector_db, query, SearchFilters(limit=50), T1)
    (words,) = np.asarray(embedder.embed_texts([query]), dtype=np.float64)
    nearest = sorted(vectors, key=by_distance(words, vectors).__getitem__)
    expected = {r: 1 / (RRF_K + rank) for rank, r in enumerate(nearest, 1)}
    for rank, hit in enumerate(keyword.hits, 1):
        expected[str(hit.ref)] += 1 / (RRF_K + rank)
    fused = await MemoryStore(vector_db, team, embedder=embedder).search(
        query, SearchFilters(limit=50), T1
    )
    assert {str(h.ref) for h in fused.hits} == set(expected)
    for hit in fused.hits:
        assert hit.score == pytest.approx(expected[str(hit.ref)], abs=1e-9), hit.ref
    assert [h.score for h in fused.hits] == sorted((h.score for h in fused.hits), reverse=True)
    # the keyword matches (both arms) outrank every image found by its vector only
    matched = {str(h.ref) for h in keyword.hits}
    assert {str(h.ref) for h in fused.hits[: len(matched)]} == matched
    narrowed = await MemoryStore(vector_db, team, embedder=embedder).search(
        query, SearchFilters(limit=50, campaign="autumn"), T1
    )
    assert {h.generation_id for h in narrowed.hits} == {B3, D1}


async def test_the_worker_side_indexer_embeds_new_images(
    vector_db: Database, team: LocalImageStore, embedder: ClipEmbedder
) -> None:
    indexer = Indexer(vector_db, team, interval_s=0.05, embedder=embedder)
    task = asyncio.create_task(indexer.run())
    try:
        async with asyncio.timeout(20):
            while indexer.embedded < 20:  # noqa: ASYNC110 (the indexer has no event to wait on)
                await asyncio.sleep(0.05)
    finally:
        indexer.stop()
        await task
    async with vector_db.engine.connect() as conn:
        stored = await conn.scalar(text("SELECT count(*) FROM image_embeddings"))
        widths = await conn.scalar(
            text("SELECT DISTINCT vector_dims(embedding) FROM image_embeddings")
        )
    assert (stored, widths) == (20, embedder.dims)
    # more like this of an image works at once (embedded on the spot if the indexer lags)
    async with vector_db.transaction() as session:
        await session.execute(text("DELETE FROM image_embeddings WHERE image_id = :i"),
                              {"i": image_id(B3, 2)})  # fmt: skip
    found = await MemoryStore(vector_db, team, embedder=embedder).search(
        "", SearchFilters(like=ImageRef(B3, 2)), T1
    )
    assert str(found.hits[0].ref) == f"{B3}:2"
    assert "image embeddings" in found.notes[0]


async def test_without_pgvector_search_is_keyword_only(
    db: Database, tmp_path: Path, embedder: ClipEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    """The machine's PostgreSQL 15 has no pgvector: no table, doctor says so, search works."""
    store = LocalImageStore(tmp_path / "images")
    await seed(db, store)
    ok, detail = await search_features(db, embedder.name)
    assert ok
    assert "no pgvector on this server (keyword-only)" in detail
    plain = await search(db, "blue square", SearchFilters(limit=50), T1)
    found = await MemoryStore(db, store, embedder=embedder).search(
        "blue square", SearchFilters(limit=50), T1
    )
    assert [h.ref for h in found.hits] == [h.ref for h in plain.hits]
    like = await MemoryStore(db, store, embedder=embedder).search(
        "", SearchFilters(like=ImageRef(B1, 3)), T1
    )
    assert "perceptual hash" in like.notes[0]
    with caplog.at_level(logging.WARNING):
        async with indexing(db, store, embedder=embedder):
            pass
    assert "no pgvector" in caplog.text


def test_embedder_needs_a_local_model(tmp_path: Path, tiny_clip: Path) -> None:
    with pytest.raises(ConfigError, match="never downloads"):
        ClipEmbedder(str(tmp_path / "nothing-here"))
    embedder = ClipEmbedder(str(tiny_clip))
    (a, b) = embedder.embed_texts(["a blue square", "a blue square"])
    (c,) = embedder.embed_images([Image.new("RGB", (64, 48), (30, 60, 220))])
    assert len(a) == len(c) == embedder.dims == 16
    assert np.allclose(a, b, atol=1e-6)
    assert abs(np.linalg.norm(a) - 1) < 1e-5
    assert abs(np.linalg.norm(c) - 1) < 1e-5


async def test_search_reindex_embeds_from_the_command_line(
    vector_db: Database, tiny_clip: Path, tmp_path: Path
) -> None:
    """``onbrand search reindex`` with ONBRAND_EMBEDDER set: hashes, then embeddings."""
    data = tmp_path / "data"
    await seed(vector_db, LocalImageStore(data / "images"), hashed=False)
    repo = REPO
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ONBRAND_", "SLACK_"))}
    env = clean | {"DATABASE_URL": vector_db.dsn, "ONBRAND_DATA_DIR": str(data),
                   "ONBRAND_EMBEDDER": str(tiny_clip), "PYTHONPATH": str(repo)}  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bots.cli", "search", "reindex"],
        env=env, cwd=repo, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hashed 20 images; embedded 20 images" in done.stdout
    async with vector_db.engine.connect() as conn:
        stored = await conn.scalar(
            text("SELECT count(*) FROM image_embeddings WHERE model = :m"), {"m": str(tiny_clip)}
        )
    assert stored == 20
