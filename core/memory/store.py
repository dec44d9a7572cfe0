"""``MemoryStore``: the memory's SQL over one ``Database``, as the service calls it."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from core.db.database import Database
from core.memory import duplicates, lineage
from core.memory import search as _search
from core.memory.indexer import hash_pending
from core.memory.model import Hit, ImageRef, Scope, SearchFilters, SearchResult
from core.memory.phash import can_hash
from core.memory.vectors import QueryVector, embed_pending, has_vectors
from core.ports import Embedder, ImageStore


@dataclass
class MemoryStore:
    db: Database
    store: ImageStore | None = None  # to hash an image the indexer hasn't reached yet
    trigrams: bool | None = None  # pg_trgm installed? (asked once, on the first search)
    embedder: Embedder | None = None  # CLIP-style model for vector search (ONBRAND_EMBEDDER)
    vectors: bool | None = None  # pgvector's embeddings table there? (asked once)

    async def read(self, key: str) -> bytes:
        if self.store is None:
            raise KeyError(key)
        return await self.store.get(key)

    async def image(self, ref: ImageRef, scope: Scope) -> Hit:
        return await _search.image_hit(self.db, ref, scope)

    async def family(self, generation_id: uuid.UUID, scope: Scope) -> lineage.Node:
        async with self.db.sessions() as session:
            return await lineage.family(session, generation_id, scope)

    async def approved_elsewhere(
        self, generation_id: uuid.UUID, index: int | None, scope: Scope
    ) -> list[duplicates.Duplicate]:
        """Near-duplicates of the generation's image(s) approved in another campaign."""
        if self.store is not None and can_hash():
            await hash_pending(self.db, self.store, only=[generation_id])
        async with self.db.sessions() as session:
            return await duplicates.approved_elsewhere(session, generation_id, index, scope)

    async def search(self, query: str, filters: SearchFilters, scope: Scope) -> SearchResult:
        if filters.like is not None and self.store is not None and can_hash():
            # the indexer may not have reached it yet: "more like this" of a fresh image works
            await hash_pending(self.db, self.store, only=[filters.like.generation_id])
        if self.trigrams is None or self.vectors is None:
            async with self.db.sessions() as session:
                self.trigrams = await _search.has_trigrams(session)
                self.vectors = await has_vectors(session)
        vectors = await self._query_vector(query, filters)
        return await _search.search(
            self.db, query, filters, scope, trigrams=self.trigrams, vectors=vectors
        )

    async def _query_vector(self, query: str, filters: SearchFilters) -> QueryVector | None:
        """What the vector arm compares with: the like image's embedding (made now if the
        indexer hasn't reached it) or the query's text embedding; None without vectors."""
        embedder = self.embedder
        if embedder is None or not self.vectors:
            return None
        if filters.like is not None:
            if self.store is not None:
                await embed_pending(
                    self.db, self.store, embedder, only=[filters.like.generation_id]
                )
            return QueryVector(embedder.name, embedder.dims)
        if not query.strip():
            return None
        (vector,) = await asyncio.to_thread(embedder.embed_texts, [query.strip()])
        return QueryVector(embedder.name, embedder.dims, vector)


async def search_features(db: Database, embedder: str = "") -> tuple[bool, str]:
    """What search can do on this server, in words for ``onbrand doctor``: (ok, detail).
    ``embedder``: the configured embedding model (``ONBRAND_EMBEDDER``), if any."""
    from sqlalchemy import text

    async with db.sessions() as session:
        installed = set((await session.execute(text("SELECT extname FROM pg_extension"))).scalars())
        table = await has_vectors(session)
    if not table:
        vectors = "vectors: no pgvector on this server (keyword-only)"
    elif not embedder:
        vectors = "vectors: pgvector ready, no embedding model (ONBRAND_EMBEDDER; keyword-only)"
    else:
        vectors = f"vectors: pgvector with {embedder} (keyword and vectors fused)"
    parts = [
        "keyword search with typo tolerance (pg_trgm)"
        if "pg_trgm" in installed
        else "keyword search without typo tolerance: this server has no pg_trgm (prefixes only)",
        vectors,
        "more like this by image embeddings; near-duplicates by perceptual hash"
        if table and embedder and can_hash()
        else "more like this by perceptual hash"
        if can_hash()
        else "no perceptual hashes: install onbrand[memory] (imagehash)",
    ]
    return True, "; ".join(parts)
