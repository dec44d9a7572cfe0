"""Finishing: an engine's pixels → the stored original.

Every image is watermarked with the preset's logo (when it has one), encoded as PNG with A1111
``parameters`` and an XMP AI disclosure (``core.imaging.metadata``), scored against the preset's
palette, and durably stored by content hash; the work runs in threads, the images of a job
concurrently.

The parameters are A1111's (``core.imaging.metadata.format_parameters``). Sampler, schedule type and
model hash are what the engine reported for the call (``JobResult.sampling``); an engine that
reports nothing (the OpenAI images API discloses no sampler) gets its own name as the sampler,
because A1111-format readers need one. An upscale's image was sampled when its source was made, so
it carries the source's sampler, schedule type, model hash and seed (``sampling_of`` reads them
from the source PNG).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from PIL import Image

from core.brand.presets import Preset
from core.db.jobs import StartedJob, StoredImage
from core.domain import GenerationKind
from core.imaging.brand import apply_watermark
from core.imaging.colour import palette_score
from core.imaging.metadata import ImageMetadata, encode_png, parameter_settings, read_parameters
from core.ports import ImageStore, Sampling
from core.storage.local import BlockingPut


async def store_images(
    store: ImageStore,
    job: StartedJob,
    preset: Preset | None,
    images: Sequence[Image.Image],
    sampling: Sampling | None = None,
) -> list[StoredImage]:
    """Watermark, tag, encode (in threads) and durably store every image, concurrently."""
    blocking = store if isinstance(store, BlockingPut) else None

    def finish(index: int, image: Image.Image) -> tuple[bytes, float | None]:
        return finish_image(job, preset, index, image, sampling)

    def encode_and_put(
        local: BlockingPut, index: int, image: Image.Image
    ) -> tuple[bytes, float | None, str]:
        data, score = finish(index, image)
        return data, score, local.put_blocking(data, suffix=".png")

    async def one(index: int, image: Image.Image) -> StoredImage:
        if blocking is not None:  # one thread hop for both
            data, score, key = await asyncio.to_thread(encode_and_put, blocking, index, image)
        else:
            data, score = await asyncio.to_thread(finish, index, image)
            key = await store.put(data, suffix=".png")
        return StoredImage(
            index=index,
            storage_key=key,
            sha256=key.split(".", 1)[0],
            width=image.width,
            height=image.height,
            size=len(data),
            palette_score=score,
        )

    if len(images) == 1:
        return [await one(1, images[0])]
    return list(await asyncio.gather(*(one(i, im) for i, im in enumerate(images, start=1))))


def finish_image(
    job: StartedJob,
    preset: Preset | None,
    index: int,
    image: Image.Image,
    sampling: Sampling | None = None,
) -> tuple[bytes, float | None]:
    """The stored original: watermark, then PNG with A1111 ``parameters`` and XMP."""
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
    if job.kind is GenerationKind.UPSCALE and job.source_index:
        # an upscale keeps its source's params: the source image's seed is its index's
        seed = dataclasses.replace(params, n=job.source_index).seeds()[-1]
    else:
        seed = params.seeds()[index - 1] if index <= params.n else params.seed
    made_by = sampling or Sampling(sampler=params.engine)
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
        sampler=made_by.sampler,
        schedule_type=made_by.schedule_type,
        model_hash=made_by.model_hash,
        denoising_strength=params.strength if job.kind is GenerationKind.VARIATION else None,
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


def sampling_of(png: bytes) -> Sampling | None:
    """The sampler, schedule type and model hash an original's ``parameters`` name, if any."""
    try:
        parameters = read_parameters(png)
    except (OSError, ValueError):
        return None
    settings = parameter_settings(parameters or "")
    sampler = settings.get("Sampler")
    if not sampler:
        return None
    return Sampling(sampler, settings.get("Schedule type"), settings.get("Model hash"))
