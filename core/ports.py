"""What core needs from the outside world, as Protocols.

Each port has a real implementation (wired in ``core.bootstrap``) and an in-memory fake in
``core.testing`` for fast unit tests. Contract tests in ``tests/`` run against both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

# progress(job_id, step, total_steps): called from the engine as denoising advances.
ProgressFn = Callable[[str, int, int], None]
# cancelled(job_id) -> True when the job should stop at the next step.
CancelledFn = Callable[[str], bool]


@dataclass(frozen=True)
class GenerateJob:
    """One text-to-image job inside a batch; ``len(seeds)`` images, one seed each."""

    job_id: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class VaryJob:
    """An image-to-image variation of ``image``."""

    job_id: str
    image: Image.Image
    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    strength: float
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class JobResult:
    """The images of one job, or ``cancelled`` with none."""

    job_id: str
    images: tuple[Image.Image, ...]
    cancelled: bool = False


@dataclass(frozen=True)
class UpscaleResult:
    image: Image.Image
    method: str  # "model:<id>" or "resampled:lanczos"


class Engine(Protocol):
    """Turns jobs into pixels. ``model`` is per call: a hub id, a local folder or ``tiny``."""

    name: str

    async def generate(
        self,
        model: str,
        jobs: Sequence[GenerateJob],
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> list[JobResult]:
        """Run compatible jobs (same size, steps, guidance) together; results in job order."""
        ...

    async def vary(
        self,
        model: str,
        job: VaryJob,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> JobResult: ...

    async def upscale(
        self, model: str, image: Image.Image, factor: int = 2, upscaler: str | None = None
    ) -> UpscaleResult: ...


class ImageStore(Protocol):
    """Content-addressed bytes: ``put`` returns the key; the same bytes are stored once."""

    async def put(self, data: bytes, *, suffix: str = ".png") -> str: ...

    async def get(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...
