"""A visible "AI" badge: a small dark rounded label with "AI" in white, placed like a logo."""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from core.imaging.brand import Position, apply_watermark

_ASPECT = 1.7  # badge width ÷ height
_DRAWN_HEIGHT = 96  # drawn once at this height, then resized to fit


@lru_cache(maxsize=1)
def _badge() -> Image.Image:
    height = _DRAWN_HEIGHT
    badge = Image.new("RGBA", (round(height * _ASPECT), height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(badge)
    draw.rounded_rectangle(
        (0, 0, badge.width - 1, height - 1), radius=height // 4, fill=(20, 20, 20, 200)
    )
    font = ImageFont.load_default(size=round(height * 0.62))
    draw.text(
        (badge.width / 2, height / 2), "AI", font=font, fill=(255, 255, 255, 255), anchor="mm"
    )
    return badge


def apply_ai_badge(image: Image.Image, *, position: Position, size: float) -> Image.Image:
    """``image`` with the badge at ``position``, ``size`` × its shorter side tall (at least
    8 px)."""
    height = max(8.0, size * min(image.size))
    scale = min(1.0, height * _ASPECT / image.width)
    return apply_watermark(image, _badge(), position=position, opacity=1.0, scale=scale)
