"""Finishing: an engine's pixels → the stored original.

The order, for every file written: pixels → the preset's visible logo (when it has one: checked
on every use, decoded once per process, see ``watermark_logo``) and "AI" badge (when it asks for
one) → the invisible watermark
(``core.provenance.watermark``: the image's watermark id and its MAC) → PNG with A1111
``parameters`` and XMP/IPTC AI fields (``core.imaging.metadata``) → the C2PA signature
(``core.provenance.sign``; a variation's or upscale's parent image is its ingredient) last.
Nothing writes after signing. The image is scored against the preset's palette and durably
stored by content hash; the work runs in finishing's own processes (``core.jobs.finishers``:
one per core, off the interpreter lock of the loop that feeds the engine), the images of a job
concurrently. When the preset draws a logo or badge, the engine's pixels are also stored as the
image's logo-free master (``clean_png``, ``images.clean_key``), the source of campaign packs.

A configured signer that fails fails the job (with the reason in the log): an unsigned file is
never stored in its place. The embedded default signer always works.

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
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from core.brand.logo import MAX_LOGO_SIDE, LogoError, preset_logo
from core.brand.presets import Preset
from core.db.jobs import StartedJob, StoredImage
from core.domain import GenerationKind
from core.errors import PresetError
from core.imaging.badge import apply_ai_badge
from core.imaging.brand import apply_watermark, decode_logo
from core.imaging.colour import palette_score
from core.imaging.metadata import (
    PNG_COMPRESS_LEVEL,
    ImageMetadata,
    encode_png,
    parameter_settings,
    read_parameters,
)
from core.jobs import finishers
from core.jobs.images_in import kept_pixels, watermark_position
from core.jobs.styles import a1111_loras
from core.memory.phash import phash_if_available
from core.ops import logs
from core.ports import ImageStore, Sampling
from core.provenance import setup as provenance
from core.provenance.setup import Provenance
from core.provenance.sign import Facts, action_for, sign
from core.provenance.watermark import embed, image_id_of
from core.storage.local import BlockingPut

log = logging.getLogger(__name__)

CONFIDENTIAL = "(prompt not shared: the campaign keeps its prompts confidential)"
_IMG2IMG = (GenerationKind.VARIATION, GenerationKind.IMAGE_PROMPT)


class Finished(NamedTuple):
    """A finished original and what was measured on its pixels on the way."""

    data: bytes  # the signed PNG
    palette_score: float | None
    phash: int | None  # before the invisible watermark; None without imagehash
    # the logo-free master (a plain PNG of the engine's pixels, unsigned, never served) that
    # campaign packs start from; only when a logo or badge was drawn (else the original serves)
    clean: bytes | None = None


async def store_images(
    store: ImageStore,
    job: StartedJob,
    preset: Preset | None,
    images: Sequence[Image.Image],
    sampling: Sampling | None = None,
    parent: bytes | None = None,
) -> list[StoredImage]:
    """Watermark, tag, encode, sign (in threads) and durably store every image, concurrently.

    ``parent`` is the file of the image a variation or upscale was made from: it becomes the
    ingredient of each new image's C2PA manifest."""
    credentials = provenance.current()
    # a store the finishing process or thread can write to itself: one hop for both steps
    local = store if isinstance(store, BlockingPut) else None

    async def one(index: int, image: Image.Image) -> StoredImage:
        done, key, clean = await finishers.run(
            finish_and_store, credentials, local, job, preset, index, image, sampling, parent
        )
        if key is None:
            clean = None if done.clean is None else await store.put(done.clean, suffix=".png")
            key = await store.put(done.data, suffix=".png")
        return StoredImage(
            index=index,
            storage_key=key,
            sha256=key.split(".", 1)[0],
            width=image.width,
            height=image.height,
            size=len(done.data),
            palette_score=done.palette_score,
            phash=done.phash,
            clean_key=clean,
        )

    if len(images) == 1:
        return [await one(1, images[0])]
    return list(await asyncio.gather(*(one(i, im) for i, im in enumerate(images, start=1))))


def finish_and_store(
    credentials: Provenance,
    store: BlockingPut | None,
    job: StartedJob,
    preset: Preset | None,
    index: int,
    image: Image.Image,
    sampling: Sampling | None,
    parent: bytes | None,
) -> tuple[Finished, str | None, str | None]:
    """``finish_image``, then (when ``store`` is given) its original and clean master durably
    stored: what one finishing process or thread does for one image. Module-level, so that it
    travels to a finishing process by pickle with the worker's credentials."""
    with logs.bound(generation=job.id):  # a finishing process's lines name the job too
        done = finish_image(job, preset, index, image, sampling, parent, credentials=credentials)
        if store is None:
            return done, None, None
        clean = None if done.clean is None else store.put_blocking(done.clean, suffix=".png")
        return done, store.put_blocking(done.data, suffix=".png"), clean


def warm_up(image: Image.Image) -> None:
    """Import what finishing imports on first use (imagehash with SciPy, c2pa)."""
    phash_if_available(image)
    import c2pa  # noqa: F401


