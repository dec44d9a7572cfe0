"""The 2×2 grid a chat shows: cells fitted, gaps neutral, U1–U4 badges on the corners."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from PIL import Image, ImageDraw, ImageFont, ImageOps

from core.imaging.colour import to_rgb

# Grid colours: a dark neutral gutter, a slightly lighter neutral for empty cells.
GUTTER_COLOUR: Final = (24, 24, 27)
EMPTY_COLOUR: Final = (64, 64, 70)
BADGE_FILL: Final = (17, 17, 20, 200)
BADGE_TEXT: Final = (250, 250, 250, 255)
BADGE_EDGE: Final = (250, 250, 250, 110)  # keeps the badge visible on dark images


def make_grid(images: Sequence[Image.Image], *, labels: bool = True) -> Image.Image:
    """Lay 1–4 images out as a 2×2 grid (reading order), with a thin gutter between cells.

    Cells take the first image's size; an image of another size is fitted into its cell
    (aspect kept, centred). Cells without an image are a neutral grey. With ``labels`` each
    image gets a small rounded badge with its number (1–4) in its top-left corner, sized
    relative to the cell so it reads on a 64 px thumbnail and on a 1024 px cell alike.
    """
    if not 1 <= len(images) <= 4:
        raise ValueError(f"a grid holds 1 to 4 images, got {len(images)}")
    cell_w, cell_h = images[0].size
    if cell_w < 1 or cell_h < 1:
        raise ValueError(f"empty image of size {cell_w}x{cell_h}")
    gutter = max(2, round(min(cell_w, cell_h) / 128))
    grid = Image.new("RGB", (2 * cell_w + gutter, 2 * cell_h + gutter), GUTTER_COLOUR)
    for slot in range(4):
        x = (slot % 2) * (cell_w + gutter)
        y = (slot // 2) * (cell_h + gutter)
        if slot >= len(images):
            grid.paste(EMPTY_COLOUR, (x, y, x + cell_w, y + cell_h))
            continue
        cell = _fit_cell(to_rgb(images[slot]), (cell_w, cell_h))
        grid.paste(cell, (x, y))
    if labels:
        overlay = Image.new("RGBA", grid.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for slot in range(len(images)):
            x = (slot % 2) * (cell_w + gutter)
            y = (slot // 2) * (cell_h + gutter)
            _draw_badge(draw, (x, y), min(cell_w, cell_h), str(slot + 1))
        grid = Image.alpha_composite(grid.convert("RGBA"), overlay).convert("RGB")
    return grid


def _fit_cell(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    fitted = ImageOps.contain(image, size, Image.Resampling.LANCZOS)
    cell = Image.new("RGB", size, EMPTY_COLOUR)
    cell.paste(fitted, ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2))
    return cell


def _draw_badge(draw: ImageDraw.ImageDraw, origin: tuple[int, int], cell: int, text: str) -> None:
    side = max(14, round(cell * 0.08))
    margin = max(2, round(side * 0.25))
    x0, y0 = origin[0] + margin, origin[1] + margin
    box = (x0, y0, x0 + side - 1, y0 + side - 1)
    draw.rounded_rectangle(
        box,
        radius=max(2, round(side * 0.28)),
        fill=BADGE_FILL,
        outline=BADGE_EDGE,
        width=max(1, round(side / 28)),
    )
    font = ImageFont.load_default(size=max(9, round(side * 0.68)))
    stroke = round(side / 40)  # a touch of weight on large badges
    centre = (x0 + side / 2, y0 + side / 2)
    draw.text(
        centre,
        text,
        font=font,
        fill=BADGE_TEXT,
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=BADGE_TEXT,
    )
