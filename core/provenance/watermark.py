"""An invisible watermark: 64 bits (a 40-bit image id + a 24-bit keyed MAC) hidden in the pixels.

Our own spread-spectrum scheme on numpy, chosen by measurement (``python -m bench provenance``,
docs/provenance.md): ``invisible-watermark`` needs torch and opencv-python and loses its mark to
crops; ``trustmark`` needs model weights. How it works:

- **Embedding.** A 64 × 64-pixel tile of 16 × 16 cells of 4 × 4 pixels; each of the 64 bits owns 4
  cells (a fixed pseudo-random layout) and sets them to ``±chip``; the tile is softened at the cell
  edges, repeated over the whole picture from its top-left corner, scaled by a local-contrast mask
  (stronger on texture, weaker on flat areas) and added to the luminance (the same amount to R, G
  and B). Cells of 4 pixels are coarse enough to survive JPEG's quantiser and a halving of the
  picture; the tiling makes a crop a cyclic shift of the tile.
- **Reading.** The luminance minus a blurred copy of itself (the picture's own content mostly
  cancels), clipped against strong edges, folded onto one tile (every repeat adds up), then
  correlated with every bit's pattern at every cyclic shift at once (FFT). The shift where the 64
  correlations carry the most energy is the alignment; the bits are their signs there. Unknown
  scale (a resized or screenshotted copy) is searched: the picture is brought back by each
  plausible factor and the best-aligned candidates are decoded.
- **Trust.** A decoded payload counts only when its MAC (HMAC-SHA256 with the install's secret,
  truncated to 24 bits) matches: a random picture passes with probability 2⁻²⁴ per candidate
  tried, and nobody without the secret can make a payload that passes.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image

ID_BITS: Final = 40
MAC_BITS: Final = 24
PAYLOAD_BITS: Final = ID_BITS + MAC_BITS
CELL: Final = 4  # pixels per cell side
GRID: Final = 16  # cells per tile side
TILE: Final = CELL * GRID  # 64 pixels
STRENGTH: Final = 3.0  # luminance levels (of 255) of a chip on average texture
MIN_SIDE: Final = 32  # a picture smaller than this on either side holds no readable mark
WINDOW: Final = 512  # the most pixels a side that reading looks at, in the original's scale
_LAYOUT_SEED: Final = 0x0B4A7D  # the public cell layout; the MAC key is what is secret
_DOMAIN: Final = b"onbrand-watermark-v1"
_ROUNDS: Final = 10  # self-checks while embedding
_CHASE_BITS: Final = 3  # try flipping up to this many least-sure bits (2**3 MAC checks)

F32 = npt.NDArray[Any]  # float32 pixels
F64 = npt.NDArray[Any]  # float64 sums


@dataclass(frozen=True)
class Found:
    """A watermark read from a picture: the image id, whether the MAC held, and how sure."""

    image_id: int
    authentic: bool
    scale: float  # the factor the picture had been resized by (1.0: not resized)
    confidence: float  # the alignment peak in standard deviations above the rest


def mac(secret: bytes, image_id: int) -> int:
    """The 24-bit MAC of an image id under the install's secret."""
    digest = hmac.new(secret, _DOMAIN + image_id.to_bytes(5, "big"), hashlib.sha256).digest()
    return int.from_bytes(digest[:3], "big")


def payload_bits(secret: bytes, image_id: int) -> npt.NDArray[np.int8]:
    """The 64 bits (as ±1) that carry ``image_id`` and its MAC."""
    if not 0 <= image_id < 1 << ID_BITS:
        raise ValueError(f"image id {image_id} does not fit {ID_BITS} bits")
    word = (image_id << MAC_BITS) | mac(secret, image_id)
    bits = [(word >> (PAYLOAD_BITS - 1 - i)) & 1 for i in range(PAYLOAD_BITS)]
    return np.array([1 if b else -1 for b in bits], dtype=np.int8)


