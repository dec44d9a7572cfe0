"""The pixels and bytes of a campaign pack: one placement's file from one source image.

- ``extend_canvas``: the window of a plan that reaches outside the source, the source's pixels
  bit-identical where they were and its edges carried outwards, blurred, around them: the
  starting picture of an outpaint, and the fill of a pack made without an inpainting engine
  (marked ``extend (pending outpaint)``).
- ``outpaint_frame``, ``outpaint_inputs``, ``outpaint_compose``: outpainting to a frame around
  the source. The engine works on a copy shrunk to ``work_size`` (a model's resolution, not a
  banner's 8:1 sprawl); its new area is enlarged back and the source pasted over it at full
  resolution, bit for bit (``Outpainted``).
- ``render``: crop (or the window of an outpainted frame, or extend) at the window's pixels;
  ``lanczos`` then resizes to the placement's exact pixels.
- ``mark``: the brand logo in the placement's corner, inside its safe area.
- ``encode``: PNG, JPEG or WebP under a byte limit (quality search), with the AI disclosure.
- ``contact_sheet``: every file of the pack on one labelled PNG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps, PngImagePlugin

from core.imaging.brand import Position, apply_watermark
from core.imaging.colour import to_rgb
from core.imaging.metadata import (
    COMPOSITE_SOURCE_TYPE,
    DIGITAL_SOURCE_TYPE,
    PARAMETERS_KEY,
    XMP_PNG_KEY,
    ai_disclosure_xmp,
)
from core.imaging.placement_geometry import Box, Plan, Safe

__all__ = [
    "Outpainted",
    "contact_sheet",
    "disclosure",
    "encode",
    "extend_canvas",
    "lanczos",
    "mark",
    "outpaint_compose",
    "outpaint_frame",
    "outpaint_inputs",
    "render",
    "work_size",
]

_QUALITIES: Final = (95, 90, 85, 80, 75, 70, 65, 60, 55, 50, 45, 40)  # best first


def extend_canvas(source: Image.Image, rect: Box) -> Image.Image:
    """``rect`` of ``source`` where it may reach outside: the source's own pixels unchanged,
    the rest its edge pixels carried outwards and blurred (a stand-in for outpainting)."""
    x, y, width, height = rect
    rgb = to_rgb(source)
    pad_left, pad_top = max(0, -x), max(0, -y)
    pad_right = max(0, x + width - rgb.width)
    pad_bottom = max(0, y + height - rgb.height)
    pixels = np.asarray(rgb)
    padded = np.pad(pixels, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), mode="edge")
    canvas = Image.fromarray(padded)
    radius = max(2, round(max(width, height) / 40))
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius))
    canvas.paste(rgb, (pad_left, pad_top))  # the source's pixels, bit-identical
    left, top = x + pad_left, y + pad_top
    return canvas.crop((left, top, left + width, top + height))


@dataclass(frozen=True)
class Outpainted:
    """A source outpainted to ``frame`` (source pixels; x, y ≤ 0): ``image`` is frame-sized and
    holds the source's pixels, unchanged, at (-x, -y)."""

    frame: Box
    image: Image.Image

    def window(self, rect: Box) -> Image.Image:
        """``rect`` (source pixels, inside the frame) of the outpainted picture."""
        x, y, width, height = rect
        fx, fy, fw, fh = self.frame
        left, top = x - fx, y - fy
        if left < 0 or top < 0 or left + width > fw or top + height > fh:
            raise ValueError(f"window {rect} is not inside the outpainted frame {self.frame}")
        return self.image.crop((left, top, left + width, top + height))


def outpaint_frame(source: tuple[int, int], rects: Sequence[Box]) -> Box:
    """The smallest frame holding the source and every rect (source pixels)."""
    x0 = min([0, *(r[0] for r in rects)])
    y0 = min([0, *(r[1] for r in rects)])
    x1 = max([source[0], *(r[0] + r[2] for r in rects)])
    y1 = max([source[1], *(r[1] + r[3] for r in rects)])
    return x0, y0, x1 - x0, y1 - y0


