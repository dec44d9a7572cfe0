"""The worker: claims generation jobs from the PostgreSQL queue and runs them on one device.

pgqueuer does the claiming (SKIP LOCKED, LISTEN/NOTIFY wake-ups with polling as a fallback),
heartbeats (a job whose worker died is claimed again after ``heartbeat_timeout``) and retries.
Each claimed job goes to the ``Batcher``, which groups compatible jobs into one engine call.
Images are watermarked, tagged with their parameters and an AI disclosure, stored, and only then
is the generation marked done: ``done`` means every image is durably stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import uuid
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from core.batching import Batcher, job_of
from core.db import jobs
from core.db.database import Database
from core.db.jobs import StartedJob, StoredImage
from core.domain import GenerationKind, GenerationStatus
from core.imaging import (
    ImageMetadata,
    apply_watermark,
    encode_png,
    palette_score,
)
from core.ports import Engine, GenerateJob, ImageStore, JobResult, VaryJob
from core.presets import Preset
from core.queue import GENERATE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    max_batch: int = 4  # images per engine call (8 is a good start on a GPU)
    batch_window_s: float = 0.025
    heartbeat_timeout_s: float = 30.0
    max_attempts: int = 3
    progress_interval_s: float = 1.0
    retry_delay_s: float = 2.0


@dataclass
class _Running:
    platform: str
    fraction: float = 0.0
    dirty: bool = False


@dataclass
class Worker:
    db: Database
    engines: Any  # EngineRegistry: .get(kind) -> Engine
    store: ImageStore
    presets: Mapping[str, Preset]
    config: WorkerConfig = field(default_factory=WorkerConfig)

    def __post_init__(self) -> None:
        self.batcher = Batcher(
            self._run_batch, max_images=self.config.max_batch, window_s=self.config.batch_window_s
        )
        self._running: dict[uuid.UUID, _Running] = {}
        self._cancelled: set[uuid.UUID] = set()
        self._queue_manager: Any = None
        self.completed = 0

    # --- the process -----------------------------------------------------------------------

    async def run(self, *, drain: bool = False) -> None:
        """Take jobs until ``stop`` (or, with ``drain``, until the queue is empty)."""
        import asyncpg
        from pgqueuer import Queries, QueueManager
        from pgqueuer.types import QueueExecutionMode

        connection = await asyncpg.connect(self.db.dsn)
        manager = QueueManager(Queries.from_asyncpg_connection(connection))
        self._queue_manager = manager

        @manager.entrypoint(GENERATE, accepts_context=False)
        async def generate(job: Any) -> None:
            await self.handle(uuid.UUID(job.payload.decode()))

        mode = QueueExecutionMode.drain if drain else QueueExecutionMode.continuous
        serving = asyncio.create_task(self.batcher.serve(), name="batcher")
        flushing = asyncio.create_task(self._flush_progress_forever(), name="progress")
        try:
            await manager.run(
                batch_size=self.config.max_batch,
                max_concurrent_tasks=2 * self.config.max_batch,
                heartbeat_timeout=timedelta(seconds=self.config.heartbeat_timeout_s),
                dequeue_timeout=timedelta(seconds=5),
                mode=mode,
            )
        finally:
            serving.cancel()
            flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            with contextlib.suppress(asyncio.CancelledError):
                await flushing
            await self._flush_progress()
            if not connection.is_closed():
                await connection.close()

    def stop(self) -> None:
        """Graceful stop: claim nothing new, let the jobs in hand finish, then ``run`` returns."""
        if self._queue_manager is not None:
            self._queue_manager.shutdown.set()

    # --- one job ---------------------------------------------------------------------------

    async def handle(self, generation_id: uuid.UUID) -> None:
        """Run one generation to done, failed or cancelled (or ask the queue for a retry)."""
        from pgqueuer import RetryRequested

        job = await jobs.start(self.db, generation_id)
        if job is None:
            return  # cancelled while waiting, or already finished by another worker
        if job.attempts > self.config.max_attempts:
            await self._fail(job, "gave up after repeated attempts (the worker kept stopping)")
            return
        self._running[job.id] = _Running(job.platform)
        started = time.perf_counter()
        try:
            result = await self._generate(job)
            elapsed = time.perf_counter() - started
            if result.cancelled or job.id in self._cancelled:
                await jobs.end(self.db, job, GenerationStatus.CANCELLED, None, elapsed)
                return
            stored = await self._store(job, result.images)
            await jobs.finish(self.db, job, stored, elapsed)
            self.completed += 1
        except Exception as exc:
            elapsed = time.perf_counter() - started
            log.exception("generation %s failed (attempt %d)", job.id, job.attempts)
            if job.attempts < self.config.max_attempts and not _is_user_error(exc):
                await jobs.end(self.db, job, GenerationStatus.QUEUED, _error_text(exc), elapsed)
                raise RetryRequested(
                    delay=timedelta(seconds=self.config.retry_delay_s * job.attempts),
                    reason=type(exc).__name__,
                ) from exc
            await self._fail(job, _error_text(exc), elapsed)
        finally:
            self._running.pop(job.id, None)
            self._cancelled.discard(job.id)

    async def _fail(self, job: StartedJob, reason: str, elapsed: float = 0.0) -> None:
        message = (
            reason
            if reason.startswith("The image service refused")
            else f"generation failed, reference {job.id}"
        )
        await jobs.end(self.db, job, GenerationStatus.FAILED, message, elapsed)

    async def _generate(self, job: StartedJob) -> JobResult:
        params = job.params
        engine: Engine = self.engines.get(params.engine)
        progress, cancelled = self._progress, self._is_cancelled
        if job.kind in (GenerationKind.IMAGINE, GenerationKind.REROLL):
            key: Hashable = (
                params.engine,
                params.model,
                params.width,
                params.height,
                params.steps,
                params.guidance,
            )
            return await self.batcher.submit(
                key,
                GenerateJob(
                    str(job.id),
                    params.prompt,
                    params.negative_prompt,
                    params.width,
                    params.height,
                    params.steps,
                    params.guidance,
                    params.seeds(),
                ),
            )
        source = await self._source_image(job)
        if job.kind is GenerationKind.VARIATION:
            vary = VaryJob(
                str(job.id),
                source,
                params.prompt,
                params.negative_prompt,
                params.steps,
                params.guidance,
                params.strength,
                params.seeds(),
            )
            return await self.batcher.exclusive(
                lambda: engine.vary(params.model, vary, progress=progress, cancelled=cancelled)
            )
        upscaled = await self.batcher.exclusive(
            lambda: engine.upscale(params.model, source, 2, params.upscaler)
        )
        self._progress(str(job.id), 1, 1)
        return JobResult(str(job.id), (upscaled.image,))

    async def _source_image(self, job: StartedJob) -> Image.Image:
        if job.parent_id is None or job.source_index is None:
            raise ValueError(f"{job.kind.value} {job.id} has no source image")
        key = await jobs.source_image_key(self.db, job.parent_id, job.source_index)
        if key is None:
            raise ValueError(f"image {job.source_index} of {job.parent_id} is not stored")
        data = await self.store.get(key)
        return Image.open(io.BytesIO(data)).convert("RGB")

    async def _run_batch(self, key: Hashable, batch: Sequence[GenerateJob]) -> list[JobResult]:
        engine_kind, model = key[0], key[1]  # type: ignore[index]
        engine: Engine = self.engines.get(engine_kind)
        return await engine.generate(
            model, batch, progress=self._progress, cancelled=self._is_cancelled
        )

    # --- progress and cancellation ---------------------------------------------------------

    def _progress(self, job_id: str, step: int, total: int) -> None:
        generation_id = uuid.UUID(job_of(job_id))
        running = self._running.get(generation_id)
        if running is not None and total > 0:
            fraction = min(step / total, 1.0)
            if fraction > running.fraction:
                running.fraction, running.dirty = fraction, True

    def _is_cancelled(self, job_id: str) -> bool:
        return uuid.UUID(job_of(job_id)) in self._cancelled

    async def _flush_progress(self) -> None:
        """Write progress (at most once per interval per generation) and learn of cancels."""
        dirty = {gid: r for gid, r in self._running.items() if r.dirty}
        for running in dirty.values():
            running.dirty = False
        updates = {gid: (r.fraction, r.platform) for gid, r in dirty.items()}
        # Also poll generations without new progress (e.g. waiting for the device).
        quiet = [gid for gid in self._running if gid not in dirty]
        self._cancelled |= await jobs.write_progress(self.db, updates)
        if quiet:
            statuses = await jobs.status_of(self.db, quiet)
            self._cancelled |= {
                gid for gid, status in statuses.items() if status is GenerationStatus.CANCELLED
            }

    async def _flush_progress_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.progress_interval_s)
            try:
                await self._flush_progress()
            except Exception:  # progress is best effort; the job itself carries on
                log.warning("could not write progress", exc_info=True)

    # --- storing ---------------------------------------------------------------------------

    async def _store(self, job: StartedJob, images: Sequence[Image.Image]) -> list[StoredImage]:
        preset = self.presets.get(job.params.preset)
        stored = []
        for index, image in enumerate(images, start=1):
            data, score = await asyncio.to_thread(self._finish_image, job, preset, index, image)
            key = await self.store.put(data, suffix=".png")
            stored.append(
                StoredImage(
                    index=index,
                    storage_key=key,
                    sha256=key.split(".", 1)[0],
                    width=image.width,
                    height=image.height,
                    size=len(data),
                    palette_score=score,
                )
            )
        return stored

    def _finish_image(
        self, job: StartedJob, preset: Preset | None, index: int, image: Image.Image
    ) -> tuple[bytes, float | None]:
        params = job.params
        if preset is not None and preset.watermark is not None and preset.logo_path is not None:
            mark = preset.watermark
            image = apply_watermark(
                image,
                _logo(preset.logo_path),
                position=mark.position,
                opacity=mark.opacity,
                scale=mark.scale,
            )
        seed = params.seeds()[index - 1] if index <= params.n else params.seed
        meta = ImageMetadata(
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            seed=seed,
            steps=params.steps,
            guidance=params.guidance,
            width=image.width,
            height=image.height,
            model=params.model,
            preset=params.preset,
            preset_version=params.preset_version,
            generation_id=str(job.id),
            index=index,
            engine=params.engine,
            resampled="lanczos x2"
            if job.kind is GenerationKind.UPSCALE and not params.upscaler
            else None,
        )
        score = palette_score(image, preset.palette) if preset and preset.palette else None
        return encode_png(image, meta), score


@lru_cache(maxsize=32)
def _logo(path: Path) -> Image.Image:
    with Image.open(path) as logo:
        return logo.convert("RGBA")


def _is_user_error(exc: BaseException) -> bool:
    from core.errors import UserError

    return isinstance(exc, UserError)


def _error_text(exc: BaseException) -> str:
    from core.errors import UserError

    if isinstance(exc, UserError):
        return exc.user_message
    return f"{type(exc).__name__}: {exc}"[:500]
