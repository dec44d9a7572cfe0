"""Product shots in pixels: cut a product out, place it, and put it back into a generated scene.

Pure functions on Pillow/numpy (no model, no I/O), in the order a product shot runs:

1. ``product_alpha``: a PNG with transparency keeps its alpha; a photo on a plain background is
   **keyed out from its borders**: the background colour is the median of the outer frame; pixels
   within ``tolerance`` of it that connect to the frame are background (so a white label inside a
   product on white stays); the edge is feathered. No plain background, or no clear subject in
   it, is a ``UserError`` that says what to send.
2. ``place_product``: the product (trimmed to its visible pixels) goes in the preset's box
   (``anchor``, ``scale`` of the canvas inside ``margin``). It is **never enlarged**: a smaller
   product keeps its size (``PlacedProduct.small``); a larger one is scaled down **once**
   (Lanczos) and that scaled product is what is preserved.
3. ``inpaint_inputs``: the canvas and mask the inpainting model gets (white = generate; the
   product's opaque interior is kept, its edge regenerated so no ghost of it spills out).
4. ``finish_product_shot``: a soft contact shadow under the product, a thin harmonisation ring
   along its edge, then the product's own pixels pasted back **last**: every fully opaque
   product pixel is bit-identical in the result; semi-transparent edge pixels are blended.
5. ``clear_corner``: where the brand watermark goes so that it never covers the product (none
   when no allowed corner is clear).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from core.errors import UserError

__all__ = [
    "Anchor",
    "Corner",
    "PlacedProduct",
    "clear_corner",
    "finish_product_shot",
    "inpaint_inputs",
    "overlap",
    "place_product",
    "product_alpha",
    "watermark_rect",
]

Anchor = Literal[
    "center", "top", "bottom", "left", "right", "top-left", "top-right", "bottom-left",
    "bottom-right",
]  # fmt: skip
Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
Box = tuple[int, int, int, int]  # x, y, width, height

KEY_TOLERANCE: Final = 40  # the most a background pixel's channels may differ from the key
KEY_WORK_SIDE: Final = 512  # the key-out's connectivity is found at most this size
PLAIN_BORDER: Final = 0.9  # this share of the frame must be the background colour
SEND_PRODUCT: Final = (
    "Send the product as a PNG with a transparent background, or as a photo of it alone on a "
    "plain, evenly lit background (white or one solid colour) with some space around it"
)


def product_alpha(
    image: Image.Image, *, tolerance: int = KEY_TOLERANCE, feather: float = 1.0
) -> Image.Image:
    """The product's alpha (``L``, the image's size): its own transparency, or keyed out."""
    if image.mode == "RGBA":
        alpha = image.getchannel("A")
        if int(np.asarray(alpha).min()) < 255:
            if alpha.getbbox() is None:
                raise UserError(
                    f"The PNG is fully transparent: there is no product. {SEND_PRODUCT}."
                )
            return alpha
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    height, width = rgb.shape[:2]
    if min(width, height) < 8:
        raise UserError(f"The product image is {width}×{height} pixels: too small. {SEND_PRODUCT}.")
    scale = min(1.0, KEY_WORK_SIDE / max(width, height))
    work = rgb
    if scale < 1.0:
        small = image.convert("RGB").resize(
            (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX
        )
        work = np.asarray(small, dtype=np.int16)
    frame = np.concatenate([work[0], work[-1], work[1:-1, 0], work[1:-1, -1]])
    key = np.median(frame, axis=0)
    near_frame = np.abs(frame - key).max(axis=1) <= tolerance
    if near_frame.mean() < PLAIN_BORDER:
        raise UserError(
            "The product photo's background isn't plain (its edges are "
            f"{100 * (1 - near_frame.mean()):.0f}% something else), so the product can't be cut "
            f"out. {SEND_PRODUCT}."
        )
    near = np.abs(work - key).max(axis=2) <= tolerance
    background = _connected_to_frame(near)
    subject_share = 1.0 - background.mean()
    if not 0.005 <= subject_share <= 0.95:
        raise UserError(
            "No clear product stands out from the background "
            f"({100 * subject_share:.1f}% of the photo differs from it). {SEND_PRODUCT}."
        )
    mask = Image.fromarray(np.where(background, 0, 255).astype(np.uint8), "L")
    if mask.size != (width, height):
        mask = mask.resize((width, height), Image.Resampling.BILINEAR)
    if feather > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(feather))
    return mask


def _connected_to_frame(near: np.ndarray) -> np.ndarray:
    """The pixels of ``near`` connected (4-neighbours) to the image's outer frame."""
    reached = np.zeros_like(near)
    reached[0, :], reached[-1, :], reached[:, 0], reached[:, -1] = (
        near[0, :], near[-1, :], near[:, 0], near[:, -1],
    )  # fmt: skip
    while True:
        grown = reached.copy()
        grown[1:, :] |= reached[:-1, :]
        grown[:-1, :] |= reached[1:, :]
        grown[:, 1:] |= reached[:, :-1]
        grown[:, :-1] |= reached[:, 1:]
        grown &= near
        if np.array_equal(grown, reached):
            return reached
        reached = grown


