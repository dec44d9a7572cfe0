"""Keyword search and "more like this" in SQL, scoped to a workspace.

Keyword: ``generations.search_doc`` (a generated, weighted tsvector: prompt A, final prompt B,
preset C) matched with ``websearch_to_tsquery`` through its GIN index, OR every query word
trigram-similar to a word of the raw prompt (pg_trgm, typos: "blu sqare"), OR a campaign whose
name matches. The score
adds the cover-density rank, a bonus when the words appear as a phrase, and the trigram word
similarity, so "blue square" puts "a blue square on red" above "a red square on blue".

More like this (``--like GEN:INDEX``): images ordered by the Hamming distance between their
64-bit perceptual hashes and the given image's (``bit_count(a # b)``); the image itself is at
distance 0, so it comes first. With no embedding model configured this is what "similar"
means: the same picture or a close edit of it (crops, colour shifts, recompression), not "the
same subject". With an embedding model (``ONBRAND_EMBEDDER``) and pgvector, both use vectors
(``core.memory.vectors``): a text query fuses the keyword ranking with the nearest images to the
query's text embedding (reciprocal rank fusion, in the same statement, under the same filters
and scope), and more like this orders by the distance between image embeddings.

Every fragment below is a fixed string chosen by which filters are set; user text is only ever
a bound parameter.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.database import Database
from core.errors import NotFound
from core.memory.model import (
    NEAR_DUPLICATE_BITS,
    Hit,
    ImageRef,
    Scope,
    SearchFilters,
    SearchResult,
)
from core.memory.phash import distance
from core.memory.spelling import FUZZY_WORDS, any_unknown, has_trigrams, spelled
from core.memory.vectors import (
    DEPTH,
    FUSED,
    ON_EMBEDDINGS,
    RRF_K,
    QueryVector,
    literal,
    nearest,
)

__all__ = ["PSEUDONYM_SQL", "has_trigrams", "search"]

# The reports' pseudonym (core.reports.queries.pseudonym), for users u in workspaces w.
PSEUDONYM_SQL = (
    "'user-' || left(encode(sha256(convert_to("
    "u.platform || ':' || w.external_id || ':' || u.external_id, 'UTF8')), 'hex'), 10)"
)

# A generation matches when its document matches the query, or the typo-tolerant query built
# from it (below), or its campaign's name matches. Each arm is a GIN or B-tree index scan, so
# PostgreSQL ORs bitmaps instead of reading the table.
_MATCH = """(g.search_doc @@ websearch_to_tsquery('english', :q)
             OR {fuzzy} {campaigns})"""
_SCORE = """(ts_rank_cd(g.search_doc, websearch_to_tsquery('english', :q), 1)
            + CASE WHEN numnode(phraseto_tsquery('english', :q)) > 0
                        AND g.search_doc @@ phraseto_tsquery('english', :q) THEN 1.0 ELSE 0.0 END
            + {similarity})"""
_SIMILARITY = "word_similarity(:q, g.raw_prompt)"
# Without pg_trgm (the embedded server): every query word as a prefix ("blu" finds "blue").
_PREFIXES = "g.search_doc @@ to_tsquery('simple', :prefixes || :negated)"

_FILTERS = {
    "scope": "w.platform = :platform AND w.external_id = :workspace",
    "campaign": "g.campaign_id = :campaign_id",
    "since": "g.queued_at >= :since",
    "user": f"(u.external_id = :user OR lower(u.display_name) = lower(:user) "
    f"OR {PSEUDONYM_SQL} = :user)",
    "approved": """EXISTS (SELECT 1 FROM feedback f WHERE f.generation_id = im.generation_id
                   AND f.kind = 'approve' AND (f.image_id = im.id OR f.image_id IS NULL))""",
    "favourites": """EXISTS (SELECT 1 FROM feedback f WHERE f.generation_id = im.generation_id
                     AND f.kind = 'favourite' AND (f.image_id = im.id OR f.image_id IS NULL))""",
    "hashed": "im.phash IS NOT NULL",
}

_SEARCH = """{with_}
SELECT im.generation_id, im.index, g.raw_prompt AS prompt, c.name AS campaign,
       {pseudonym} AS "user", g.queued_at AS created_at, g.status, g.kind,
       im.storage_key, im.phash,
       EXISTS (SELECT 1 FROM feedback f WHERE f.generation_id = im.generation_id
               AND f.kind = 'approve' AND (f.image_id = im.id OR f.image_id IS NULL))
           AS approved,
       (SELECT count(*) FROM feedback f WHERE f.generation_id = im.generation_id
               AND f.kind = 'favourite' AND f.image_id = im.id) AS favourites,
       {score} AS score,
       {distance} AS distance
