"""Resizing without a model: integer Lanczos upscaling, the one every engine uses.

An engine's plain upscale (no upscaler model) is ``resample_upscale``; an engine that runs a model
asks ``upscaled_size`` for the size to reach, so every engine accepts the same factors.
"""

from __future__ import annotations

from typing import Final

from PIL import Image

MAX_RESAMPLE_FACTOR: Final = 8


def upscaled_size(image: Image.Image, factor: int) -> tuple[int, int]:
    """``image``'s size times ``factor``; ``ValueError`` unless ``factor`` is a whole number
    from 1 to ``MAX_RESAMPLE_FACTOR``."""
    if isinstance(factor, bool) or not isinstance(factor, int):
        raise ValueError(f"upscale factor must be an integer, got {factor!r}")
    if not 1 <= factor <= MAX_RESAMPLE_FACTOR:
        raise ValueError(
            f"upscale factor must be between 1 and {MAX_RESAMPLE_FACTOR}, got {factor}"
        )
    return image.width * factor, image.height * factor


def resample_upscale(image: Image.Image, factor: int) -> Image.Image:
    """Upscale by an integer ``factor`` with Lanczos resampling (no model)."""
    size = upscaled_size(image, factor)
    if factor == 1:
        return image.copy()
    return image.resize(size, Image.Resampling.LANCZOS)
