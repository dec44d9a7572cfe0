"""Resizing without a model: integer Lanczos upscaling."""

from __future__ import annotations

from typing import Final

from PIL import Image

MAX_RESAMPLE_FACTOR: Final = 8


def resample_upscale(image: Image.Image, factor: int) -> Image.Image:
    """Upscale by an integer ``factor`` with Lanczos resampling (no model)."""
    if isinstance(factor, bool) or not isinstance(factor, int):
        raise ValueError(f"upscale factor must be an integer, got {factor!r}")
    if not 1 <= factor <= MAX_RESAMPLE_FACTOR:
        raise ValueError(
            f"upscale factor must be between 1 and {MAX_RESAMPLE_FACTOR}, got {factor}"
        )
    if factor == 1:
        return image.copy()
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)
