"""Canvas geometry shared by the edits that take images in."""

from __future__ import annotations

from PIL import Image

__all__ = ["cover"]


def cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """``image`` scaled (Lanczos) to cover ``width``×``height`` and centre-cropped to it: an
    image prompt of any shape becomes the requested canvas without distortion."""
    factor = max(width / image.width, height / image.height)
    size = (max(width, round(image.width * factor)), max(height, round(image.height * factor)))
    scaled = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
    left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
    return scaled.crop((left, top, left + width, top + height))
