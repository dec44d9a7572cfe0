"""Perceptual hashes and embeddings of stored originals, off the engine's critical path.

The worker doesn't wait for them: ``Indexer.run`` beside it wakes on each ``done`` event (and
every ``interval_s`` anyway, so nothing missed stays unhashed) and hashes the images whose
``phash`` is still NULL, a batch at a time, claimed with ``FOR UPDATE SKIP LOCKED`` so any number
of workers can run one. ``reindex`` (``onbrand search reindex``) backfills the same way, with a
progress callback. With an embedding model configured (``ONBRAND_EMBEDDER``) and pgvector in the
database, each round then embeds the images that have no vector yet, a batch at a time
(``core.memory.vectors.embed_pending``), on the embedder's own device (the CPU unless
``ONBRAND_EMBEDDER_DEVICE`` says otherwise), in a thread: the worker's jobs never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from sqlalchemy import text

from core.db.database import Database
from core.db.events import subscribe
from core.memory.phash import can_hash, phash_bytes
from core.memory.vectors import embed_pending, ensure_index, has_vectors
from core.ports import Embedder, ImageStore

log = logging.getLogger(__name__)

BATCH = 64

_CLAIM = """
SELECT id, storage_key FROM images
WHERE phash IS NULL AND NOT (id = ANY (:skip)) {only}
ORDER BY id LIMIT :batch
FOR UPDATE SKIP LOCKED
"""
_ONLY = "AND generation_id = ANY (CAST(:only AS uuid[]))"
_SAVE = """
UPDATE images SET phash = v.phash
FROM unnest(CAST(:ids AS bigint[]), CAST(:hashes AS bigint[])) AS v(id, phash)
WHERE images.id = v.id
"""


async def unhashed(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM images WHERE phash IS NULL")) or 0)


async def hash_pending(
    db: Database,
    store: ImageStore,
    *,
    batch: int = BATCH,
    skip: set[int] | None = None,
    only: Sequence[uuid.UUID] | None = None,
) -> int:
    """Hash one batch of unhashed images (of the generations ``only``, if given); the number
    claimed (0: none left). Images missing from the store are added to ``skip`` (and logged) so
    a later batch doesn't claim them."""
    skip = skip if skip is not None else set()
    params: dict[str, Any] = {"skip": sorted(skip), "batch": batch}
    if only is not None:
        params["only"] = list(only)
    claim = _CLAIM.format(only=_ONLY if only is not None else "")
    async with db.transaction() as session:
        rows = (await session.execute(text(claim), params)).all()
        ids: list[int] = []
        hashes: list[int] = []
        for image_id, key in rows:
            try:
                data = await store.get(key)
                value = await asyncio.to_thread(phash_bytes, data)
            except (KeyError, OSError, ValueError) as exc:  # missing or unreadable original
                log.warning("can't hash image %s (%s): %s", image_id, key, exc)
                skip.add(image_id)
                continue
            ids.append(image_id)
            hashes.append(value)
        if ids:
            await session.execute(text(_SAVE), {"ids": ids, "hashes": hashes})
    return len(rows)


async def reindex(
    db: Database,
    store: ImageStore,
    progress: Callable[[int, int], None] | None = None,
    *,
    batch: int = BATCH,
) -> tuple[int, int]:
    """Hash every unhashed image; (hashed, skipped). ``progress(done, total)`` after each batch."""
    total = await unhashed(db)
    skip: set[int] = set()
    done = 0
    while claimed := await hash_pending(db, store, batch=batch, skip=skip):
        done += claimed
        if progress is not None:
            progress(min(done, total), total)
    return done - len(skip), len(skip)


class Indexer:
    """Hashes new originals while a worker runs: ``await indexer.run()``; ``stop()`` ends it."""

    def __init__(
        self,
        db: Database,
        store: ImageStore,
        *,
        interval_s: float = 30.0,
        hashing: bool = True,
        embedder: Embedder | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.interval_s = interval_s
        self.hashing = hashing
        self.embedder = embedder
        self.hashed = 0
        self.embedded = 0
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._skip: set[int] = set()
        self._skip_embedding: set[int] = set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        listening = asyncio.create_task(self._listen(), name="indexer-events")
        try:
            while not self._stop.is_set():
                await self._catch_up()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_s)
                self._wake.clear()
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening

    async def _catch_up(self) -> None:
        try:
            while (
                self.hashing
                and not self._stop.is_set()
                and (claimed := await hash_pending(self.db, self.store, skip=self._skip))
            ):
                self.hashed += claimed
            while (
                self.embedder is not None
                and not self._stop.is_set()
                and (
                    claimed := await embed_pending(
                        self.db, self.store, self.embedder, skip=self._skip_embedding
                    )
                )
            ):
                self.embedded += claimed
        # Broad on purpose: a database blip must not end the worker's process; the next wake
        # (or the interval) tries again.
        except Exception:
            log.exception("indexing new images failed; trying again in %g s", self.interval_s)

    async def _listen(self) -> None:
        try:
            async with subscribe(self.db.dsn) as events:
                while True:
                    event = await events.get()
                    if event.type == "done":
                        self._wake.set()
        # Broad on purpose: the events only wake the indexer early; without them (a refused
        # or lost LISTEN connection, whatever the driver raises) the interval still catches up.
        except Exception as exc:
            log.warning(
                "indexer can't listen for events (%s); hashing every %g s", exc, self.interval_s
            )


@contextlib.asynccontextmanager
async def indexing(
    db: Database, store: ImageStore, *, enabled: bool = True, embedder: Embedder | None = None
) -> AsyncIterator[None]:
    """An ``Indexer`` running for as long as the block (a worker's life) lasts. Without
    imagehash installed (the memory extra) it says so once and hashes nothing; without
    ``embedder`` or pgvector it embeds nothing."""
    if not enabled:
        yield
        return
    hashing = can_hash()
    if not hashing:
        log.warning(
            "perceptual hashes are off: install onbrand[memory] (imagehash) for more-like-this "
            "and near-duplicate warnings, then run `onbrand search reindex`"
        )
    if embedder is not None and not await _vectors_ready(db, embedder):
        embedder = None
    if not hashing and embedder is None:
        yield
        return
    indexer = Indexer(db, store, hashing=hashing, embedder=embedder)
    task = asyncio.create_task(indexer.run(), name="indexer")
    try:
        yield
    finally:
        indexer.stop()
        await asyncio.wait([task], timeout=5)
        if not task.done():
            task.cancel()


async def _vectors_ready(db: Database, embedder: Embedder) -> bool:
    """pgvector's table is there (and the HNSW index for the model's width): else say so once."""
    async with db.transaction() as session:
        if not await has_vectors(session):
            log.warning(
                "ONBRAND_EMBEDDER is set but this database has no pgvector: search stays "
                "keyword-only (see `onbrand doctor`)"
            )
            return False
        await ensure_index(session, embedder.dims)
    return True