def work_size(size: tuple[int, int], max_pixels: int, multiple: int = 8) -> tuple[int, int]:
    """``size`` shrunk (never enlarged) to at most ``max_pixels``, each side a multiple of
    ``multiple`` (at least one), what an inpainting model works at."""
    width, height = size
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))

    def side(value: int) -> int:
        return max(multiple, int(value * scale) // multiple * multiple)

    return side(width), side(height)


def outpaint_inputs(
    source: Image.Image, frame: Box, work: tuple[int, int], *, overlap: int = 8
) -> tuple[Image.Image, Image.Image]:
    """The start picture (the source in ``frame``, its edges carried out and blurred) and the
    mask (white = generate, black = the source less ``overlap`` work px along its inner edges),
    both at ``work`` size. The overlap lets the model blend one latent cell into the source
    (see ``core.imaging.product.inpaint_inputs``); the source is pasted back over it anyway."""
    fx, fy, fw, fh = frame
    start = extend_canvas(source, frame).resize(work, Image.Resampling.LANCZOS)
    sx, sy = work[0] / fw, work[1] / fh
    left, top = (-fx) * sx, (-fy) * sy
    right, bottom = left + source.width * sx, top + source.height * sy
    # inset only the edges that border generated area (an edge on the frame stays kept)
    inset = (
        overlap if fx < 0 else 0,
        overlap if fy < 0 else 0,
        overlap if fx + fw > source.width else 0,
        overlap if fy + fh > source.height else 0,
    )
    mask = Image.new("L", work, 255)
    keep = (
        math.ceil(left) + inset[0],
        math.ceil(top) + inset[1],
        math.floor(right) - inset[2],
        math.floor(bottom) - inset[3],
    )
    if keep[2] > keep[0] and keep[3] > keep[1]:
        ImageDraw.Draw(mask).rectangle((keep[0], keep[1], keep[2] - 1, keep[3] - 1), fill=0)
    return start, mask


def outpaint_compose(
    generated: Image.Image, source: Image.Image, frame: Box, *, seam: float = 0.2
) -> Outpainted:
    """The engine's picture (at work size) enlarged to ``frame`` with the source pasted over it
    at full resolution, its pixels bit for bit.

    The engine's colours drift a little from the source's along the border (it works shrunk,
    through a VAE), which would show as a line; so, outside the source only, the new area fades
    (smoothstep) from the source's own edge pixels carried out (``extend_canvas``) to the
    engine's over a band of ``seam`` × the source's shorter side."""
    fx, fy, fw, fh = frame
    rgb = to_rgb(source)
    canvas = to_rgb(generated)
    if canvas.size != (fw, fh):
        canvas = canvas.resize((fw, fh), Image.Resampling.LANCZOS)
    band = max(2.0, seam * min(rgb.size))
    left, top = -fx, -fy
    xs = np.arange(fw, dtype=np.float32)
    ys = np.arange(fh, dtype=np.float32)
    dx = np.maximum(np.maximum(left - xs, xs - (left + rgb.width - 1)), 0)
    dy = np.maximum(np.maximum(top - ys, ys - (top + rgb.height - 1)), 0)
    distance = np.maximum(dx[None, :], dy[:, None])
    ramp = np.clip(1.0 - distance / band, 0.0, 1.0)
    weight = (ramp * ramp * (3.0 - 2.0 * ramp))[..., None]  # smoothstep: 1 at the source's edge
    edge = np.asarray(extend_canvas(rgb, frame), dtype=np.float32)
    made = np.asarray(canvas, dtype=np.float32)
    blended = np.clip(np.round(edge * weight + made * (1.0 - weight)), 0, 255).astype(np.uint8)
    out = Image.fromarray(blended, "RGB")
    out.paste(rgb, (left, top))  # the source's pixels, bit for bit
    return Outpainted(frame, out)


def render(source: Image.Image, plan: Plan, outpainted: Outpainted | None = None) -> Image.Image:
    """The plan's window at the source's pixels: a crop, the window of ``outpainted`` for an
    extend when given, else the blurred extension (``extend_canvas``)."""
    x, y, width, height = plan.rect
    if plan.method == "crop":
        return to_rgb(source).crop((x, y, x + width, y + height))
    if outpainted is not None:
        return outpainted.window(plan.rect)
    return extend_canvas(source, plan.rect)


def lanczos(window: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``window`` at exactly ``size`` pixels (Lanczos)."""
    if window.size == size:
        return window
    return window.resize(size, Image.Resampling.LANCZOS)


def safe_rect(size: tuple[int, int], safe: Safe) -> tuple[int, int, int, int]:
    """The safe area of a ``size`` picture as (left, top, right, bottom) pixels."""
    width, height = size
    top, right, bottom, left = safe
    return (
        math.ceil(left * width),
        math.ceil(top * height),
        width - math.ceil(right * width),
        height - math.ceil(bottom * height),
    )


def mark(
    image: Image.Image,
    logo: Image.Image,
    *,
    corner: Position,
    scale: float,
    opacity: float,
    safe: Safe,
) -> Image.Image:
    """``logo`` in ``corner`` of the safe area (scale × its width), never in a band; a logo
    too large for a small placement is scaled down to fit rather than refused."""
    left, top, right, bottom = safe_rect(image.size, safe)
    area = image.crop((left, top, right, bottom))
    while True:
        try:
            marked = apply_watermark(area, logo, position=corner, opacity=opacity, scale=scale)
            break
        except ValueError:
            if scale < 0.01:
                return image.copy()  # not even a sliver of logo fits: leave it off
            scale *= 0.8
    out = image.copy()
    out.paste(marked, (left, top))
    return out


def disclosure(composite: bool) -> str:
    """The AI-disclosure XMP; a composite (extended) file says so."""
    xmp = ai_disclosure_xmp()
    if composite:
        xmp = xmp.replace(DIGITAL_SOURCE_TYPE, COMPOSITE_SOURCE_TYPE).replace(
            "AI-generated image, made with onbrand",
            "Composite of an AI-generated image and generated or filled borders, made with onbrand",
        )
    return xmp


def encode(
    image: Image.Image,
    fmt: str,
    max_bytes: int,
    *,
    xmp: str,
    parameters: str | None = None,
) -> tuple[bytes, int | None]:
    """``image`` as ``fmt`` (png, jpeg, webp) in at most ``max_bytes``: the bytes and the
    quality used (``None`` for PNG). ``ValueError`` saying what to change when even the lowest
    quality is too large (the size is the placement's, so it is never shrunk)."""
    rgb = to_rgb(image)
    packet = xmp.encode("utf-8")
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        if parameters:
            info.add_text(PARAMETERS_KEY, parameters)
        info.add_itxt(XMP_PNG_KEY, xmp, zip=False)
        buf = io.BytesIO()
        rgb.save(buf, "PNG", pnginfo=info, compress_level=9)
        data = buf.getvalue()
        if len(data) > max_bytes:
            raise ValueError(
                f"as PNG it takes {len(data):,} bytes, over the {max_bytes:,} allowed; "
                "use jpeg or webp for this placement, or raise max_bytes"
            )
        return data, None

    def lossy(quality: int) -> bytes:
        buf = io.BytesIO()
        if fmt == "jpeg":
            rgb.save(buf, "JPEG", quality=quality, optimize=True, xmp=packet)
        elif fmt == "webp":
            rgb.save(buf, "WEBP", quality=quality, method=4, xmp=packet)
        else:
            raise ValueError(f"unknown format {fmt!r}; use png, jpeg or webp")
        return buf.getvalue()

    worst = lossy(_QUALITIES[-1])
    if len(worst) > max_bytes:
        raise ValueError(
            f"even at quality {_QUALITIES[-1]} it takes {len(worst):,} bytes, over the "
            f"{max_bytes:,} allowed; raise max_bytes for this placement"
        )
    best: tuple[bytes, int] = (worst, _QUALITIES[-1])
    lo, hi = 0, len(_QUALITIES) - 2  # binary search: the best quality that fits
    while lo <= hi:
        mid = (lo + hi) // 2
        data = lossy(_QUALITIES[mid])
        if len(data) <= max_bytes:
            best, hi = (data, _QUALITIES[mid]), mid - 1
        else:
            lo = mid + 1
    return best


_CELL: Final = 240
_LABEL: Final = 30
_COLUMNS: Final = 5


def contact_sheet(items: Sequence[tuple[str, Image.Image]], title: str = "") -> Image.Image:
    """Every file of a pack, fitted in labelled cells of a grid, on one white PNG."""
    rows = max(1, math.ceil(len(items) / _COLUMNS))
    columns = min(_COLUMNS, max(1, len(items)))
    head = 28 if title else 0
    sheet = Image.new("RGB", (columns * _CELL, head + rows * (_CELL + _LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((8, 8), title, fill=(20, 20, 20))
    for n, (label, image) in enumerate(items):
        column, row = n % _COLUMNS, n // _COLUMNS
        left, top = column * _CELL, head + row * (_CELL + _LABEL)
        thumb = ImageOps.contain(to_rgb(image), (_CELL - 16, _CELL - 16))
        x = left + (_CELL - thumb.width) // 2
        y = top + 8 + (_CELL - 16 - thumb.height) // 2
        draw.rectangle((x - 1, y - 1, x + thumb.width, y + thumb.height), outline=(160, 160, 160))
        sheet.paste(thumb, (x, y))
        for i, line in enumerate(label.split("\n")[:2]):
            draw.text((left + 8, top + _CELL - 4 + 12 * i), line, fill=(20, 20, 20))
    return sheet
