"""Inpainting through the OpenAI image edit endpoint: the canvas and mask in, the scene back.

The endpoint takes an image and a mask PNG of the same size whose **fully transparent** pixels
are the ones to paint (``InpaintJob.mask`` is white there), and answers at one of the model's
few sizes (``api_size``). So that what comes back lines up with the canvas pixel for pixel
(the product is pasted back at its box afterwards, ``core.imaging.product``), the canvas is
**letterboxed, never cropped**: scaled to fit inside the size sent (Lanczos; the mask nearest,
so its edge stays sharp) and centred, the bands around it painted too (transparent in the mask,
so the model extends the scene into them). The answer is brought to the size sent, the canvas's
frame cut out of it, and that resampled (Lanczos) to exactly the canvas's size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

__all__ = ["EditFrame", "edit_inputs", "from_frame", "mask_png"]

Size = tuple[int, int]
FILL = (127, 127, 127)  # the letterbox bands (painted over by the model)


@dataclass(frozen=True)
class EditFrame:
    """Where the canvas sits in the image sent: ``sent`` (the API size) and ``box``
    (left, top, width, height) of the scaled canvas inside it; ``canvas`` its own size."""

    sent: Size
    box: tuple[int, int, int, int]
    canvas: Size


def frame(canvas: Size, sent: Size) -> EditFrame:
    w, h = canvas
    if w <= 0 or h <= 0:
        raise ValueError(f"canvas size must be positive, got {w}x{h}")
    scale = min(sent[0] / w, sent[1] / h)
    sw, sh = min(sent[0], max(1, round(w * scale))), min(sent[1], max(1, round(h * scale)))
    return EditFrame(sent, ((sent[0] - sw) // 2, (sent[1] - sh) // 2, sw, sh), canvas)


def mask_png(mask: Image.Image) -> bytes:
    """OpenAI's mask from ours: alpha 0 (transparent) where ``mask`` is white (paint), 255
    where it is black (keep); a pixel in between is painted (the API reads only alpha 0 as
    "paint", so a half-kept pixel would otherwise be kept)."""
    alpha = mask.convert("L").point(lambda v: 0 if v > 0 else 255)
    layer = Image.new("RGBA", mask.size, (0, 0, 0, 255))
    layer.putalpha(alpha)
    return _png(layer)


def edit_inputs(
    image: Image.Image, mask: Image.Image, sent: Size
) -> tuple[bytes, bytes, EditFrame]:
    """The image and mask PNGs to send at ``sent`` (the same size, as the API demands), and
    where the canvas sits in them."""
    if image.size != mask.size:
        raise ValueError(f"image is {image.size}, its mask {mask.size}: they must match")
    where = frame(image.size, sent)
    x, y, w, h = where.box
    start = Image.new("RGB", sent, FILL)
    start.paste(image.convert("RGB").resize((w, h), Image.Resampling.LANCZOS), (x, y))
    paint = Image.new("L", sent, 255)  # the bands are painted
    paint.paste(mask.convert("L").resize((w, h), Image.Resampling.NEAREST), (x, y))
    return _png(start), mask_png(paint), where


def from_frame(answer: Image.Image, where: EditFrame) -> Image.Image:
    """The canvas's part of the answer, at exactly the canvas's size (RGB)."""
    scene = answer.convert("RGB")
    if scene.size != where.sent:  # a service may answer at another size: bring it to ours
        scene = scene.resize(where.sent, Image.Resampling.LANCZOS)
    x, y, w, h = where.box
    return scene.crop((x, y, x + w, y + h)).resize(where.canvas, Image.Resampling.LANCZOS)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
