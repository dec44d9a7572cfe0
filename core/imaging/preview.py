"""Lossy previews for chat uploads: under a byte limit, with the AI disclosure kept."""

from __future__ import annotations

import io
import math
from typing import Final, Literal, get_args

from PIL import Image, ImageOps

from core.imaging.colour import to_rgb
from core.imaging.metadata import ai_disclosure_xmp

PreviewFormat = Literal["JPEG", "WEBP"]
_FORMATS: Final = frozenset(get_args(PreviewFormat))


_QUALITIES: Final = (90, 82, 74, 66, 58, 50)  # best first
_MAX_SHRINK: Final = 0.9  # each round shrinks by at least 10 %
_MIN_SHRINK: Final = 0.5  # and by at most half
_MIN_SIDE: Final = 16


def encode_preview(
    image: Image.Image,
    *,
    max_bytes: int,
    max_side: int | None = None,
    format: PreviewFormat = "JPEG",
) -> bytes:
    """A lossy preview for chat uploads, at most ``max_bytes`` long, with the AI disclosure.

    The image is first fitted into ``max_side`` (aspect kept). Then the best quality that fits is
    used; when even the lowest quality (50) is too big, the image is shrunk (by the square root
    of the size ratio, 10-50 % per round) and the search starts again. Transparency lands on
    white. Deterministic: the same image and limits give the same bytes. ``ValueError`` when
    not even a 16 px preview fits.
    """
    if format not in _FORMATS:
        raise ValueError(f"preview format must be one of {sorted(_FORMATS)}, got {format!r}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be positive, got {max_side}")
    rgb = to_rgb(image)
    if max_side is not None and max(rgb.size) > max_side:
        rgb = ImageOps.contain(rgb, (max_side, max_side), Image.Resampling.LANCZOS)
    xmp = ai_disclosure_xmp().encode("utf-8")

    def encode(im: Image.Image, quality: int) -> bytes:
        return _encode_lossy(im, format, quality, xmp)

    current = rgb
    while True:
        best = encode(current, _QUALITIES[0])
        if len(best) <= max_bytes:
            return best
        worst = encode(current, _QUALITIES[-1])
        if len(worst) <= max_bytes:
            # binary search for the best quality that fits (size falls with quality)
            best, lo, hi = worst, 1, len(_QUALITIES) - 2
            while lo <= hi:
                mid = (lo + hi) // 2
                data = encode(current, _QUALITIES[mid])
                if len(data) <= max_bytes:
                    best, hi = data, mid - 1
                else:
                    lo = mid + 1
            return best
        longest = max(current.size)
        if longest <= _MIN_SIDE:
            raise ValueError(
                f"cannot fit a preview into {max_bytes} bytes "
                f"(a {current.width}x{current.height} preview takes {len(worst)} bytes)"
            )
        ratio = math.sqrt(max_bytes / len(worst))
        factor = min(_MAX_SHRINK, max(_MIN_SHRINK, ratio))
        target = max(_MIN_SIDE, math.floor(longest * factor))
        current = ImageOps.contain(rgb, (target, target), Image.Resampling.LANCZOS)


def _encode_lossy(image: Image.Image, fmt: PreviewFormat, quality: int, xmp: bytes) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.save(buf, "JPEG", quality=quality, optimize=True, xmp=xmp)
    else:
        image.save(buf, "WEBP", quality=quality, method=4, xmp=xmp)
    return buf.getvalue()
