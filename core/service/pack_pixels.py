"""The pixels of a campaign pack: from one image to every placement's file (``build_pack``).

Per placement: crop or extend around the protected box (``core.imaging.placement_geometry``),
resize to the exact size, the logo per the placement's rule, the source's invisible watermark,
encode under the byte limit with the AI disclosure, sign; then a zip with ``manifest.csv`` and
``contact-sheet.png``, built in memory (nothing is written unless it all worked).

**Extend.** With an inpainting engine (``inpainter`` and ``model``) the source is outpainted
first, once per distinct target aspect (one frame holds every window of that aspect), on a copy
shrunk to ``work_pixels`` and to the source's own pixel count (a banner's frame is many times the
source; generating it at full size cost 100× the blurred pack on CPU and adds no detail the
source has); the source is pasted back at full resolution, bit for bit (asserted):
``extend (outpaint)``. Without one: its edges carried out and blurred, ``extend (pending
outpaint)``. Either way the file's disclosure and signature say it is a composite.

**Resize.** Lanczos; an enlargement over ``ENLARGE_THRESHOLD`` goes through the engine when there
is one: the preset's ``upscaler`` (``upscaler X``), else, with ``refine`` > 0, a low-strength
image-to-image pass over the Lanczos enlargement (``lanczos+refine 0.2``).

The engine calls are async and run first; cropping, marking, encoding and zipping run in a
thread. docs/packs.md tells the whole story.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import math
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from core.brand.placements import Placement
from core.errors import CannotMake
from core.imaging.pack import (
    Outpainted,
    contact_sheet,
    disclosure,
    encode,
    lanczos,
    mark,
    outpaint_compose,
    outpaint_frame,
    outpaint_inputs,
    render,
    work_size,
)
from core.imaging.placement_geometry import Box, Plan, clamp_box, plan, saliency_box
from core.ports import (
    CancelledFn,
    Inpainter,
    InpaintJob,
    JobResult,
    ProgressFn,
    UpscaleResult,
    VaryJob,
)

__all__ = [
    "ENLARGE_THRESHOLD",
    "OUTPAINT",
    "PENDING_OUTPAINT",
    "Pack",
    "PackCancelled",
    "PackFile",
    "PackPrompt",
    "Seal",
    "build_pack",
]

PENDING_OUTPAINT = "extend (pending outpaint)"
OUTPAINT = "extend (outpaint)"
ENLARGE_THRESHOLD = 2.0  # linear: above it, an engine (upscaler or refine) enlarges the window
WORK_PIXELS = 768 * 768  # what the engine outpaints at, at most (about a model's resolution)
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)  # fixed, so the same pack gives the same zip


@dataclass(frozen=True)
class PackFile:
    placement: str
    path: str  # inside the zip
    size: tuple[int, int]
    bytes: int
    method: str
    quality: int | None
    sha256: str


@dataclass(frozen=True)
class Pack:
    source: str  # GEN:INDEX
    campaign: str
    files: tuple[PackFile, ...]
    zip_bytes: bytes
    contact_sheet: bytes  # PNG
    protected: Box
    protected_from: str  # "product" or "saliency"
    note: str = ""  # on every manifest row, e.g. that the pack starts from the logo'd original


@dataclass(frozen=True)
class Seal:
    """Provenance for pack files: the source's invisible watermark (a pixel step, before
    encoding) and a C2PA signature with the source original as ingredient (last)."""

    watermark: Callable[[Image.Image], Image.Image]
    # (file, mime, placement name, composite: extended beyond the source) → the signed file
    sign: Callable[[bytes, str, str, bool], bytes]


@dataclass(frozen=True)
class PackPrompt:
    """What the engine generates new pixels from: the source image's prompt and settings."""

    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 20
    guidance: float = 5.0
    seed: int = 0


class PackCancelled(Exception):
    """The engine stopped for a cancel (``cancelled`` said so): no pack was made."""


@runtime_checkable
class _Resizer(Protocol):
    """The parts of an ``Engine`` that enlarge: an upscaler model, image-to-image."""

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


def _aspect(size: tuple[int, int]) -> tuple[int, int]:
    g = math.gcd(*size)
    return size[0] // g, size[1] // g


