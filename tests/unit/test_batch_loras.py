"""The worker's batches never mix LoRA sets: jobs of one model and size but different LoRAs (or
none) go to the engine in separate calls, each job carrying its own LoRAs."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from core.domain import Params
from core.jobs.batching import Batcher, BatchKey, generate_job
from core.ports import GenerateJob, JobResult

BASE = Params(
    prompt="red circle",
    negative_prompt="",
    width=64,
    height=64,
    steps=3,
    guidance=5.0,
    seed=1,
    n=1,
    engine="diffusers",
    model="tiny",
    preset="p",
    preset_version="v1",
)


async def test_jobs_with_different_loras_are_never_batched_together() -> None:
    calls: list[tuple[BatchKey, list[tuple[tuple[str, float], ...]]]] = []

    async def run(key: BatchKey, batch: Sequence[GenerateJob]) -> list[JobResult]:
        calls.append((key, [job.loras for job in batch]))
        return [JobResult(job.job_id, ()) for job in batch]

    batcher = Batcher(run, max_images=8, window_s=0.05)
    serving = asyncio.create_task(batcher.serve())
    looks = [(), (("/brand/look.safetensors", 0.8),), (("/brand/look.safetensors", 0.5),), ()]
    try:
        variants = [dataclasses.replace(BASE, seed=i, loras=lora) for i, lora in enumerate(looks)]
        await asyncio.gather(
            *(
                batcher.submit(BatchKey.of(p), generate_job(f"j{i}", p))
                for i, p in enumerate(variants)
            )
        )
    finally:
        serving.cancel()
    by_key = {key.loras: loras for key, loras in calls}
    assert len(calls) == 3  # the two jobs without LoRAs together; each LoRA set alone
    assert by_key[()] == [(), ()]
    for look in looks[1:3]:
        assert by_key[look] == [look]
