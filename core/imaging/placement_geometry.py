"""Crop or extend: where each placement's picture comes from in the source image.

Pure functions on sizes and boxes (``(x, y, width, height)`` in source pixels). A plan is a
rectangle of the source at the placement's aspect ratio; resizing it to the placement's size puts
the protected box (the product, or the salient part) inside the placement's safe area, never in a
safe-zone band. When the image is too narrow or too short for that, the rectangle reaches outside
the source: the picture is **extended** there (outpainted, or filled), then cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # x, y, width, height
Safe = tuple[float, float, float, float]  # top, right, bottom, left: fractions of each edge
Method = Literal["crop", "extend"]


@dataclass(frozen=True)
class Plan:
    method: Method
    rect: Box  # in source pixels; for "extend" it reaches outside the source


def _axis(
    start: int, length: int, size: int, low: float, high: float, extent: int, fit: bool
) -> int | None:
    """The start of a window of ``extent`` px that keeps [start, start+length) inside its own
    [low, 1-high] fraction; inside [0, size-extent] when ``fit``; ``None`` when none does."""
    lo = math.ceil(start + length - (1.0 - high) * extent - 1e-9)
    hi = math.floor(start - low * extent + 1e-9)
    ideal = round(start + length / 2 - extent / 2)
    prefer = (0, size - extent) if extent <= size else (size - extent, 0)
    if fit:
        lo, hi = max(lo, prefer[0]), min(hi, prefer[1])
    if lo > hi:
        return None
    # nearest to the centred window that shows the most of the source
    ideal = min(max(ideal, prefer[0]), prefer[1])
    return min(max(ideal, lo), hi)


def plan(source: tuple[int, int], box: Box, target: tuple[int, int], safe: Safe) -> Plan:
    """Crop when a window at ``target``'s aspect fits in ``source`` with ``box`` inside its safe
    area; otherwise extend the smallest such window beyond the source."""
    width, height = source
    tw, th = target
    top, right, bottom, left = safe
    bx, by, bw, bh = clamp_box(box, source)
    # the largest window of the target's aspect inside the source
    if width * th >= height * tw:
        cw, ch = max(1, round(height * tw / th)), height
    else:
        cw, ch = width, max(1, round(width * th / tw))
    cw, ch = min(cw, width), min(ch, height)
    x = _axis(bx, bw, width, left, right, cw, fit=True)
    y = _axis(by, bh, height, top, bottom, ch, fit=True)
    if x is not None and y is not None:
        return Plan("crop", (x, y, cw, ch))
    # extend: grow the window until the box (and a pixel's slack) fits its safe area
    need_w = (bw + 2) / (1.0 - left - right)
    need_h = (bh + 2) / (1.0 - top - bottom)
    scale = max(1.0, need_w / cw, need_h / ch)
    ew = math.ceil(cw * scale)
    eh = max(math.ceil(ew * th / tw), math.ceil(need_h))
    ew = max(ew, math.ceil(eh * tw / th))
    x = _axis(bx, bw, width, left, right, ew, fit=False)
    y = _axis(by, bh, height, top, bottom, eh, fit=False)
    if x is None or y is None:  # the window was made large enough: never happens
        raise AssertionError(f"no window of {ew}x{eh} keeps {box} safe in {source}")
    return Plan("extend", (x, y, ew, eh))


def clamp_box(box: Box, source: tuple[int, int]) -> Box:
    """``box`` cut to the source (an empty box becomes the centre pixel)."""
    width, height = source
    x0, y0 = max(0, min(box[0], width - 1)), max(0, min(box[1], height - 1))
    x1 = max(x0 + 1, min(box[0] + box[2], width))
    y1 = max(y0 + 1, min(box[1] + box[3], height))
    return x0, y0, x1 - x0, y1 - y0


def box_in_target(box: Box, rect: Box, target: tuple[int, int]) -> tuple[float, ...]:
    """``box`` mapped into the placement's pixels when ``rect`` is resized to ``target``:
    (left, top, right, bottom) as fractions of the target's width and height."""
    bx, by, bw, bh = box
    rx, ry, rw, rh = rect
    return ((bx - rx) / rw, (by - ry) / rh, (bx + bw - rx) / rw, (by + bh - ry) / rh)


def inside_safe(box: Box, rect: Box, target: tuple[int, int], safe: Safe) -> bool:
    """Whether ``box`` lands inside the safe area (not in any band) of the placement."""
    top, right, bottom, left = safe
    x0, y0, x1, y1 = box_in_target(box, rect, target)
    eps = 1e-9
    return x0 >= left - eps and y0 >= top - eps and x1 <= 1 - right + eps and y1 <= 1 - bottom + eps


def saliency_box(image: Image.Image, keep: float = 0.7) -> Box:
    """The part of ``image`` that holds ``keep`` of its gradient energy along each axis, without
    a model: the central quantiles of the row and column sums of the gradient magnitude."""
    small = image.convert("L")
    factor = max(1, max(image.size) // 128)
    if factor > 1:
        small = small.reduce(factor)
    pixels = np.asarray(small, dtype=np.float32)
    gy, gx = np.gradient(pixels) if min(pixels.shape) > 1 else (pixels * 0, pixels * 0)
    energy = np.hypot(gx, gy) + 1e-3  # a flat image: the whole picture
    cut = (1.0 - keep) / 2

    def span(weights: np.ndarray, size: int) -> tuple[int, int]:
        cumulative = np.cumsum(weights) / float(weights.sum())
        first = int(np.searchsorted(cumulative, cut))
        last = int(np.searchsorted(cumulative, 1.0 - cut)) + 1
        scale = size / len(weights)
        return math.floor(first * scale), min(size, math.ceil(last * scale))

    x0, x1 = span(energy.sum(axis=0), image.width)
    y0, y1 = span(energy.sum(axis=1), image.height)
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)
