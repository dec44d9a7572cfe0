"""The worker: claims generation jobs from the PostgreSQL queue and runs them on one device.

pgqueuer does the claiming (SKIP LOCKED, LISTEN/NOTIFY wake-ups with polling as a fallback),
heartbeats (a job whose worker died is claimed again after ``heartbeat_timeout``) and retries.
Each claimed job goes to the ``Batcher``, which groups compatible jobs into one engine call.
Images are finished (``core.jobs.finishing``: watermark, parameters, AI disclosure) and stored
concurrently, and only then is the generation marked done: ``done`` means every image is durably
stored. Finishing runs in its own processes (``core.jobs.finishers``), so batch N is finished
while batch N+1 is in the engine; ``batches_in_flight`` batches' worth of jobs are claimed at
once, and finishing that falls behind holds its claims, which stops new ones (back-pressure).

The per-job path is kept short (``bench/queue.py`` measures it against pgqueuer alone):

- the worker's records (``core.db.jobs``) are one plain-SQL statement each on a small asyncpg
  pool, and concurrent jobs share them: the jobs of one claim start in one statement, the jobs
  whose images are stored at about the same time finish in one (``Coalescer``, a group commit);
- pgqueuer's own connection commits asynchronously (``QUEUE_SESSION``): its picks, heartbeats and
  job-log rows need not wait for a WAL flush, because the generation row, not the queue, is the
  record. If the database crashed and lost the last fraction of a second, a lost pick is claimed
  again and a lost "job finished" makes the job reappear after the heartbeat timeout, where
  ``jobs.start`` sees it is done and skips it; since WAL is written in order, a durable ``done``
  implies everything committed before it is durable too;
- the progress flusher sleeps while nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from PIL import Image

from core.brand.presets import Preset
from core.db import jobs
from core.db.database import Database
from core.db.jobs import Finished, StartedJob, StoredImage
from core.db.outage import Backoff, OutageLog, fault_of
from core.db.queue import GENERATE
from core.domain import GenerationKind, GenerationStatus
from core.errors import CannotMake, RefusedByProvider, StoreRefused, UserError
from core.jobs import finishers
from core.jobs.batching import Batcher, BatchKey, Coalescer, generate_job, job_of, vary_job
from core.jobs.finishing import sampling_of, store_images
from core.jobs.images_in import IMAGE_KINDS, run_with_upload
from core.jobs.outages import NOISY, QuietOutages, close_quietly, patiently, unless_fault
from core.jobs.packs import run_pack
from core.jobs.styles import with_style
from core.ops import logs, metrics
from core.ports import Engine, Engines, GenerateJob, ImageStore, JobResult, Sampling

log = logging.getLogger(__name__)

T = TypeVar("T")

QUEUE_SESSION: dict[str, str] = {"synchronous_commit": "off"}
"""Session settings of pgqueuer's connection (see the module docstring)."""


@dataclass(frozen=True)
class WorkerConfig:
    max_batch: int = 4  # images per engine call (8 is a good start on a GPU)
    batch_window_s: float = 0.025
    heartbeat_timeout_s: float = 30.0
    max_attempts: int = 3
    progress_interval_s: float = 1.0
    retry_delay_s: float = 2.0
    # Batches' worth of jobs claimed at once: one in the engine, one being finished, one ready
    # to go, so the engine never waits for a claim. Finishing that falls behind holds its jobs,
    # and claims stop until it catches up (back-pressure).
    batches_in_flight: int = 3
    max_in_flight: int = 0  # jobs claimed at once; 0: batches_in_flight * max_batch
    claim_batch: int = 0  # jobs per dequeue; 0: max_batch
    reconnect_cap_s: float = 5.0  # longest wait between reconnects in a database outage

    @property
    def in_flight(self) -> int:
        wanted = self.max_in_flight or max(self.batches_in_flight, 1) * self.max_batch
        return max(wanted, 2 * self.claim_size)

    @property
    def claim_size(self) -> int:
        return self.claim_batch or self.max_batch


@dataclass
class _Running:
    platform: str
    fraction: float = 0.0
    dirty: bool = False


