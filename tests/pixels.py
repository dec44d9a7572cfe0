"""Comparing pictures a network made: how close is close enough.

A seed gives the same picture alone or in a batch, but not always the same bits: CPU (and GPU)
kernels pick different reduction orders for different batch sizes, thread counts and instruction
sets, so a handful of pixels can land one step of 255 apart. Only pixels that onbrand copies itself
(paste-back, pan, crop) are promised bit-identical; model output is compared with ``drift``.

Measured for the bundled ``tiny`` model (64 px, 3 steps), 12 seeds each made alone and inside
batches of 2, 4 and 8, with torch's AVX2 kernels, its default (no SIMD) kernels and the machine's
own on two cores (``ATEN_CPU_CAPABILITY``, ``torch.set_num_threads``): never more than 1/255 in
any channel, and never more than 0.12 % of the pixels touched. The limits below leave twice that
on the size of a difference and four times that on how many pixels may differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageChops

MAX_STEP = 2  # largest |Δ| in any channel, in 1/255 steps
MAX_FRACTION = 0.005  # share of pixels allowed to differ at all


@dataclass(frozen=True)
class Drift:
    """How far one picture is from another: the largest channel step and the share of pixels
    that differ at all."""

    largest: int
    fraction: float

    @property
    def within_batch_tolerance(self) -> bool:
        return self.largest <= MAX_STEP and self.fraction <= MAX_FRACTION

    def __str__(self) -> str:
        return f"max |Δ| {self.largest}/255 in {self.fraction:.4%} of pixels"


def drift(a: Image.Image, b: Image.Image) -> Drift:
    """The ``Drift`` between two pictures of the same size (compared as RGB)."""
    assert a.size == b.size, f"sizes differ: {a.size} vs {b.size}"
    difference = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    largest = max(high for _, high in difference.getextrema())  # type: ignore[misc]
    # A pixel differs when any of its channels does: the max over channels, then count non-zero.
    red, green, blue = difference.split()
    per_pixel = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    pixels = a.width * a.height
    differing = pixels - per_pixel.histogram()[0]
    return Drift(largest=largest, fraction=differing / pixels)
