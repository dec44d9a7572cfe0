"""Engines: what turns jobs into pixels (the ``core.ports.Engine`` port).

- ``fake.FakeEngine``: deterministic pictures without torch, for tests and demos.
- ``diffusers.DiffusersEngine``: local Stable-Diffusion-style pipelines (imports torch lazily).
- ``openai.OpenAIEngine``: the OpenAI images API.
- ``registry.EngineRegistry``: engine kind → engine, created on first use.

Importing this package (or any module in it) imports no torch; only running a diffusers job does.

Rules every engine follows (``tests/engines/contract.py`` checks them):

- ``generate`` takes jobs that share width, height, steps, guidance and LoRAs (``ValueError``
  otherwise); prompts, negative prompts and seeds may differ per job. Results come back in job
  order. Engines without LoRAs never get jobs with some (presets refuse them).
- One image per seed; the same seed gives the same picture alone or inside a batch (the same bits
  for the same call on the same machine; across batch sizes and devices within floating-point
  noise, see ``tests/pixels.py``).
- ``progress(job_id, step, total)`` is called on the caller's event loop, ``step`` rising to
  ``total``; it is never called again for a job once the job is seen as cancelled.
- ``cancelled(job_id)`` is polled once before the run and after every step; it may be called
  from a worker thread, so it must be quick and thread-safe (reading a set or a flag is).
- A job seen as cancelled returns ``JobResult(cancelled=True)`` with no images.
- ``upscale`` takes a whole factor from 1 to ``core.imaging.resize.MAX_RESAMPLE_FACTOR``; without
  an upscaler model it is ``core.imaging.resize.resample_upscale`` (Lanczos) in every engine.
- A result says how its images were made when the engine knows (``JobResult.sampling``: A1111's
  sampler and schedule type for the scheduler the call ran, and the model's short hash); the
  worker writes it into the PNG ``parameters``.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.ports import GenerateJob

__all__ = ["check_batch", "check_size", "vary_steps"]


def check_size(width: int, height: int, *, multiple: int = 8) -> None:
    """Raise ``ValueError`` unless both sides are positive multiples of ``multiple``."""
    for side, value in (("width", width), ("height", height)):
        if value <= 0 or value % multiple:
            raise ValueError(f"{side} must be a positive multiple of {multiple}, got {value}")


def check_batch(jobs: Sequence[GenerateJob]) -> None:
    """Raise ``ValueError`` unless the jobs can run as one call (see the module docstring)."""
    if not jobs:
        return
    first = jobs[0]
    shape = (first.width, first.height, first.steps, first.guidance)
    for job in jobs[1:]:
        if (job.width, job.height, job.steps, job.guidance) != shape:
            raise ValueError(
                "jobs in one batch must share width, height, steps and guidance: "
                f"{first.job_id} has {shape}, {job.job_id} has "
                f"{(job.width, job.height, job.steps, job.guidance)}"
            )
    for job in jobs[1:]:
        if job.loras != first.loras:
            raise ValueError(
                f"jobs in one batch must share their LoRAs: {first.job_id} has {first.loras}, "
                f"{job.job_id} has {job.loras}"
            )
        if (job.style is None) != (first.style is None) or (
            first.style is not None and not first.style.same_look(job.style)
        ):
            raise ValueError(
                f"jobs in one batch must share their style: {first.job_id} and {job.job_id} differ"
            )
    ids = [job.job_id for job in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"job ids in one batch must be unique: {ids}")
    for job in jobs:
        if not job.seeds:
            raise ValueError(f"job {job.job_id} has no seeds (one image per seed)")
        if job.steps < 1:
            raise ValueError(f"job {job.job_id}: steps must be at least 1, got {job.steps}")
        check_size(job.width, job.height)


def vary_steps(steps: int, strength: float) -> int:
    """The denoising steps an image-to-image run really takes (as diffusers counts them)."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    effective = min(int(steps * strength), steps)
    if effective < 1:
        raise ValueError(
            f"steps × strength must be at least 1 (got {steps} × {strength}); raise either"
        )
    return effective
