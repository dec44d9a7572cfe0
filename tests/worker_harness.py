"""The worker's generate → finish → store path without a database, and an A1111 reader.

The worker runs its real path on a local image store; the one lookup a variation or upscale makes
(its source image's key) is answered by a stand-in for the asyncpg pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from core.db.jobs import StartedJob
from core.domain import GenerationKind, Params
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.imaging.metadata import read_parameters
from core.jobs.worker import Worker, WorkerConfig
from core.storage.local import LocalImageStore


class SourceKeys:
    """Answers the worker's queries for a variation or upscale: its source image's key (and no
    logo-free master: the harness's presets draw no logo)."""

    def __init__(self) -> None:
        self.keys: dict[tuple[uuid.UUID, int], str] = {}

    async def fetchval(self, query: str, generation_id: uuid.UUID, index: int) -> str | None:
        return self.keys.get((generation_id, index))

    async def fetchrow(
        self, query: str, generation_id: uuid.UUID, index: int
    ) -> dict[str, str | None] | None:
        key = self.keys.get((generation_id, index))
        return None if key is None else {"storage_key": key, "clean_key": None}


class Harness:
    """A ``Worker`` storing under ``images``, without a database; ``serving()`` runs its batcher."""

    def __init__(self, images: Path) -> None:
        self.store = LocalImageStore(images)
        self.sources = SourceKeys()
        self.engines = EngineRegistry(builtins=False)
        self.engines.put("fake", FakeEngine())
        self.worker = Worker(
            None,  # type: ignore[arg-type]  # no database: see the module docstring
            self.engines,
            self.store,
            {},
            WorkerConfig(max_batch=2, batch_window_s=0.0),
        )
        self.worker._sql = self.sources  # type: ignore[assignment]

    async def make(
        self,
        params: Params,
        kind: GenerationKind = GenerationKind.IMAGINE,
        parent: tuple[uuid.UUID, int] | None = None,
    ) -> tuple[uuid.UUID, list[bytes]]:
        """Run one generation through the worker; its id and its stored originals."""
        job = StartedJob(
            uuid.uuid4(),
            kind,
            "slack",
            params,
            1,
            parent[0] if parent else None,
            parent[1] if parent else None,
        )
        result = await self.worker._generate(job)
        stored = await self.worker._store(job, result.images, result.sampling)
        for image in stored:
            self.sources.keys[(job.id, image.index)] = image.storage_key
        return job.id, [await self.store.get(image.storage_key) for image in stored]

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Harness]:
        task = asyncio.create_task(self.worker.batcher.serve())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def read_a1111(png: bytes) -> Any:
    """(PromptInfo, its one Sampler) as sd-parsers reads the PNG; fails when it can't."""
    import sd_parsers

    info = sd_parsers.ParserManager().parse(io.BytesIO(png))
    assert info is not None, read_parameters(png)
    assert info.generator is sd_parsers.data.Generators.AUTOMATIC1111
    [sampler] = info.samplers
    return info, sampler
