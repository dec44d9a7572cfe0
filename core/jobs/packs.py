"""The worker's part of campaign packs: a ``pack`` generation → a zip in the image store.

The job's parent image (its logo-free master when it has one) is read from the store, the pack
is built by ``core.service.pack_pixels.build_pack`` with the job's engine (outpainting and
engine enlargements when it can inpaint; then crop or extend, resize, the preset's logo per
placement, encoded under each byte limit with the disclosure, sealed with the watermark and
C2PA), the zip
and its contact sheet are stored, and the pack is recorded (``core.db.packs``: the pack, one row
per placement file and the ``pack.made`` audit entry) before the generation is marked done. A
pack makes no images of its own: the job's result is empty, and delivery posts the zip.

Progress: 5% once the source is read, then the engine's own steps while it outpaints. A cancel
(seen before the build, by the engine, or after it) stores nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections.abc import Mapping

from PIL import Image

from core.brand.placements import placements_for
from core.brand.presets import Preset
from core.db.database import Database
from core.db.jobs import StartedJob
from core.db.packs import NewPack, PackFileRow, SqlPacks
from core.errors import CannotMake
from core.imaging.metadata import read_parameters
from core.ports import CancelledFn, Engine, ImageStore, Inpainter, JobResult, ProgressFn
from core.service.pack_pixels import PackCancelled, build_pack
from core.service.packs import (
    FROM_ORIGINAL,
    _logo,
    _marks,
    _seal,
    choose,
    pack_prompt,
    scaled_box,
)

log = logging.getLogger(__name__)

__all__ = ["run_pack"]


async def run_pack(
    db: Database,
    store: ImageStore,
    presets: Mapping[str, Preset],
    job: StartedJob,
    engine: Engine,
    progress: ProgressFn | None,
    cancelled: CancelledFn | None,
) -> JobResult:
    """Build, store and record the pack of ``job`` (a ``pack`` generation); an empty result."""
    job_id = str(job.id)
    if job.parent_id is None or job.source_index is None:
        raise ValueError(f"pack {job.id} has no source image")
    records = SqlPacks(db)
    key, clean_key, campaign, requester = await records.context(job.id)
    if key is None:
        raise CannotMake(f"Image {job.source_index} of {job.parent_id} is no longer stored.")
    data = await store.get(key)
    clean = None if clean_key is None else await store.get(clean_key)
    if progress is not None:
        progress(job_id, 1, 20)
    params = job.params
    preset = presets.get(params.preset)
    known = placements_for(preset.source_path if preset else None, params.preset)
    chosen = choose(known, params.placements or None)
    logo = _logo(preset)
    opacity = preset.watermark.opacity if preset and preset.watermark else 0.8
    source_ref = f"{job.parent_id}:{job.source_index}"
    seal = _seal(job.parent_id, job.source_index, data)
    if cancelled is not None and cancelled(job_id):
        return JobResult(job_id, (), cancelled=True)

    def decode() -> Image.Image:
        with Image.open(io.BytesIO(clean or data), formats=("PNG",)) as opened:
            return opened.convert("RGB")

    source = await asyncio.to_thread(decode)
    try:
        made = await build_pack(
            source,
            source_ref=source_ref,
            campaign=campaign,
            placements=chosen,
            product_box=scaled_box(params, source.size),
            logo=logo,
            logo_opacity=opacity,
            parameters=read_parameters(data),
            seal=seal,
            note=FROM_ORIGINAL if clean is None and _marks(preset) else "",
            inpainter=engine if isinstance(engine, Inpainter) else None,
            model=params.model,
            prompt=pack_prompt(params, job.source_index),
            upscaler=params.upscaler,
            job_id=job_id,
            progress=progress,
            cancelled=cancelled,
        )
    except PackCancelled:
        return JobResult(job_id, (), cancelled=True)
    if cancelled is not None and cancelled(job_id):
        return JobResult(job_id, (), cancelled=True)
    zip_key = await store.put(made.zip_bytes, suffix=".zip")
    sheet_key = await store.put(made.contact_sheet, suffix=".png")
    pack = NewPack(
        generation_id=job.id,
        source_generation_id=job.parent_id,
        source_index=job.source_index,
        folder=made.campaign,
        storage_key=zip_key,
        sheet_key=sheet_key,
        bytes=len(made.zip_bytes),
        sha256=hashlib.sha256(made.zip_bytes).hexdigest(),
        files=tuple(
            PackFileRow(f.placement, f.path, f.method, f.size[0], f.size[1], f.bytes, f.sha256)
            for f in made.files
        ),
    )
    await records.record(pack, requester)
    log.info("pack of %s: %d placements, %d bytes", source_ref, len(made.files), pack.bytes)
    return JobResult(job_id, ())
