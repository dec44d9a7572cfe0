"""Group compatible jobs into one engine call.

One ``Batcher`` per device. Jobs wait up to ``window_s`` for company; then the oldest waiting job
and every compatible job after it (same key: engine, model, size, steps, guidance) go to the
engine together, up to ``max_images`` images. A job with more images than fit is split into
pieces that keep their seeds, so a batched image is the image the job would make alone. Work
that can't be batched (variations, upscales) runs through ``exclusive`` under the same device
lock, so one device does one thing at a time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from PIL import Image

from core.domain import Params
from core.ports import GenerateJob, JobResult, VaryJob

T = TypeVar("T")
K = TypeVar("K")
R = TypeVar("R")
PIECE = "#"  # piece ids are "<job id>#<n>"


@dataclass(frozen=True)
class BatchKey:
    """What jobs must share to run in one engine call."""

    engine: str
    model: str
    width: int
    height: int
    steps: int
    guidance: float
    loras: tuple[tuple[str, float], ...] = ()  # a batch never mixes LoRA sets
    style: tuple[str | float, ...] = ()  # nor looks: (code, weight, *adapter)

    @classmethod
    def of(cls, params: Params) -> BatchKey:
        """The key of a text-to-image job with ``params``."""
        return cls(
            params.engine,
            params.model,
            params.width,
            params.height,
            params.steps,
            params.guidance,
            params.loras,
            (params.style_code, params.style_weight, *params.style_adapter)
            if params.style_code
            else (),
        )


def generate_job(job_id: str, params: Params) -> GenerateJob:
    """The engine's text-to-image job for ``params``."""
    return GenerateJob(
        job_id,
        params.prompt,
        params.negative_prompt,
        params.width,
        params.height,
        params.steps,
        params.guidance,
        params.seeds(),
        params.loras,
    )


def vary_job(job_id: str, params: Params, source: Image.Image) -> VaryJob:
    """The engine's image-to-image job making ``params``'s variations of ``source``."""
    return VaryJob(
        job_id,
        source,
        params.prompt,
        params.negative_prompt,
        params.steps,
        params.guidance,
        params.strength,
        params.seeds(),
        params.loras,
    )


RunBatch = Callable[[BatchKey, Sequence[GenerateJob]], Awaitable[list[JobResult]]]


@dataclass
class _Piece:
    key: BatchKey
    job: GenerateJob
    future: asyncio.Future[JobResult]
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(self, run: RunBatch, *, max_images: int, window_s: float) -> None:
        if max_images < 1:
            raise ValueError("max_images must be at least 1")
        self._run = run
        self.max_images = max_images
        self.window_s = window_s
        self._waiting: list[_Piece] = []
        self._wakeup = asyncio.Event()
        self._device = asyncio.Lock()
        self._ids = itertools.count()
        self.batch_sizes: list[int] = []  # images per engine call, for metrics and tests

    async def submit(self, key: BatchKey, job: GenerateJob) -> JobResult:
        """Run ``job`` in some batch; its images come back in seed order."""
        pieces = [
            _Piece(
                key,
                replace(
                    job,
                    job_id=f"{job.job_id}{PIECE}{next(self._ids)}",
                    seeds=job.seeds[i : i + self.max_images],
                ),
                asyncio.get_running_loop().create_future(),
            )
            for i in range(0, len(job.seeds), self.max_images)
        ]
        self._waiting.extend(pieces)
        self._wakeup.set()
        results = await asyncio.gather(*(p.future for p in pieces))
        if any(r.cancelled for r in results):
            return JobResult(job.job_id, (), cancelled=True)
        images = tuple(image for r in results for image in r.images)
        return JobResult(job.job_id, images, sampling=results[0].sampling)  # same engine, model

    async def exclusive(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run unbatchable work with the device to itself."""
        async with self._device:
            return await work()

    async def serve(self) -> None:
        """Form and run batches until cancelled."""
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            oldest = self._waiting[0]
            # Wait for company, unless the oldest compatible group is already full.
            wait = oldest.arrived + self.window_s - time.monotonic()
            if wait > 0 and self._images(self._compatible(oldest)) < self.max_images:
                await asyncio.sleep(wait)
            batch = self._take(oldest)
            async with self._device:
                await self._run_batch(batch)

    def _compatible(self, oldest: _Piece) -> list[_Piece]:
        return [p for p in self._waiting if p.key == oldest.key]

    @staticmethod
    def _images(pieces: Sequence[_Piece]) -> int:
        return sum(len(p.job.seeds) for p in pieces)

    def _take(self, oldest: _Piece) -> list[_Piece]:
        batch: list[_Piece] = []
        images = 0
        for piece in self._compatible(oldest):
            if images + len(piece.job.seeds) > self.max_images:
                continue
            batch.append(piece)
            images += len(piece.job.seeds)
        for piece in batch:
            self._waiting.remove(piece)
        return batch

    async def _run_batch(self, batch: list[_Piece]) -> None:
        self.batch_sizes.append(self._images(batch))
        try:
            results = await self._run(batch[0].key, [p.job for p in batch])
        except Exception as exc:  # not swallowed: every job of the call raises it (and logs it)
            for piece in batch:
                if not piece.future.done():
                    piece.future.set_exception(exc)
            return
        by_id = {r.job_id: r for r in results}
        for piece in batch:
            if piece.future.done():
                continue
            result = by_id.get(piece.job.job_id)
            if result is None:
                piece.future.set_exception(RuntimeError(f"engine returned no {piece.job.job_id}"))
            else:
                piece.future.set_result(result)


def job_of(piece_id: str) -> str:
    """The job id a piece id belongs to."""
    return piece_id.rsplit(PIECE, 1)[0]


class Coalescer(Generic[K, R]):
    """Group commit: calls that arrive while a flush is in flight (or in the same turn of the
    event loop) go out together in the next flush.

    ``flush(items)`` returns one result per item, in order. A lone call is flushed at once, so
    coalescing adds no latency; under load, N concurrent calls cost one round trip instead of N.
    If ``flush`` raises, every call of that flush raises the same exception.
    """

    def __init__(self, flush: Callable[[list[K]], Awaitable[Sequence[R]]]) -> None:
        self._flush = flush
        self._pending: list[tuple[K, asyncio.Future[R]]] = []
        self._draining: asyncio.Task[None] | None = None
        self.flushes = 0  # for metrics and tests

    async def __call__(self, item: K) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        calls: list[tuple[K, asyncio.Future[R]]] = []
        try:
            while self._pending:
                calls, self._pending = self._pending, []
                self.flushes += 1
                try:
                    results = await self._flush([item for item, _ in calls])
                except Exception as exc:  # not swallowed: each caller of this flush raises it
                    for _, future in calls:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(calls, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._draining = None
            for _, future in calls:  # cancelled during a flush: so are the calls it carried
                future.cancel()  # a no-op for the calls already answered
