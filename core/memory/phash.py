"""The perceptual hash of an original: imagehash's pHash (DCT of a 32×32 greyscale), 64 bits.

Stored as a signed BIGINT so PostgreSQL can take Hamming distances (``bit_count(a # b)``).
imagehash (with numpy, SciPy and PyWavelets) is imported only when a hash is computed, by the
worker's indexer or ``onbrand search reindex``; the bots and search itself never need it.
"""

from __future__ import annotations

import functools
import importlib.util
import io

from PIL import Image

from core.errors import ConfigError

BITS = 64


def phash_bytes(data: bytes) -> int:
    """The signed 64-bit pHash of an encoded image."""
    with Image.open(io.BytesIO(data)) as image:
        return phash_image(image)


def phash_image(image: Image.Image) -> int:
    try:
        import imagehash
    except ImportError as exc:  # the memory extra is not installed
        raise ConfigError(
            "perceptual hashes need imagehash: install onbrand with the memory extra "
            "(pip install 'onbrand[memory]')"
        ) from exc
    value = int(str(imagehash.phash(image.convert("RGB"), hash_size=8)), 16)
    return value - (1 << BITS) if value >= 1 << (BITS - 1) else value


@functools.cache
def can_hash() -> bool:
    """Whether imagehash is installed (looked up once per process, not once per image)."""
    return importlib.util.find_spec("imagehash") is not None


def phash_if_available(image: Image.Image) -> int | None:
    """``phash_image``, or None where imagehash is not installed (the indexer hashes it later)."""
    return phash_image(image) if can_hash() else None


def distance(a: int, b: int) -> int:
    """Hamming distance between two stored hashes."""
    return ((a ^ b) & ((1 << BITS) - 1)).bit_count()