@dataclass
class Worker:
    db: Database
    engines: Engines
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
        self._queue_connection: Any = None  # pgqueuer's, while a queue manager runs
        self._stopping = False  # a stop may come before ``run`` has built its queue manager
        self._stopped = asyncio.Event()
        self.outage = OutageLog(log, "worker")
        self._backoff = Backoff(base_s=0.1, cap_s=self.config.reconnect_cap_s)
        self._sql: jobs.Sql | None = None
        self._busy = asyncio.Event()  # set while any generation runs (wakes the flusher)
        # Concurrent jobs start together and finish together: one statement (and one commit)
        # for all the jobs of a claim, or of a batch, instead of one each.
        self._start: Coalescer[uuid.UUID, StartedJob | None] = Coalescer(self._start_many)
        self._finish: Coalescer[Finished, bool] = Coalescer(self._finish_many)
        self.completed = 0

    # --- the process -----------------------------------------------------------------------

    async def run(self, *, drain: bool = False) -> None:
        """Take jobs until ``stop`` (or, with ``drain``, until the queue is empty).

        A database outage is ridden out: pgqueuer's queue manager ends when its connection
        dies (after the jobs in hand finish, their records waiting for the database), and a new
        one is connected with backoff. The job whose "finished" pgqueuer could not write is
        claimed again after the heartbeat timeout and skipped, as it is already done."""
        finishers.pool()  # the finishing processes start while the queue connects
        quiet = QuietOutages(lambda: self.down)
        for name in NOISY:
            logging.getLogger(name).addFilter(quiet)
        try:
            while True:
                try:
                    await self._run_queue(drain)
                    return
                except Exception as exc:  # an outage is waited out; anything else ends the run
                    if fault_of(exc) is None:
                        raise
                    self.outage.lost(exc)
                if self._stopping:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), self._backoff.next())
        finally:
            for name in NOISY:
                logging.getLogger(name).removeFilter(quiet)

    @property
    def connected(self) -> bool:
        """Whether the worker has the database (readiness); False during an outage."""
        return not self.outage.down

    @property
    def down(self) -> bool:
        """An outage is known, or pgqueuer's connection is dead (it may not be known yet)."""
        queue = self._queue_connection
        return self.outage.down or (queue is not None and queue.is_closed())

    async def _patiently(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` (a database statement) until the database answers (``patiently``)."""
        return await patiently(call, self.outage, self.config.reconnect_cap_s, back=self._alive)

    def _alive(self) -> bool:
        queue = self._queue_connection
        return queue is not None and not queue.is_closed()

    async def _run_queue(self, drain: bool) -> None:
        import asyncpg
        from pgqueuer import Queries, QueueManager
        from pgqueuer.types import QueueExecutionMode

        connection = await asyncpg.connect(self.db.dsn, server_settings=QUEUE_SESSION)
        try:
            # The worker's own statements (core.db.jobs) get a small pool of plain asyncpg
            # connections: each job's start and finish are one round trip each.
            pool = await asyncpg.create_pool(
                self.db.dsn,
                min_size=1,
                max_size=self.config.in_flight + 1,
                reset=_keep_session,
            )
        except BaseException:
            await connection.close()
            raise
        self.outage.back()
        self._backoff.reset()
        self._sql = pool
        self._queue_connection = connection
        manager = QueueManager(Queries.from_asyncpg_connection(connection))
        self._queue_manager = manager
        if self._stopping:  # stopped while connecting: take nothing
            manager.shutdown.set()

        @manager.entrypoint(GENERATE, accepts_context=False)
        async def generate(job: Any) -> None:
            await self.handle(uuid.UUID(job.payload.decode()))

        # A lost connection ends the manager at once (gracefully: the jobs in hand finish),
        # rather than at its next statement, which may be a dequeue timeout away.
        connection.add_termination_listener(lambda _conn: manager.shutdown.set())
        mode = QueueExecutionMode.drain if drain else QueueExecutionMode.continuous
        serving = asyncio.create_task(self.batcher.serve(), name="batcher")
        flushing = asyncio.create_task(self._flush_progress_forever(), name="progress")
        try:
            await manager.run(
                batch_size=self.config.claim_size,
                max_concurrent_tasks=self.config.in_flight,
                heartbeat_timeout=timedelta(seconds=self.config.heartbeat_timeout_s),
                dequeue_timeout=timedelta(seconds=5),
                mode=mode,
            )
            if connection.is_closed() and not self._stopping:
                raise ConnectionError("the queue's database connection was lost")
        finally:
            serving.cancel()
            flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            with contextlib.suppress(asyncio.CancelledError):
                await flushing
            try:
                with unless_fault():
                    await self._flush_progress()
            finally:
                self._sql = None
                self._queue_manager = self._queue_connection = None
                await close_quietly(pool)
                await close_quietly(connection)

    def stop(self) -> None:
        """Graceful stop: claim nothing new, let the jobs in hand finish, then ``run`` returns.
        A stop before ``run`` has started taking jobs makes it return without taking any."""
        self._stopping = True
        self._stopped.set()
        if self._queue_manager is not None:
            self._queue_manager.shutdown.set()

    # --- one job ---------------------------------------------------------------------------

    async def handle(self, generation_id: uuid.UUID) -> None:
        """Run one generation to done, failed or cancelled (or ask the queue for a retry)."""
        with logs.bound(generation=generation_id):
            await self._handle(generation_id)

    async def _handle(self, generation_id: uuid.UUID) -> None:
        from pgqueuer import RetryRequested

        sql = self._connected()
        job = await self._patiently(lambda: self._start(generation_id))
        if job is None:
            return  # cancelled while waiting, or already finished by another worker
        metrics.job_started()
        if job.attempts > self.config.max_attempts:
            log.error(
                "generation %s: gave up after repeated attempts (the worker kept stopping)", job.id
            )
            await self._patiently(lambda: self._fail(job, None))
            metrics.job_ended("failed")
            return
        self._running[job.id] = _Running(job.platform)
        self._busy.set()
        started = time.perf_counter()
        try:
            result = await self._generate(job)
            elapsed = time.perf_counter() - started
            if result.cancelled or job.id in self._cancelled:
                await self._patiently(lambda: jobs.end_cancelled(sql, job, elapsed))
                metrics.job_ended("cancelled")
                return
            stored = await self._store(job, result.images, result.sampling)
            if await self._patiently(lambda: self._finish(Finished(job, stored, elapsed))):
                self.completed += 1
                metrics.job_ended("done")
            else:  # cancelled while its images were being stored
                await self._patiently(lambda: jobs.charge_cancelled(sql, job.id, elapsed))
                metrics.job_ended("cancelled")
        except Exception as exc:
            elapsed = time.perf_counter() - started
            if isinstance(exc, StoreRefused):  # the operator's to fix: said plainly, no retry
                log.error("generation %s failed: %s", job.id, exc)
            else:
                log.exception("generation %s failed (attempt %d)", job.id, job.attempts)
            permanent = isinstance(exc, UserError | StoreRefused)
            if job.attempts < self.config.max_attempts and not permanent:
                error = _error_text(exc)
                await self._patiently(
                    lambda: jobs.end(sql, job, GenerationStatus.QUEUED, error, elapsed)
                )
                metrics.job_ended("retried")
                raise RetryRequested(
                    delay=timedelta(seconds=self.config.retry_delay_s * job.attempts),
                    reason=type(exc).__name__,
                ) from exc
            failure = exc
            await self._patiently(lambda: self._fail(job, failure, elapsed))
            metrics.job_ended("failed")
        finally:
            self._running.pop(job.id, None)
            self._cancelled.discard(job.id)
            if not self._running:
                self._busy.clear()

    async def _start_many(self, ids: list[uuid.UUID]) -> list[StartedJob | None]:
        started = await jobs.start_many(self._connected(), ids)
        return [started.get(gid) for gid in ids]

    async def _finish_many(self, finished: list[Finished]) -> list[bool]:
        done = await jobs.finish_many(self._connected(), finished)
        return [f.job.id in done for f in finished]

    def _connected(self) -> jobs.Sql:
        if self._sql is None:
            raise RuntimeError("Worker.handle runs inside Worker.run")
        return self._sql

    async def _fail(
        self, job: StartedJob, error: BaseException | None, elapsed: float = 0.0
    ) -> None:
        """Mark the job failed. The requester sees a provider's refusal and a ``CannotMake`` as
        worded; any other failure is a reference to the logs."""
        if isinstance(error, RefusedByProvider | CannotMake):
            message = error.user_message
        elif isinstance(error, StoreRefused):
            message = (
                "the images were made but the image store refused to keep them; an operator "
                f"has been told (reference {job.id})"
            )
        else:
            message = f"generation failed, reference {job.id}"
        await jobs.end(self._connected(), job, GenerationStatus.FAILED, message, elapsed)

    async def _generate(self, job: StartedJob) -> JobResult:
        params = job.params
        engine: Engine = self.engines.get(params.engine)
        progress, cancelled = self._progress, self._is_cancelled
        if job.kind in (GenerationKind.IMAGINE, GenerationKind.REROLL):
            styled = await with_style(generate_job(str(job.id), params), params, self.store)
            return await self.batcher.submit(BatchKey.of(params), styled)
        if job.kind in IMAGE_KINDS:  # image prompts and product shots: core.jobs.images_in
            return await self.batcher.exclusive(
                lambda: run_with_upload(engine, self.store, job, progress, cancelled)
            )
        if job.kind is GenerationKind.PACK:  # core.jobs.packs: stores and records the zip
            pack = partial(run_pack, self.db, self.store, self.presets, job, engine)
            return await self.batcher.exclusive(lambda: pack(progress, cancelled))
        source, made_by = await self._source_image(job)
        if job.kind is GenerationKind.VARIATION:
            vary = await with_style(vary_job(str(job.id), params, source), params, self.store)
            return await self.batcher.exclusive(
                lambda: engine.vary(params.model, vary, progress=progress, cancelled=cancelled)
            )
        upscaled = await self.batcher.exclusive(
            lambda: engine.upscale(params.model, source, 2, params.upscaler)
        )
        self._progress(str(job.id), 1, 1)
        return JobResult(str(job.id), (upscaled.image,), sampling=made_by)

    async def _source_image(self, job: StartedJob) -> tuple[Image.Image, Sampling | None]:
        """The source image, and how it was made (from its ``parameters``, when they say)."""
        if job.parent_id is None or job.source_index is None:
            raise ValueError(f"{job.kind.value} {job.id} has no source image")
        parent, index = job.parent_id, job.source_index
        keys = await self._patiently(
            lambda: jobs.source_image_keys(self._connected(), parent, index)
        )
        if keys is None:
            raise ValueError(f"image {job.source_index} of {job.parent_id} is not stored")
        data = await self.store.get(keys[0])
        # from the logo-free master when there is one: the source's logo is not carried over
        pixels = data if keys[1] is None else await self.store.get(keys[1])
        return Image.open(io.BytesIO(pixels)).convert("RGB"), sampling_of(data)

    async def _run_batch(self, key: BatchKey, batch: Sequence[GenerateJob]) -> list[JobResult]:
        engine = self.engines.get(key.engine)
        return await engine.generate(
            key.model, batch, progress=self._progress, cancelled=self._is_cancelled
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
        if not self._running or self._sql is None:
            return
        dirty = {gid: r for gid, r in self._running.items() if r.dirty}
        for running in dirty.values():
            running.dirty = False
        updates = {gid: (r.fraction, r.platform) for gid, r in dirty.items()}
        # Also ask about generations without new progress (e.g. waiting for the device).
        statuses = await jobs.sync_running(self._sql, list(self._running), updates)
        self._cancelled |= {
            gid for gid, status in statuses.items() if status is GenerationStatus.CANCELLED
        }

    async def _flush_progress_forever(self) -> None:
        while True:
            await self._busy.wait()  # nothing runs: nothing to write, no polling
            await asyncio.sleep(self.config.progress_interval_s)
            try:
                await self._flush_progress()
            except Exception as exc:  # progress is best effort; the job itself carries on
                if fault_of(exc) is None:
                    log.warning("could not write progress", exc_info=True)
                else:
                    self.outage.lost(exc)

    # --- storing ---------------------------------------------------------------------------

    async def _store(
        self, job: StartedJob, images: Sequence[Image.Image], sampling: Sampling | None = None
    ) -> list[StoredImage]:
        preset = self.presets.get(job.params.preset)
        parent = None  # a variation's or upscale's source file: its C2PA ingredient
        if job.parent_id is not None and job.source_index is not None:
            key = await jobs.source_image_key(self._connected(), job.parent_id, job.source_index)
            parent = None if key is None else await self.store.get(key)
        return await store_images(self.store, job, preset, images, sampling, parent)


async def _keep_session(connection: Any) -> None:
    """Pool reset: our statements leave no session state behind (``set_config`` is local to
    its statement's transaction), so skip asyncpg's reset round trip on every release."""


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return exc.user_message
    return f"{type(exc).__name__}: {exc}"[:500]