async def _outpaint(
    source: Image.Image,
    plans: Sequence[tuple[Placement, Plan]],
    inpainter: Inpainter,
    model: str,
    prompt: PackPrompt,
    work_pixels: int,
    job_id: str,
    progress: ProgressFn | None,
    cancelled: CancelledFn | None,
) -> dict[tuple[int, int], Outpainted]:
    """One outpaint per distinct aspect among the extended plans (the Inpainter port takes one
    picture per call, and frames of different aspects can't share a batch)."""
    groups: dict[tuple[int, int], list[Box]] = {}
    for placement, decided in plans:
        if decided.method == "extend":
            groups.setdefault(_aspect(placement.size), []).append(decided.rect)
    out: dict[tuple[int, int], Outpainted] = {}
    for n, (aspect, rects) in enumerate(groups.items()):
        step_of = _overall(progress, n, len(groups))
        frame = outpaint_frame(source.size, rects)
        work = work_size(frame[2:], min(work_pixels, source.width * source.height))
        start, mask = await asyncio.to_thread(outpaint_inputs, source, frame, work)
        job = InpaintJob(
            job_id,
            start,
            mask,
            prompt.prompt,
            prompt.negative_prompt,
            prompt.steps,
            prompt.guidance,
            (prompt.seed,),
        )
        result = await inpainter.inpaint(model, job, progress=step_of, cancelled=cancelled)
        if result.cancelled or not result.images:
            raise PackCancelled(job_id)
        done = await asyncio.to_thread(outpaint_compose, result.images[0], source, frame)
        _assert_kept(done, source)
        out[aspect] = done
    return out


def _overall(progress: ProgressFn | None, call: int, calls: int) -> ProgressFn | None:
    """Progress of call ``call`` of ``calls`` as progress of them all (each counts the same)."""
    if progress is None:
        return None
    report = progress

    def step_of(job_id: str, step: int, total: int) -> None:
        report(job_id, call * total + step, calls * total)

    return step_of


def _assert_kept(done: Outpainted, source: Image.Image) -> None:
    """The source's pixels are in the outpainted frame unchanged (they are pasted, not made)."""
    x, y = -done.frame[0], -done.frame[1]
    kept = done.image.crop((x, y, x + source.width, y + source.height))
    if not np.array_equal(np.asarray(kept), np.asarray(source.convert("RGB"))):
        raise AssertionError("outpainting changed the source's pixels")


async def _enlarge(
    window: Image.Image,
    size: tuple[int, int],
    engine: _Resizer,
    model: str,
    upscaler: str | None,
    refine: float,
    prompt: PackPrompt,
    job_id: str,
    cancelled: CancelledFn | None,
) -> tuple[Image.Image, str] | None:
    """The window enlarged by the engine to exactly ``size``, and how; ``None``: Lanczos does."""
    scale = max(size[0] / window.width, size[1] / window.height)
    if scale <= ENLARGE_THRESHOLD:
        return None
    if upscaler:
        factor = min(8, math.ceil(scale))
        done = await engine.upscale(model, window, factor, upscaler)
        return await asyncio.to_thread(lanczos, done.image, size), f"upscaler {upscaler}"
    if refine <= 0:
        return None
    big = await asyncio.to_thread(lanczos, window, size)
    steps = max(prompt.steps, math.ceil(1 / refine))  # at least one denoising step
    job = VaryJob(
        job_id,
        big,
        prompt.prompt,
        prompt.negative_prompt,
        steps,
        prompt.guidance,
        refine,
        (prompt.seed,),
    )
    result = await engine.vary(model, job, cancelled=cancelled)
    if result.cancelled or not result.images:
        raise PackCancelled(job_id)
    return await asyncio.to_thread(lanczos, result.images[0], size), f"lanczos+refine {refine:g}"


