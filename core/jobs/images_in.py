"""The worker's part of images in: image prompts and product shots.

The job carries what it needs in its parameters (``Params.init_image``: the image-store key of
the pixels it starts from; ``Params.product_box`` for a product shot), so the worker only
dispatches here:

- an **image prompt** is the engine's image-to-image (``Engine.vary``) on the upload, covered and
  centre-cropped to the requested size, at the strength the service mapped from ``--iw``;
- a **product shot** is the engine's inpainting (``core.ports.Inpainter``) around the placed
  product, then ``core.imaging.product.finish_product_shot``: contact shadow, harmonisation ring,
  and the product's own pixels pasted back last, bit for bit.

Finishing then watermarks at ``watermark_position``: the preset's corner, or another corner the
preset allows when the logo would cover the product.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import numpy.typing as npt
from PIL import Image

from core.brand.presets import Preset
from core.db.jobs import StartedJob
from core.domain import GenerationKind, Params
from core.errors import UserError
from core.imaging.brand import Position
from core.imaging.canvas import cover
from core.imaging.product import (
    clear_corner,
    finish_product_shot,
    inpaint_inputs,
    overlap,
    watermark_rect,
)
from core.ports import (
    CancelledFn,
    Engine,
    ImageStore,
    Inpainter,
    InpaintJob,
    JobResult,
    ProgressFn,
    VaryJob,
)

log = logging.getLogger(__name__)

__all__ = [
    "EDIT_KINDS",
    "IMAGE_KINDS",
    "kept_pixels",
    "run_with_upload",
    "watermark_position",
]

EDIT_KINDS = (GenerationKind.ZOOM_OUT, GenerationKind.PAN, GenerationKind.VARY_REGION)
IMAGE_KINDS = (GenerationKind.IMAGE_PROMPT, GenerationKind.PRODUCT, *EDIT_KINDS)
KEEPS_BOX = (GenerationKind.PRODUCT, GenerationKind.ZOOM_OUT, GenerationKind.PAN)  # product_box
Kept = npt.NDArray[np.bool_]


async def run_with_upload(
    engine: Engine,
    store: ImageStore,
    job: StartedJob,
    progress: ProgressFn | None,
    cancelled: CancelledFn | None,
) -> JobResult:
    """Run an image-prompt or product-shot generation on ``engine``."""
    params = job.params
    if params.init_image is None:
        raise ValueError(f"{job.kind.value} {job.id} has no input image")
    with Image.open(io.BytesIO(await store.get(params.init_image)), formats=("PNG",)) as opened:
        source = opened.convert("RGBA")
    if job.kind is GenerationKind.IMAGE_PROMPT:
        start = cover(source.convert("RGB"), params.width, params.height)
        vary = VaryJob(
            str(job.id),
            start,
            params.prompt,
            params.negative_prompt,
            params.steps,
            params.guidance,
            params.strength,
            params.seeds(),
        )
        return await engine.vary(params.model, vary, progress=progress, cancelled=cancelled)
    edit = job.kind in EDIT_KINDS  # the layer is the whole canvas: what is kept, and alpha
    box = (0, 0, params.width, params.height) if edit else params.product_box
    if box is None:
        raise ValueError(f"product shot {job.id} has no product box")
    if not isinstance(engine, Inpainter):
        raise UserError(
            f"The {params.engine} engine can't make product shots; use a preset on the "
            "diffusers engine."
        )
    canvas, mask = inpaint_inputs(source, box, (params.width, params.height))
    inpaint = InpaintJob(
        str(job.id),
        canvas,
        mask,
        params.prompt,
        params.negative_prompt,
        params.steps,
        params.guidance,
        params.seeds(),
    )
    result = await engine.inpaint(params.model, inpaint, progress=progress, cancelled=cancelled)
    if result.cancelled:
        return result
    shadow, ring = (0.0, 0) if edit else (0.35, 2)  # edits: no shadow, no ring, just paste back
    shots = tuple(
        finish_product_shot(scene, source, box, shadow=shadow, ring=ring) for scene in result.images
    )
    return JobResult(result.job_id, shots, sampling=result.sampling)


def kept_pixels(kind: GenerationKind, params: Params, size: tuple[int, int]) -> Kept | None:
    """The pixels a product shot or an edit keeps bit for bit (True), for the finishing steps
    that touch every pixel (the invisible watermark): the product's box, the original a zoom-out
    or pan keeps, everything outside a varied region. ``None`` for other kinds."""
    width, height = size
    if kind is GenerationKind.VARY_REGION and params.edit_region is not None:
        x, y, w, h = params.edit_region
        keep = np.ones((height, width), dtype=bool)
        keep[y : y + h, x : x + w] = False
        return keep
    if kind in KEEPS_BOX and params.product_box is not None:
        x, y, w, h = params.product_box
        keep = np.zeros((height, width), dtype=bool)
        keep[y : y + h, x : x + w] = True
        return keep
    return None


def watermark_position(
    preset: Preset, image: Image.Image, logo: Image.Image, params: Params
) -> Position | None:
    """Where the watermark goes, or ``None`` for nowhere: nothing is drawn over pixels a product
    shot or an edit keeps bit for bit.

    The preset's position, moved to another corner the preset allows when it would cover the
    product (or the original a zoom-out or pan keeps); none when no allowed corner is clear
    (logged). A varied region gets the watermark only when the preset's watermark lies wholly
    inside it; otherwise the original's own watermark is among the kept pixels."""
    assert preset.watermark is not None
    mark = preset.watermark
    if params.edit_region is not None:
        rect = watermark_rect(mark.position, image.size, logo.size, scale=mark.scale)
        inside = overlap(rect, params.edit_region) == rect[2] * rect[3]
        return mark.position if inside else None
    if params.product_box is None:
        return mark.position
    spot = clear_corner(
        mark.position,
        preset.product.watermark_corners,
        params.product_box,
        image.size,
        logo.size,
        scale=mark.scale,
    )
    if spot is None:
        log.warning("no watermark corner is clear of the kept pixels: the watermark is left out")
    return spot  # type: ignore[return-value]  # the preset's position or one of its corners
