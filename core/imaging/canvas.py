"""Canvas geometry for the edits that take images in: an image prompt covering the canvas, and
the layers of what an edit keeps (zoom out, pan, vary region) as pure functions on pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "PAN_DIRECTIONS",
    "REGIONS",
    "ZOOM_FACTORS",
    "Kept",
    "cover",
    "pan",
    "region_box",
    "vary_region",
    "zoom_out",
]


def cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """``image`` scaled (Lanczos) to cover ``width``×``height`` and centre-cropped to it: an
    image prompt of any shape becomes the requested canvas without distortion."""
    factor = max(width / image.width, height / image.height)
    size = (max(width, round(image.width * factor)), max(height, round(image.height * factor)))
    scaled = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
    left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
    return scaled.crop((left, top, left + width, top + height))


# --- edits of a result: what is kept, as an RGBA layer the size of the new canvas ---------------

Box = tuple[int, int, int, int]  # x, y, width, height
PAN_DIRECTIONS = ("left", "right", "up", "down")
ZOOM_FACTORS = (1.5, 2.0)
REGIONS: dict[str, tuple[float, float, float, float]] = {
    # name → (left, top, right, bottom) as shares of the image: the 3×3 cells and the halves
    **{
        f"{row}-{col}" if row != col else row: (c / 3, r / 3, (c + 1) / 3, (r + 1) / 3)
        for r, row in enumerate(("top", "middle", "bottom"))
        for c, col in enumerate(("left", "center", "right"))
    },
    "top-half": (0.0, 0.0, 1.0, 0.5),
    "bottom-half": (0.0, 0.5, 1.0, 1.0),
    "left-half": (0.0, 0.0, 0.5, 1.0),
    "right-half": (0.5, 0.0, 1.0, 1.0),
}
REGIONS["center"] = REGIONS.pop("middle-center")


@dataclass(frozen=True)
class Kept:
    """The new canvas as an RGBA layer: the original's pixels where alpha is 255 (kept bit for
    bit), blended where it is between, generated where it is 0; ``box`` is what is kept."""

    layer: Image.Image
    box: Box


def _on_canvas(image: Image.Image, size: tuple[int, int], at: tuple[int, int]) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste(image.convert("RGB"), at)
    alpha = Image.new("L", size, 0)
    alpha.paste(255, (at[0], at[1], at[0] + image.width, at[1] + image.height))
    layer.putalpha(alpha)
    return layer


def zoom_out(image: Image.Image, factor: float) -> Kept:
    """The same canvas size, the original downscaled once (Lanczos) by ``factor`` in the centre."""
    if factor not in ZOOM_FACTORS:
        raise ValueError(f"zoom-out factor must be one of {ZOOM_FACTORS}, got {factor}")
    small = image.convert("RGB").resize(
        (max(1, round(image.width / factor)), max(1, round(image.height / factor))),
        Image.Resampling.LANCZOS,
    )
    at = ((image.width - small.width) // 2, (image.height - small.height) // 2)
    return Kept(_on_canvas(small, image.size, at), (*at, small.width, small.height))


def pan(image: Image.Image, direction: str) -> Kept:
    """The canvas extended by half (a multiple of 8) towards ``direction``; the original's
    pixels stay as they were, on the other side."""
    if direction not in PAN_DIRECTIONS:
        raise ValueError(f"pan direction must be one of {PAN_DIRECTIONS}, got {direction!r}")
    horizontal = direction in ("left", "right")
    grow = max(8, (image.width if horizontal else image.height) // 2 // 8 * 8)
    size = (image.width + grow, image.height) if horizontal else (image.width, image.height + grow)
    at = {"left": (grow, 0), "right": (0, 0), "up": (0, grow), "down": (0, 0)}[direction]
    return Kept(_on_canvas(image, size, at), (*at, image.width, image.height))


def region_box(size: tuple[int, int], name: str) -> Box:
    left, top, right, bottom = REGIONS[name]
    width, height = size
    x0, y0 = round(left * width), round(top * height)
    return (x0, y0, round(right * width) - x0, round(bottom * height) - y0)


def vary_region(image: Image.Image, name: str, *, feather: int = 4) -> Kept:
    """Everything outside the region kept; inside it a seam ``feather`` px wide fades from the
    original to what is generated (the seam lies inside the region only)."""
    if name not in REGIONS:
        raise ValueError(f"region must be one of {sorted(REGIONS)}, got {name!r}")
    x, y, w, h = region_box(image.size, name)
    alpha = np.full((image.height, image.width), 255, dtype=np.uint8)
    inside = np.zeros((h, w), dtype=np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    # distance from the region's edges that border kept pixels (not the image's own edges)
    gaps = [
        xx if x > 0 else None,
        yy if y > 0 else None,
        (w - 1 - xx) if x + w < image.width else None,
        (h - 1 - yy) if y + h < image.height else None,
    ]
    nearest = np.full((h, w), np.inf)
    for gap in gaps:
        if gap is not None:
            nearest = np.minimum(nearest, gap)
    inside = np.clip(1.0 - (nearest + 1) / (feather + 1), 0.0, 1.0) if feather > 0 else inside
    alpha[y : y + h, x : x + w] = np.round(inside * 254).astype(np.uint8)
    layer = image.convert("RGB").convert("RGBA")
    layer.putalpha(Image.fromarray(alpha, "L"))
    return Kept(layer, (x, y, w, h))