@dataclass(frozen=True)
class PlacedProduct:
    """The product as it appears on the canvas: RGBA pixels of the box's size, the box, and
    whether it is smaller than its box (never enlarged: a bigger photo would fill it)."""

    image: Image.Image  # RGBA, exactly box[2] × box[3]
    box: Box
    small: bool
    scaled: bool


def place_product(
    image: Image.Image,
    alpha: Image.Image,
    canvas: tuple[int, int],
    *,
    anchor: Anchor = "bottom",
    scale: float = 0.6,
    margin: float = 0.06,
) -> PlacedProduct:
    """Trim to the visible product, fit it into the preset's box once, and anchor it there."""
    bbox = alpha.point(lambda a: 255 if a > 0 else 0).getbbox()
    if bbox is None:
        raise UserError(f"The product image has no visible pixels. {SEND_PRODUCT}.")
    rgba = image.convert("RGB").crop(bbox)
    rgba.putalpha(alpha.crop(bbox))
    width, height = canvas
    pad = round(margin * min(width, height))
    room_w, room_h = max(1, width - 2 * pad), max(1, height - 2 * pad)
    box_w, box_h = max(1, int(scale * room_w)), max(1, int(scale * room_h))
    factor = min(box_w / rgba.width, box_h / rgba.height)
    scaled = factor < 1.0
    if scaled:
        size = (max(1, int(rgba.width * factor)), max(1, int(rgba.height * factor)))
        rgba = rgba.resize(size, Image.Resampling.LANCZOS)
    small = rgba.width < box_w and rgba.height < box_h
    w, h = rgba.size
    horizontal = "left" if "left" in anchor else "right" if "right" in anchor else "center"
    vertical = "top" if "top" in anchor else "bottom" if "bottom" in anchor else "center"
    x = {"left": pad, "right": width - pad - w, "center": (width - w) // 2}[horizontal]
    y = {"top": pad, "bottom": height - pad - h, "center": (height - h) // 2}[vertical]
    return PlacedProduct(rgba, (x, y, w, h), small=small, scaled=scaled)


def inpaint_inputs(
    product: Image.Image, box: Box, canvas: tuple[int, int], *, overlap: int = 8
) -> tuple[Image.Image, Image.Image]:
    """The starting canvas (the product on a neutral grey) and the mask (white = generate,
    black = kept: the product's fully opaque pixels, less ``overlap`` px along its edge).

    Why the overlap: with a 4-channel UNet diffusers keeps the black part by blending latents
    (one latent cell per 8 px), and a kept cell on the product's edge decodes into a smeared
    copy of the product a few pixels outside it. Generating one latent cell into the product
    removes that ghost; the product's own pixels are pasted back over it anyway."""
    x, y = box[0], box[1]
    start = Image.new("RGB", canvas, (127, 127, 127))
    start.paste(product.convert("RGB"), (x, y), product.getchannel("A"))
    mask = Image.new("L", canvas, 255)
    keep = product.getchannel("A").point(lambda a: 0 if a == 255 else 255)
    mask.paste(keep, (x, y))
    if overlap > 0:
        mask = mask.filter(ImageFilter.MaxFilter(2 * overlap + 1))
    return start, mask


def finish_product_shot(
    scene: Image.Image,
    product: Image.Image,
    box: Box,
    *,
    shadow: float = 0.35,
    ring: int = 2,
) -> Image.Image:
    """Contact shadow, harmonisation ring, then the product's pixels pasted back last (RGB)."""
    x, y, w, h = box
    if product.size != (w, h):
        raise ValueError(f"product is {product.size}, its box {w}x{h}")
    canvas = scene.convert("RGB")
    out = np.asarray(canvas, dtype=np.float64).copy()
    if shadow > 0:
        out *= 1.0 - shadow * _shadow(canvas.size, box)[..., None]
    full_alpha = Image.new("L", canvas.size, 0)
    full_alpha.paste(product.getchannel("A"), (x, y))
    a = np.asarray(full_alpha, dtype=np.float64) / 255.0
    layer = Image.new("RGB", canvas.size)
    layer.paste(product.convert("RGB"), (x, y))
    p = np.asarray(layer, dtype=np.float64)
    if ring > 0:
        edge = full_alpha.point(lambda v: 255 if v > 0 else 0).filter(
            ImageFilter.MaxFilter(2 * ring + 1)
        )
        band = (np.asarray(edge) > 0) & (a < 1.0)
        merged = Image.fromarray(_to_u8(p * a[..., None] + out * (1 - a[..., None])), "RGB")
        soft = np.asarray(merged.filter(ImageFilter.GaussianBlur(ring / 2)), dtype=np.float64)
        out[band] = soft[band]
    blended = _to_u8(p * a[..., None] + out * (1 - a[..., None]))
    opaque = np.asarray(full_alpha) == 255
    blended[opaque] = np.asarray(layer)[opaque]  # the product's own pixels, bit for bit
    return Image.fromarray(blended, "RGB")


def _to_u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def _shadow(size: tuple[int, int], box: Box) -> np.ndarray:
    """A soft ellipse (0–1) where the product meets the ground."""
    x, y, w, h = box
    mask = Image.new("L", size, 0)
    half_h = max(1.0, 0.06 * h)
    ImageDraw.Draw(mask).ellipse(
        (x + 0.05 * w, y + h - half_h, x + 0.95 * w, y + h + half_h), fill=255
    )
    blurred = mask.filter(ImageFilter.GaussianBlur(max(1.0, half_h)))
    return np.asarray(blurred, dtype=np.float64) / 255.0


def watermark_rect(
    position: str,
    canvas: tuple[int, int],
    logo_size: tuple[int, int],
    *,
    scale: float,
    margin: float = 0.03,
) -> Box:
    """Where ``core.imaging.brand.apply_watermark`` puts the logo (same geometry)."""
    width, height = canvas
    pad = round(margin * min(width, height))
    logo_w = max(1, round(scale * width))
    logo_h = max(1, round(logo_size[1] * logo_w / max(1, logo_size[0])))
    left = pad if "left" in position else width - pad - logo_w
    top = pad if "top" in position else height - pad - logo_h
    if position == "center":
        left, top = (width - logo_w) // 2, (height - logo_h) // 2
    return (left, top, logo_w, logo_h)


def overlap(a: Box, b: Box) -> int:
    """Pixels two boxes share."""
    dx = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    dy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, dx) * max(0, dy)


def clear_corner(
    preferred: str,
    allowed: tuple[str, ...],
    box: Box,
    canvas: tuple[int, int],
    logo_size: tuple[int, int],
    *,
    scale: float,
    margin: float = 0.03,
) -> str | None:
    """The watermark position: ``preferred`` unless its logo would overlap ``box``, then the
    first of ``allowed`` that is clear; ``None`` when none is (nothing may cover ``box``)."""
    for position in (preferred, *(c for c in allowed if c != preferred)):
        rect = watermark_rect(position, canvas, logo_size, scale=scale, margin=margin)
        if overlap(rect, box) == 0:
            return position
    return None