def finish_image(
    job: StartedJob,
    preset: Preset | None,
    index: int,
    image: Image.Image,
    sampling: Sampling | None = None,
    parent: bytes | None = None,
    *,
    credentials: Provenance | None = None,
) -> Finished:
    """The stored original: logo, invisible watermark, PNG with A1111 ``parameters`` and XMP,
    then the C2PA signature; with its palette score and the pHash of its pixels before the
    watermark. ``credentials``: the signer and watermark secret (default: the process's)."""
    params = job.params
    credentials = credentials or provenance.current()
    clean = image  # the engine's pixels: packs put the logo on each placement themselves
    logo = watermark_logo(preset) if preset is not None else None
    if (
        preset is not None
        and preset.watermark is not None
        and logo is not None
        and (position := watermark_position(preset, image, logo, params)) is not None
    ):  # images in: never over kept pixels (core.jobs.images_in)
        mark = preset.watermark
        image = apply_watermark(
            image,
            logo,
            position=position,
            opacity=mark.opacity,
            scale=mark.scale,
        )
    if preset is not None and preset.ai_badge is not None:
        badge = preset.ai_badge
        image = apply_ai_badge(image, position=badge.position, size=badge.size)
    score = palette_score(image, preset.palette) if preset and preset.palette else None
    watermark_id = image_id_of(str(job.id), index)
    # hashed before the watermark, which differs in every copy and moves a small picture's
    # pHash by up to 14 of 64 bits: the same picture in two campaigns must hash the same
    phash = phash_if_available(image)
    keep = kept_pixels(job.kind, params, image.size)  # a product, an edit's original: untouched
    image = embed(image, credentials.watermark_secret, watermark_id, keep=keep)
    step = action_for(job.kind.value, parent is not None)
    if job.kind is GenerationKind.UPSCALE and job.source_index:
        # an upscale keeps its source's params: the source image's seed is its index's
        seed = dataclasses.replace(params, n=job.source_index).seeds()[-1]
    else:
        seed = params.seeds()[index - 1] if index <= params.n else params.seed
    made_by = sampling or Sampling(sampler=params.engine)
    meta = ImageMetadata(
        prompt=CONFIDENTIAL if params.confidential else params.prompt,
        negative_prompt="" if params.confidential else params.negative_prompt,
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
        denoising_strength=params.strength if job.kind in _IMG2IMG else None,
        resampled="lanczos x2"
        if job.kind is GenerationKind.UPSCALE and not params.upscaler
        else None,
        digital_source_type=step.source_type,
        # the prompt travels only when its campaign allows it (the service then names a writer)
        prompt_information=params.prompt if params.prompt_writer else None,
        prompt_writer=params.prompt_writer,
        loras=a1111_loras(params.loras),
        style_code=params.style_code,
        style_weight=params.style_weight if params.style_code else None,
    )
    facts = Facts(
        title=f"onbrand {job.id}#{index}",
        kind=job.kind.value,
        generation_id=str(job.id),
        index=index,
        watermark_id=watermark_id,
        model=params.model,
        engine=params.engine,
        parent=parent if step.has_parent else None,
        parent_title=f"onbrand {job.parent_id}#{job.source_index}" if job.parent_id else None,
    )
    signed = sign(encode_png(image, meta), facts, credentials.keys)
    return Finished(signed, score, phash, clean_png(clean) if image_marked(preset) else None)


def image_marked(preset: Preset | None) -> bool:
    """Whether finishing draws on the pixels (a logo or a badge): then a clean master is kept."""
    return preset is not None and (preset.watermark is not None or preset.ai_badge is not None)


def clean_png(image: Image.Image) -> bytes:
    """The logo-free master: the pixels as a PNG with no metadata (never served, never signed)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


_LOGOS_KEPT = 8
_logos: OrderedDict[tuple[Path, str], Image.Image] = OrderedDict()
_logos_lock = threading.Lock()


def watermark_logo(preset: Preset) -> Image.Image | None:
    """``preset``'s logo pixels, decoded once per process for every thread that finishes images.

    The file is checked again on every use (``core.brand.logo.read_logo``: it may have changed
    since the preset was loaded) and the pixels kept by path and content hash, so a changed logo
    is picked up and an unchanged one never decoded twice. The lock makes the encoder threads of
    a job wait for one decode instead of each decoding the same file.
    """
    try:
        file = preset_logo(preset)
        if file is None:
            return None
        key = (file.path, file.sha256)
        with _logos_lock:
            logo = _logos.get(key)
            if logo is None:
                try:
                    logo = decode_logo(file.data, formats=(file.format,), max_side=MAX_LOGO_SIDE)
                except (OSError, SyntaxError, ValueError) as exc:
                    raise LogoError(f"cannot be decoded: {exc}") from exc
                _logos[key] = logo
                while len(_logos) > _LOGOS_KEPT:
                    _logos.popitem(last=False)
            else:
                _logos.move_to_end(key)
            return logo
    except LogoError as exc:
        log.error("preset %s: watermark.logo: %s", preset.name, exc)
        raise PresetError(
            f"The watermark logo of preset {preset.name} can't be used, so no image was made; "
            "an admin must fix the preset (`onbrand presets validate` says what is wrong)."
        ) from exc


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