def _layout() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8]]:
    """Which bit each of the 256 cells carries, and its chip sign (fixed, public)."""
    rng = np.random.default_rng(_LAYOUT_SEED)
    owner = rng.permutation(np.repeat(np.arange(PAYLOAD_BITS), GRID * GRID // PAYLOAD_BITS))
    chips = rng.choice(np.array([-1, 1], dtype=np.int8), size=GRID * GRID)
    return owner.reshape(GRID, GRID), chips.reshape(GRID, GRID)


_OWNER, _CHIPS = _layout()


def _bit_patterns() -> F64:
    """Each bit's ±1 pattern over one tile, in pixels (64 × 64 × 64), zero off its cells."""
    patterns = np.zeros((PAYLOAD_BITS, GRID, GRID))
    for bit in range(PAYLOAD_BITS):
        patterns[bit] = np.where(bit == _OWNER, _CHIPS, 0)
    return np.kron(patterns, np.ones((1, CELL, CELL)))


def _soften(tile: F64) -> F64:
    """A cyclic [1, 2, 1] / 4 smoothing on the last two axes: softer cell edges, same low
    frequencies."""
    for axis in (-2, -1):
        tile = (np.roll(tile, 1, axis) + 2 * tile + np.roll(tile, -1, axis)) / 4
    return tile


_PATTERNS: Final = _bit_patterns()
_PATTERNS_F: Final = np.conj(np.fft.fft2(_PATTERNS))
_FLAT: Final = _PATTERNS.reshape(PAYLOAD_BITS, TILE * TILE)  # one row per bit
# each bit's pattern softened: a tile is their sum weighted by bit and gain (softening is linear)
_SOFT_FLAT: Final = _soften(_PATTERNS).reshape(PAYLOAD_BITS, TILE * TILE)


def _box(a: F32, radius: int) -> F32:
    """A box blur of side ``2 * radius + 1`` with the edges repeated (cumulative sums), down the
    columns, then along the rows: ``np.cumsum``'s sums in the same order (the marks stay bit for
    bit the same), computed along memory.

    numpy's own ``cumsum`` down axis 0 strides through memory (about three times slower). Small
    pictures sum a transposed copy; from 256 × 256 on, the transposes cost more than they save
    and the sums run down the columns a row at a time (at 128 / 512 / 1024 px: 0.16 / 3.5 / 23
    ms transposed, 0.19 / 2.2 / 13.7 ms a row at a time)."""
    if a.size < _TRANSPOSE_BELOW:
        down = _box_along_rows(a.T, radius)  # the columns of ``a`` are the rows of ``a.T``
        return _box_along_rows(down.T, radius)
    side, rows = 2 * radius + 1, a.shape[0]
    c = np.empty((rows + side, a.shape[1]), dtype=np.float32)
    c[: radius + 1] = a[0]
    c[radius + 1 : radius + 1 + rows] = a
    c[radius + 1 + rows :] = a[-1]
    for i in range(1, rows + side):
        np.add(c[i - 1], c[i], out=c[i])
    down = c[side : side + rows] - c[:rows]
    down /= side
    return _box_along_rows(down, radius)


_TRANSPOSE_BELOW: Final = 256 * 256


def _box_along_rows(a: F32, radius: int) -> F32:
    """A box blur along each row of ``a`` (any layout), the edge pixels repeated."""
    side, (rows, cols) = 2 * radius + 1, a.shape
    padded = np.empty((rows, cols + side), dtype=np.float32)
    padded[:, radius + 1 : radius + 1 + cols] = a
    padded[:, : radius + 1] = a[:, :1]
    padded[:, radius + 1 + cols :] = a[:, -1:]
    c = np.cumsum(padded, axis=1, dtype=np.float32)
    blurred: F32 = c[:, side : side + cols] - c[:, :cols]
    blurred /= side
    return blurred


def _luma(rgb: F32) -> F32:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def embed(
    image: Image.Image,
    secret: bytes,
    image_id: int,
    strength: float = STRENGTH,
    *,
    keep: npt.NDArray[np.bool_] | None = None,
) -> Image.Image:
    """``image`` with the watermark of ``image_id`` added (RGB or RGBA; alpha is kept).

    ``keep`` (height × width, True where a pixel must stay exactly as it is: a product shot's
    product, the original a zoom-out or pan keeps) leaves those pixels untouched; the mark lives
    in the rest of the image.

    Embedding checks itself: it reads the marked pixels back as the reader would and gives
    bits that came out weak (strong edges or saturated colours under their cells) more strength,
    a few rounds at most, so every bit starts with a margin before any re-encoding eats into it.
    """
    if min(image.size) < MIN_SIDE:
        return image.copy()
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    bits = payload_bits(secret, image_id).astype(np.float64)
    h, w = rgb.shape[:2]
    reps = (-(-h // TILE), -(-w // TILE))
    # local contrast: flat areas get 2/3 of the strength, textured ones up to twice
    y = _luma(rgb)
    activity = _box(np.abs(y - _box(y, 2)), 3)
    mask = strength * np.clip(0.67 + activity / 6.0, 0.67, 2.0)
    if keep is not None:
        mask = np.where(keep, 0.0, mask).astype(np.float32)
    gains = np.ones(PAYLOAD_BITS)
    marked = np.empty_like(rgb)  # each round rewrites it in place
    for _ in range(_ROUNDS):
        tile = ((gains * bits) @ _SOFT_FLAT).reshape(TILE, TILE).astype(np.float32)
        mark = np.tile(tile, reps)[:h, :w]
        np.add(rgb, (mask * mark)[..., None], out=marked)
        np.clip(np.rint(marked, out=marked), 0, 255, out=marked)
        folded = _fold(_residual(_luma(marked)))
        margins = bits * (_FLAT @ folded.ravel())
        target = 0.6 * float(np.median(margins))
        weak = margins < target
        if not weak.any() or target <= 0:
            break
        gains = np.where(weak, np.minimum(gains * 1.7, 8.0), gains)
    out = Image.fromarray(marked.astype(np.uint8), "RGB")
    if alpha is not None:
        out.putalpha(alpha)
    return out


def _residual(y: F32) -> F32:
    """What is left of the luminance once its content is blurred away, clipped at edges."""
    r = y - _box(_box(y, 2), 2)
    clipped: F32 = np.clip(r, -3 * STRENGTH, 3 * STRENGTH)
    return clipped


def _fold(r: F32) -> F64:
    """Every 64-pixel repeat of the tile summed onto one tile."""
    h, w = r.shape
    ph, pw = -h % TILE, -w % TILE
    padded = np.pad(r, ((0, ph), (0, pw)))
    tiles = padded.reshape(padded.shape[0] // TILE, TILE, padded.shape[1] // TILE, TILE)
    folded: F64 = tiles.sum(axis=(0, 2), dtype=np.float64)
    return folded


def _align(folded: F64, origin: tuple[int, int]) -> list[tuple[float, F64]]:
    """Each bit's correlation at two alignments, each with its energy peak in standard
    deviations: where the tile starts if the copy was not cropped (``origin``, the region's
    top-left in the original's pixels), and where the correlations carry the most energy (a
    crop). The first matters for small pictures, whose own content (stripes, say) can outshine
    the mark's energy at some wrong shift."""
    spectrum = np.fft.fft2(folded)
    corr = np.fft.ifft2(spectrum[None] * _PATTERNS_F).real  # bits × shifts
    energy = (corr**2).sum(axis=0)
    spread = energy.std() + 1e-12
    peak = divmod(int(np.argmax(energy)), TILE)
    uncropped = (-origin[0] % TILE, -origin[1] % TILE)
    shifts = [uncropped] if uncropped == peak else [uncropped, peak]
    return [
        (float((energy[dy, dx] - energy.mean()) / spread), corr[:, dy, dx]) for dy, dx in shifts
    ]


def candidate_scales(width: int, height: int) -> list[float]:
    """Factors a copy of this size may have been resized by: common ones, then those that
    make one side a multiple of 64 (every size onbrand generates is)."""
    common = [1.0, 0.5, 0.75, 2 / 3, 0.8, 0.9, 1.25, 1.5, 2.0, 1 / 3, 0.25, 0.6, 0.7]
    derived = [side / (TILE * k) for side in (width, height) for k in range(1, 33)]
    scales: list[float] = []
    for s in common + sorted(derived, key=lambda v: abs(np.log(v))):
        if 0.24 <= s <= 2.01 and all(abs(s - t) / t > 0.004 for t in scales):
            scales.append(s)
    return scales[:40]


def _chase(secret: bytes, soft: F64) -> int | None:
    """The image id when the hard bits, or they with up to three of the least sure flipped,
    carry a valid MAC; ``None`` otherwise."""
    hard = soft > 0
    weakest = np.argsort(np.abs(soft))[:_CHASE_BITS]
    for flips in range(1 << _CHASE_BITS):
        bits = hard.copy()
        for j, position in enumerate(weakest):
            if flips >> j & 1:
                bits[position] = ~bits[position]
        word = 0
        for b in bits:
            word = (word << 1) | int(b)
        image_id, tag = word >> MAC_BITS, word & ((1 << MAC_BITS) - 1)
        if hmac.compare_digest(tag.to_bytes(3, "big"), mac(secret, image_id).to_bytes(3, "big")):
            return image_id
    return None


def read(image: Image.Image, secret: bytes) -> Found | None:
    """The authentic watermark in ``image``, searched over plausible scales; ``None`` if none.

    Each candidate scale is tried in turn (the unscaled picture first) on at most a
    ``WINDOW``-pixel square from the middle (enough repeats of the tile; a bounded cost); the
    first whose bits carry a valid MAC wins. Every candidate (up to 40 scales, two alignments
    each, ``_align``) adds 8 MAC checks, so a random picture passes with probability about
    40 × 2 × 8 × 2⁻²⁴ ≈ 4 × 10⁻⁵ before its id is even looked up.
    """
    rgb_image = image.convert("RGB")
    w, h = rgb_image.size
    if min(w, h) < MIN_SIDE // 2:
        return None
    for scale in candidate_scales(w, h):
        side_w, side_h = min(w, round(WINDOW * scale)), min(h, round(WINDOW * scale))
        left, top = (w - side_w) // 2, (h - side_h) // 2
        region = rgb_image.crop((left, top, left + side_w, top + side_h))
        if scale != 1.0:
            size = (round(side_w / scale), round(side_h / scale))
            if min(size) < MIN_SIDE:
                continue
            region = region.resize(size, Image.Resampling.BICUBIC)
        y = _luma(np.asarray(region, dtype=np.float32))
        origin = (round(top / scale), round(left / scale))
        for z, soft in _align(_fold(_residual(y)), origin):
            image_id = _chase(secret, soft)
            if image_id is not None:
                return Found(image_id, True, scale, z)
    return None


def image_id_of(generation_id: str, index: int) -> int:
    """The 40-bit watermark id of image ``index`` of a generation: the first 10 hex digits of
    ``md5("<generation uuid>:<index>")``. PostgreSQL computes the same for ``images.watermark_id``
    (a generated column), so any image row can be found from its mark."""
    digest = hashlib.md5(f"{generation_id}:{index}".encode(), usedforsecurity=False).hexdigest()
    return int(digest[:10], 16)
