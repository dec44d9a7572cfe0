"""Brand marks on pixels: the preset's logo watermark, and decoding a logo's checked bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Final, Literal, get_args

from PIL import Image

Position = Literal["top-left", "top-right", "bottom-left", "bottom-right", "center"]
_POSITIONS: Final = frozenset(get_args(Position))


def apply_watermark(
    image: Image.Image,
    logo: Image.Image,
    *,
    position: Position,
    opacity: float,
    scale: float,
    margin: float = 0.03,
) -> Image.Image:
    """Paste ``logo`` onto a copy of ``image``.

    The logo is scaled to ``scale`` × the image width (aspect kept), its alpha is multiplied by
    ``opacity``, and it sits at ``position`` with ``margin`` × the image's shorter side between
    it and the edges (``center`` ignores the margin). Returns RGBA when ``image`` has alpha,
    otherwise RGB.
    """
    if position not in _POSITIONS:
        raise ValueError(
            f"watermark position must be one of {sorted(_POSITIONS)}, got {position!r}"
        )
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"watermark opacity must be between 0 and 1, got {opacity}")
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"watermark scale must be above 0 and at most 1, got {scale}")
    if not 0.0 <= margin < 0.5:
        raise ValueError(f"watermark margin must be at least 0 and below 0.5, got {margin}")
    if logo.width < 1 or logo.height < 1:
        raise ValueError(f"watermark logo is empty ({logo.width}x{logo.height})")

    width, height = image.size
    pad = round(margin * min(width, height))
    logo_w = max(1, round(scale * width))
    logo_h = max(1, round(logo.height * logo_w / logo.width))
    if position == "center":
        room_w, room_h = width, height
    else:
        room_w, room_h = width - 2 * pad, height - 2 * pad
    if logo_w > room_w or logo_h > room_h:
        raise ValueError(
            f"watermark of {logo_w}x{logo_h} px (scale {scale}) does not fit a "
            f"{width}x{height} image with margin {margin}; lower the scale or the margin"
        )

    mark = logo.convert("RGBA").resize((logo_w, logo_h), Image.Resampling.LANCZOS)
    if opacity < 1.0:
        alpha = mark.getchannel("A").point([round(a * opacity) for a in range(256)])
        mark.putalpha(alpha)

    left, top = pad, pad
    right, bottom = width - pad - logo_w, height - pad - logo_h
    x, y = {
        "top-left": (left, top),
        "top-right": (right, top),
        "bottom-left": (left, bottom),
        "bottom-right": (right, bottom),
        "center": ((width - logo_w) // 2, (height - logo_h) // 2),
    }[position]

    has_alpha = "A" in image.getbands() or "transparency" in image.info
    base = image.convert("RGBA")
    base.alpha_composite(mark, dest=(x, y))
    return base if has_alpha else base.convert("RGB")


def decode_logo(data: bytes, *, formats: Sequence[str], max_side: int) -> Image.Image:
    """A logo file's bytes as RGBA pixels; ``ValueError`` for more than ``max_side`` a side.

    The size is read from the header before any pixel is decoded, so a small file that claims
    a huge image costs nothing. Only the Pillow decoders in ``formats`` are tried.
    """
    with Image.open(io.BytesIO(data), formats=tuple(formats)) as logo:
        if max(logo.size) > max_side:
            raise ValueError(
                f"logo of {logo.width}x{logo.height} px is over {max_side} px a side; scale it down"
            )
        return logo.convert("RGBA")