async def build_pack(
    source: Image.Image,
    *,
    source_ref: str,
    campaign: str | None,
    placements: Sequence[Placement],
    product_box: Box | None = None,
    logo: Image.Image | None = None,
    logo_opacity: float = 0.8,
    parameters: str | None = None,
    seal: Seal | None = None,
    note: str = "",
    inpainter: Inpainter | None = None,
    model: str | None = None,
    prompt: PackPrompt | None = None,
    upscaler: str | None = None,
    refine: float = 0.0,
    work_pixels: int = WORK_PIXELS,
    job_id: str = "pack",
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> Pack:
    """The pack's files, manifest and contact sheet (module docstring). ``UserError`` names the
    placement whose file can't be made under its byte limit; ``PackCancelled`` when the engine
    stopped for ``cancelled``. ``job_id`` is what the engine's ``progress`` and ``cancelled``
    are called with."""
    source = source.convert("RGB")
    box = clamp_box(product_box, source.size) if product_box else saliency_box(source)
    plans = [(p, plan(source.size, box, p.size, p.safe.as_tuple())) for p in placements]
    prompt = prompt or PackPrompt()
    engine = inpainter if model else None
    outpainted: dict[tuple[int, int], Outpainted] = {}
    if engine is not None and model is not None:
        outpainted = await _outpaint(
            source, plans, engine, model, prompt, work_pixels, job_id, progress, cancelled
        )
    windows = await asyncio.to_thread(
        lambda: [render(source, d, outpainted.get(_aspect(p.size))) for p, d in plans]
    )
    enlarged: list[tuple[Image.Image, str] | None] = [None] * len(plans)
    resizer: object = engine
    if isinstance(resizer, _Resizer) and model is not None and (upscaler or refine > 0):
        for n, ((placement, _), window) in enumerate(zip(plans, windows, strict=True)):
            enlarged[n] = await _enlarge(
                window, placement.size, resizer, model, upscaler, refine, prompt, job_id, cancelled
            )
    extends = [
        "crop"
        if d.method == "crop"
        else OUTPAINT
        if _aspect(p.size) in outpainted
        else PENDING_OUTPAINT
        for p, d in plans
    ]
    return await asyncio.to_thread(
        _assemble,
        [p for p, _ in plans],
        windows,
        enlarged,
        extends,
        _Finish(source_ref, campaign, logo, logo_opacity, parameters, seal, note),
        box,
        "product" if product_box else "saliency",
    )


@dataclass(frozen=True)
class _Finish:
    source_ref: str
    campaign: str | None
    logo: Image.Image | None
    logo_opacity: float
    parameters: str | None
    seal: Seal | None
    note: str


def _assemble(
    placements: Sequence[Placement],
    windows: Sequence[Image.Image],
    enlarged: Sequence[tuple[Image.Image, str] | None],
    extends: Sequence[str],
    finish: _Finish,
    box: Box,
    protected_from: str,
) -> Pack:
    """Resize, mark, seal, encode and zip every placement (sync: runs in a thread)."""
    folder = _folder(finish.campaign)
    files: list[PackFile] = []
    thumbs: list[tuple[str, Image.Image]] = []
    blobs: list[tuple[str, bytes]] = []
    for placement, window, grown, extend in zip(
        placements, windows, enlarged, extends, strict=True
    ):
        safe = placement.safe.as_tuple()
        image, how = grown if grown is not None else (lanczos(window, placement.size), "lanczos")
        if finish.logo is not None and not placement.no_logo:
            rule = placement.watermark
            image = mark(
                image,
                finish.logo,
                corner=rule.corner,
                scale=rule.scale,
                opacity=finish.logo_opacity,
                safe=safe,
            )
        if finish.seal is not None:
            image = finish.seal.watermark(image)
        composite = extend != "crop"
        data, quality = _encoded(image, placement, composite, finish.parameters, finish.seal)
        path = f"{folder}/{placement.name}.{placement.extension}"
        digest = hashlib.sha256(data).hexdigest()
        method = f"{extend}, {how}"
        files.append(
            PackFile(placement.name, path, placement.size, len(data), method, quality, digest)
        )
        blobs.append((path, data))
        thumbs.append(
            (f"{placement.name}\n{placement.size[0]}x{placement.size[1]} {extend}", image)
        )
    sheet = contact_sheet(thumbs, title=f"{folder} from {finish.source_ref}")
    sheet_buf = io.BytesIO()
    sheet.save(sheet_buf, "PNG", compress_level=6)
    manifest = io.StringIO()
    writer = csv.writer(manifest, lineterminator="\n")
    writer.writerow(["placement", "size", "bytes", "method", "source", "sha256", "note"])
    for f in files:
        size = f"{f.size[0]}x{f.size[1]}"
        writer.writerow(
            [f.placement, size, f.bytes, f.method, finish.source_ref, f.sha256, finish.note]
        )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path, data in blobs:
            archive.writestr(zipfile.ZipInfo(path, _ZIP_TIME), data, zipfile.ZIP_STORED)
        for path, data, packing in (
            (f"{folder}/manifest.csv", manifest.getvalue().encode("utf-8"), zipfile.ZIP_DEFLATED),
            (f"{folder}/contact-sheet.png", sheet_buf.getvalue(), zipfile.ZIP_STORED),
        ):
            archive.writestr(zipfile.ZipInfo(path, _ZIP_TIME), data, packing)
    return Pack(
        finish.source_ref,
        folder,
        tuple(files),
        out.getvalue(),
        sheet_buf.getvalue(),
        box,
        protected_from,
        finish.note,
    )


_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_SIGNATURE_SLACK = 1024  # bytes kept free for the manifest's small size changes between tries


def _encoded(
    image: Image.Image,
    placement: Placement,
    composite: bool,
    parameters: str | None,
    seal: Seal | None,
) -> tuple[bytes, int | None]:
    """The placement's file under its byte limit, signed when ``seal`` asks; the signature's
    bytes count against the limit (the quality search runs again with them reserved)."""
    limit = placement.max_bytes
    for _ in range(3):
        try:
            data, quality = encode(
                image,
                placement.format,
                limit,
                xmp=disclosure(composite=composite),
                parameters=parameters,
            )
        except ValueError as exc:
            raise CannotMake(f"Placement {placement.name}: {exc}.") from None
        if seal is None:
            return data, quality
        signed = seal.sign(data, _MIME[placement.format.lower()], placement.name, composite)
        if len(signed) <= placement.max_bytes:
            return signed, quality
        limit = placement.max_bytes - (len(signed) - len(data)) - _SIGNATURE_SLACK
        if limit <= 0:
            break
    raise CannotMake(
        f"Placement {placement.name}: its signed file can't be made under "
        f"{placement.max_bytes:,} bytes; raise the placement's max_bytes."
    )


def _folder(campaign: str | None) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", campaign or "").strip("-.") or "onbrand"
    return name[:60]
