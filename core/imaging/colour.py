"""Colour: RGB with a white matte, hex colours, CIELAB, and how well an image keeps a palette."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Final

from PIL import Image, ImageOps

# Where a transparent pixel lands when we have to drop alpha (JPEG, grid cells).
MATTE: Final = (255, 255, 255)
_HEX = re.compile(r"^#?(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto a white matte."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        matte = Image.new("RGBA", rgba.size, (*MATTE, 255))
        return Image.alpha_composite(matte, rgba).convert("RGB")
    return image.convert("RGB")


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """``#RRGGBB``, ``RRGGBB`` or ``#RGB`` → ``(r, g, b)``; ``ValueError`` otherwise."""
    if not _HEX.match(colour):
        raise ValueError(f"not a hex colour (expected #RRGGBB): {colour!r}")
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def srgb_to_lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """8-bit sRGB → CIELAB (D65 white)."""

    def linear(c: int) -> float:
        v = c / 255.0
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047
    y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b
    z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


_PALETTE_SAMPLE: Final = 32
"""Side of the sample the dominant colours come from. Median cut costs ~10 ms at 128 px, ~2.6 ms
at 64 and ~0.7 ms at 32 on one core (once per stored image, 11 % of finishing a 128 px image at
64). Against a 64 px sample, scores moved by at most 0.0047 at 48 and 0.0072 at 32 on 12
photo-like pictures of 512-1024 px (``bench/pipeline.py``'s); 64 itself had moved them by at most
0.0024 against the full picture. Reports show scores to two decimals."""
_DOMINANT_COLOURS: Final = 8


def palette_score(image: Image.Image, palette: Sequence[str]) -> float:
    """How on-palette an image is, from 0 (far off) to 1 (made of palette colours).

    The image is downscaled, quantised to its 8 dominant colours, and each colour scores
    ``max(0, 1 - ΔE/100)`` against the nearest palette colour (ΔE: CIE76 distance in CIELAB);
    the score is the average weighted by each colour's share of the pixels.
    """
    if not palette:
        raise ValueError("palette is empty; give at least one #RRGGBB colour")
    targets = [srgb_to_lab(hex_to_rgb(c)) for c in palette]
    rgb = to_rgb(image)
    if max(rgb.size) > _PALETTE_SAMPLE:
        # Nearest neighbour keeps real colours (no blends at edges) and is fast.
        small = ImageOps.contain(rgb, (_PALETTE_SAMPLE, _PALETTE_SAMPLE), Image.Resampling.NEAREST)
    else:
        small = rgb
    quantised = small.quantize(colors=_DOMINANT_COLOURS, method=Image.Quantize.MEDIANCUT)
    colours = quantised.getcolors()
    lut = quantised.getpalette() or []
    if not colours:
        raise ValueError("image has no pixels")
    total = sum(count for count, _ in colours)
    score = 0.0
    for count, index in colours:
        assert isinstance(index, int)
        rgb_i = (lut[3 * index], lut[3 * index + 1], lut[3 * index + 2])
        lab = srgb_to_lab(rgb_i)
        delta = min(math.dist(lab, t) for t in targets)
        score += count / total * max(0.0, 1.0 - delta / 100.0)
    return min(1.0, max(0.0, score))