FROM {source}
JOIN images im ON im.generation_id = g.id {join}
JOIN users u ON u.id = g.user_id
JOIN workspaces w ON w.id = u.workspace_id
LEFT JOIN campaigns c ON c.id = g.campaign_id
WHERE {where}
ORDER BY {order}
LIMIT :limit
"""

COLLAPSE_FETCH = 4  # rows fetched per result wanted when near-duplicates are collapsed
POOL = 2000  # the most matching generations a keyword search ranks (the newest)
_POOL = """(
    SELECT g.* FROM generations g
    JOIN users u ON u.id = g.user_id
    JOIN workspaces w ON w.id = u.workspace_id
    WHERE {where}
    ORDER BY g.queued_at DESC
    LIMIT :pool
) g"""

_DISTANCE = "bit_count((im.phash # :phash)::bit(64))"


async def search(
    db: Database | AsyncSession,
    query: str,
    filters: SearchFilters,
    scope: Scope,
    *,
    trigrams: bool | None = None,
    vectors: QueryVector | None = None,
) -> SearchResult:
    """The images that match ``query`` (and ``filters``) in ``scope``, best first.

    An empty query with no ``like`` lists the newest matches of the filters. Raises
    ``NotFound`` for an unknown campaign or a ``like`` image that doesn't exist in scope.
    ``trigrams``: whether pg_trgm is there (None: ask the server). ``vectors``: the embedding
    model's name and width, and the query's text embedding (None: keyword and pHash only).
    """
    filters = filters.check()
    query = query.strip()
    if isinstance(db, Database):
        async with db.sessions() as session:
            return await _search(session, query, filters, scope, trigrams, vectors)
    return await _search(db, query, filters, scope, trigrams, vectors)


async def _search(
    session: AsyncSession,
    query: str,
    filters: SearchFilters,
    scope: Scope,
    trigrams: bool | None,
    vectors: QueryVector | None = None,
) -> SearchResult:
    # collapsing near-duplicates drops rows after the fact: fetch more to still fill the page
    fetch = filters.limit * COLLAPSE_FETCH if filters.collapse else filters.limit
    params: dict[str, Any] = {"q": query, "limit": fetch}
    where: list[str] = []
    # the same filters for the vector arm: on the embedding rows' own copies where they have them
    on_vectors: list[str] = []
    notes: list[str] = []
    if not scope.everywhere:
        where.append(_FILTERS["scope"])
        on_vectors.append(ON_EMBEDDINGS["scope"])
        params |= {"platform": scope.platform, "workspace": scope.workspace}
    if filters.campaign is not None:
        campaign_id = await session.scalar(
            text("SELECT id FROM campaigns WHERE name = :name"), {"name": filters.campaign}
        )
        if campaign_id is None:
            raise NotFound(f"There is no campaign called {filters.campaign}.")
        where.append(_FILTERS["campaign"])
        on_vectors.append(ON_EMBEDDINGS["campaign"])
        params["campaign_id"] = campaign_id
    if filters.since is not None:
        where.append(_FILTERS["since"])
        on_vectors.append(ON_EMBEDDINGS["since"])
        params["since"] = filters.since
    vector_elsewhere: list[str] = []  # the filters only the image's generation answers
    if filters.user is not None:
        where.append(_FILTERS["user"])
        vector_elsewhere.append(_FILTERS["user"])
        params["user"] = filters.user
    on_images: list[str] = []  # conditions on the images rather than their generations
    for flag in ("approved", "favourites"):
        if getattr(filters, flag):
            on_images.append(_FILTERS[flag])
    match: list[str] = []  # the keyword condition, apart from the filters (not for vectors)
    if query:
        # "-word" excludes, as in websearch_to_tsquery: kept out of the typo-tolerant arm too
        negated = {w.lower() for w in re.findall(r"(?:^|\s)-([^\W_]+)", query)}
        words = list(dict.fromkeys(w.lower() for w in re.findall(r"[^\W_]{3,}", query)))
        words = [w for w in words if w not in negated][:FUZZY_WORDS]
        params["negated"] = "".join(f" & !{w}" for w in sorted(negated))
        if trigrams is None:
            trigrams = await has_trigrams(session)
        if trigrams:
            fuzzy = await spelled(session, words, params)
            score = _SCORE.format(similarity=_SIMILARITY)
        else:
            params["prefixes"] = " & ".join(f"{w}:*" for w in words)
            fuzzy = _PREFIXES if await any_unknown(session, words) else "false"
            closeness = "ts_rank_cd(g.search_doc, to_tsquery('simple', :prefixes), 1)"
            score = _SCORE.format(similarity=closeness if words else "0.0")
            notes.append("typo tolerance is off: this server has no pg_trgm (prefixes only)")
        named = await session.scalars(
            text(
                "SELECT id FROM campaigns "
                "WHERE to_tsvector('simple', name) @@ websearch_to_tsquery('simple', :q)"
            ),
            {"q": query},
        )
        params["campaign_ids"] = list(named)
        campaigns = "OR g.campaign_id = ANY (:campaign_ids)" if params["campaign_ids"] else ""
        match.append(_MATCH.format(fuzzy=f"({fuzzy})", campaigns=campaigns))
    else:
        score = "0.0"
    distance = "NULL::int"
    order = "score DESC, g.queued_at DESC, im.generation_id, im.index"
    with_, join = "", ""
    like_vector = None
    if filters.like is not None and vectors is not None:
        like_vector = await _vector_of(session, filters.like, scope, vectors.model)
    if like_vector is not None and vectors is not None and filters.like is not None:
        # more like this by image embeddings: the nearest under the filters (and the words)
        params |= {"qvec": like_vector, "model": vectors.model, "depth": max(DEPTH, fetch)}
        params |= {"like_gen": filters.like.generation_id, "like_index": filters.like.index}
        nn = await nearest(
            session, vectors.dims, on_vectors, vector_elsewhere + match + on_images, params
        )
        with_, join = f"WITH {nn}", "JOIN nn ON nn.image_id = im.id"
        where, match, on_images = [], [], []
        score = "1.0 - nn.d"
        order = (  # the image itself first, also when a copy of it is just as close
            "nn.d, (im.generation_id = :like_gen AND im.index = :like_index) DESC, "
            "g.queued_at DESC, im.generation_id, im.index"
        )
        notes.append("more like this: by image embeddings (what the picture shows)")
    elif filters.like is not None:
        phash = await _phash_of(session, filters.like, scope)
        on_images.append(_FILTERS["hashed"])
        params["phash"] = phash
        distance = _DISTANCE
        params |= {"like_gen": filters.like.generation_id, "like_index": filters.like.index}
        order = (  # the image itself first, also when a copy of it is just as close
            f"{_DISTANCE}, (im.generation_id = :like_gen AND im.index = :like_index) DESC, "
            "score DESC, g.queued_at DESC, im.generation_id, im.index"
        )
        notes.append("more like this: by perceptual hash (the same picture or a close edit)")
    elif query and vectors is not None and vectors.vector is not None:
        params |= {"qvec": literal(vectors.vector), "model": vectors.model}
        params |= {"depth": max(DEPTH, fetch), "rrf_k": RRF_K}
        keyword_source, keyword_where = "generations g", where + match + on_images
        if not on_images:
            keyword_source = _POOL.format(where=_and(where + match))
            keyword_where = []
            params["pool"] = POOL
        with_ = FUSED.format(
            score=score,
            source=keyword_source,
            where=_and(keyword_where),
            nearest=await nearest(
                session, vectors.dims, on_vectors, vector_elsewhere + on_images, params
            ),
        )
        join, score = "JOIN fused ON fused.image_id = im.id", "fused.score"
        where, match, on_images = [], [], []
        notes.append("ranked by keywords and image embeddings together (reciprocal rank fusion)")
    where += match
    source = "generations g"
    if query and match and not on_images:
        # A broad query can match most of the table: rank the newest POOL matches only, read
        # in one pass (at 200,000 generations all matching: ~0.17 s instead of ~1 s).
        source = _POOL.format(where=" AND ".join(where))
        params["pool"] = POOL
        where = []
    sql = _SEARCH.format(
        with_=with_,
        pseudonym=PSEUDONYM_SQL,
        score=score,
        distance=distance,
        source=source,
        join=join,
        where=_and(where + on_images),
        order=order,
    )
    rows = (await session.execute(text(sql), params)).mappings().all()
    hits = _hits(rows)
    if filters.collapse:
        hits = collapse(hits)[: filters.limit]
        notes.append("near-duplicates collapsed: the best of each group is shown")
    return SearchResult(query, filters, hits, tuple(notes))


def collapse(hits: tuple[Hit, ...]) -> tuple[Hit, ...]:
    """``hits`` without those whose picture is a near-duplicate of a better one (an unhashed
    image is kept: nothing says it repeats another)."""
    kept: list[Hit] = []
    for hit in hits:
        if hit.phash is not None and any(
            k.phash is not None and distance(k.phash, hit.phash) <= NEAR_DUPLICATE_BITS
            for k in kept
        ):
            continue
        kept.append(hit)
    return tuple(kept)


async def image_hit(db: Database, ref: ImageRef, scope: Scope) -> Hit:
    """One image as a search hit (for "Open"); ``NotFound`` outside ``scope``."""
    where = ["im.generation_id = :gen AND im.index = :index"]
    params: dict[str, Any] = {"gen": ref.generation_id, "index": ref.index, "limit": 1, "q": ""}
    if not scope.everywhere:
        where.append(_FILTERS["scope"])
        params |= {"platform": scope.platform, "workspace": scope.workspace}
    sql = _SEARCH.format(
        with_="",
        join="",
        pseudonym=PSEUDONYM_SQL,
        score="0.0",
        distance="NULL::int",
        source="generations g",
        where=" AND ".join(where),
        order="im.index",
    )
    async with db.sessions() as session:
        rows = (await session.execute(text(sql), params)).mappings().all()
    if not rows:
        raise NotFound(f"There is no image {ref} here; check the id and the image number.")
    return _hits(rows)[0]


def _hits(rows: Any) -> tuple[Hit, ...]:
    return tuple(
        Hit(
            generation_id=r["generation_id"],
            index=r["index"],
            prompt=r["prompt"],
            campaign=r["campaign"],
            user=r["user"],
            created_at=r["created_at"],
            status=r["status"],
            kind=r["kind"],
            approved=r["approved"],
            favourites=r["favourites"],
            storage_key=r["storage_key"],
            score=float(r["score"]),
            distance=r["distance"],
            phash=r["phash"],
        )
        for r in rows
    )


async def _phash_of(session: AsyncSession, ref: ImageRef, scope: Scope) -> int:
    """The perceptual hash of ``ref``, hashing it now if the indexer hasn't yet."""
    where = "" if scope.everywhere else f"AND {_FILTERS['scope']}"
    row = (
        await session.execute(
            text(
                f"""SELECT im.id, im.phash, im.storage_key FROM images im
                JOIN generations g ON g.id = im.generation_id
                JOIN users u ON u.id = g.user_id JOIN workspaces w ON w.id = u.workspace_id
                WHERE im.generation_id = :gen AND im.index = :index {where}"""
            ),
            {
                "gen": ref.generation_id,
                "index": ref.index,
                "platform": scope.platform,
                "workspace": scope.workspace,
            },
        )
    ).first()
    if row is None:
        raise NotFound(f"There is no image {ref} here; check the id and the image number.")
    if row.phash is None:
        raise NotFound(
            f"Image {ref} has not been indexed yet; try again in a minute, or run "
            "`onbrand search reindex`."
        )
    return int(row.phash)


def _and(conditions: list[str]) -> str:
    return " AND ".join(conditions) or "true"


async def _vector_of(session: AsyncSession, ref: ImageRef, scope: Scope, model: str) -> str | None:
    """The stored embedding of ``ref`` (None if it has none yet); ``NotFound`` outside scope."""
    where = "" if scope.everywhere else f"AND {_FILTERS['scope']}"
    row = (
        await session.execute(
            text(
                f"""SELECT im.id, e.embedding::text AS vec FROM images im
                JOIN generations g ON g.id = im.generation_id
                JOIN users u ON u.id = g.user_id JOIN workspaces w ON w.id = u.workspace_id
                LEFT JOIN image_embeddings e ON e.image_id = im.id AND e.model = :model
                WHERE im.generation_id = :gen AND im.index = :index {where}"""
            ),
            {
                "gen": ref.generation_id,
                "index": ref.index,
                "model": model,
                "platform": scope.platform,
                "workspace": scope.workspace,
            },
        )
    ).first()
    if row is None:
        raise NotFound(f"There is no image {ref} here; check the id and the image number.")
    return None if row.vec is None else str(row.vec)
