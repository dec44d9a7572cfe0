"""Untrusted images in: the checks every upload passes before anything is stored.

``clean_upload(data)`` takes the bytes a user gave (a chat attachment, a Slack file, a CLI file)
and returns clean pixels or raises ``UploadRefused`` (a ``UserError`` that says what to send
instead). In order, before any pixel is decoded:

1. **size**: at most ``max_bytes`` (``MAX_UPLOAD_BYTES`` by default), and not empty;
2. **type from the bytes**, never from a name or a content type: PNG, JPEG or WebP by their
   signatures; anything else (GIF, TIFF, HEIC, SVG, PDF, …) is refused by name;
3. **pixel cap** from the header (``Image.open`` reads only the header): at most ``max_pixels``
   pixels and ``MAX_SIDE`` a side, so a small file that claims a huge image (a decompression bomb)
   costs nothing; Pillow's own bomb limit stays on behind it.

Then the pixels are decoded and normalised:

- an **animated** file (APNG, animated WebP) gives its **first frame**, and the result says so
  (``notes``): the first frame is what a chat client shows as the still preview;
- **EXIF orientation** is applied to the pixels; **all other metadata** (EXIF with GPS, XMP,
  IPTC, comments, text chunks, ICC after conversion) is dropped: the clean image is rebuilt
  from raw pixels and encoded as a PNG that carries nothing else;
- **colour** ends as 8-bit sRGB: an embedded ICC profile is converted to sRGB (LittleCMS),
  CMYK without a profile is converted naively, 16-bit and 32-bit grey scaled to 8 bits, palette
  and grey images expanded, and alpha (LA, PA, palette transparency, RGBA) kept as RGBA when any
  pixel is not fully opaque, dropped otherwise.

The clean PNG is what the image store keeps (by content hash), so the same picture sent twice
is one file.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, ImageCms, ImageOps

from core.errors import UserError

__all__ = [
    "ALLOWED_TYPES",
    "MAX_SIDE",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_PIXELS",
    "CleanImage",
    "UploadRefused",
    "clean_upload",
    "sniff",
]

MAX_UPLOAD_BYTES: Final = 20 * 1024 * 1024  # 20 MiB: a large phone photo is 3–8 MiB
MAX_UPLOAD_PIXELS: Final = 40_000_000  # 40 MP: more than any phone camera; 160 MB as RGBA
MAX_SIDE: Final = 12_000
ALLOWED_TYPES: Final = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
SEND_INSTEAD: Final = "Send a PNG, JPEG or WebP image"

# Signatures of common files we refuse, so the message can say what the file was.
_OTHER_SIGNATURES: Final = (
    (b"GIF87a", "a GIF"),
    (b"GIF89a", "a GIF"),
    (b"II*\x00", "a TIFF"),
    (b"MM\x00*", "a TIFF"),
    (b"%PDF", "a PDF"),
    (b"BM", "a BMP"),
    (b"\x00\x00\x01\x00", "an icon (ICO)"),
    (b"8BPS", "a Photoshop file"),
    (b"PK\x03\x04", "a ZIP archive"),
)


class UploadRefused(UserError):
    """An upload that can't be used; the message says why and what to send instead."""


@dataclass(frozen=True)
class CleanImage:
    """An upload after the checks: sRGB pixels (RGB, or RGBA with real transparency), the
    metadata-free PNG that is stored, and what was done on the way (for the user)."""

    image: Image.Image
    png: bytes
    mime: str  # the type the upload really was, from its bytes
    size: int  # bytes as uploaded
    notes: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest()

    @property
    def has_alpha(self) -> bool:
        return self.image.mode == "RGBA"


def sniff(data: bytes) -> str | None:
    """``PNG``, ``JPEG`` or ``WEBP`` from the file's first bytes; ``None`` for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _what(data: bytes) -> str:
    head = data[:16]
    for signature, name in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return name
    if head.lstrip()[:1] == b"<":
        return "text or markup (SVG/HTML)"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "a HEIC/AVIF or video file"
    return "not an image we recognise"


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def clean_upload(
    data: bytes,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_UPLOAD_PIXELS,
) -> CleanImage:
    """Check and normalise an untrusted upload (see the module docstring)."""
    if not data:
        raise UploadRefused(f"The file is empty. {SEND_INSTEAD}.")
    if len(data) > max_bytes:
        raise UploadRefused(
            f"The file is {_mb(len(data))}; the most is {_mb(max_bytes)}. "
            f"{SEND_INSTEAD} under {_mb(max_bytes)} (e.g. saved as JPEG, or smaller)."
        )
    kind = sniff(data)
    if kind is None:
        raise UploadRefused(f"The file is {_what(data)}, not an image we accept. {SEND_INSTEAD}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=(kind,))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadRefused(_too_many_pixels("far more", max_pixels)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UploadRefused(
            f"The {kind} file can't be read ({_reason(exc)}); it may be damaged or cut short. "
            f"{SEND_INSTEAD} that opens in an image viewer."
        ) from None
    with opened:
        width, height = opened.size
        if width < 1 or height < 1 or max(width, height) > MAX_SIDE or width * height > max_pixels:
            raise UploadRefused(_too_many_pixels(f"{width}×{height}", max_pixels))
        notes: list[str] = []
        frames = int(getattr(opened, "n_frames", 1) or 1)
        if frames > 1:
            notes.append(f"The {kind} is animated ({frames} frames): its first frame was used.")
        try:
            opened.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                opened.load()
            image = _srgb(opened, notes)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
            raise UploadRefused(
                f"The {kind} file can't be decoded ({_reason(exc)}); it may be damaged or cut "
                f"short. {SEND_INSTEAD} that opens in an image viewer."
            ) from None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # a fresh image: no info, so no metadata chunks
    return CleanImage(image, buffer.getvalue(), ALLOWED_TYPES[kind], len(data), tuple(notes))


def _too_many_pixels(size: str, max_pixels: int) -> str:
    return (
        f"The image is {size} pixels; the most is {max_pixels / 1e6:.0f} megapixels and "
        f"{MAX_SIDE:,} pixels a side. {SEND_INSTEAD} scaled down (2,000–4,000 pixels a side "
        "is plenty)."
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:120]


def _srgb(opened: Image.Image, notes: list[str]) -> Image.Image:
    """8-bit sRGB pixels (RGB or RGBA) from a loaded frame, oriented, with no metadata."""
    oriented = ImageOps.exif_transpose(opened) or opened
    icc = opened.info.get("icc_profile")
    mode = oriented.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        depth = np.asarray(oriented)
        top = 65535.0 if mode.startswith("I;16") or depth.max(initial=0) > 255 else 255.0
        grey = np.clip(np.round(depth.astype(np.float64) * 255.0 / top), 0, 255)
        oriented = Image.fromarray(grey.astype(np.uint8), "L")
        notes.append("The image had more than 8 bits per channel: it was reduced to 8 bits.")
        mode = "L"
    alpha: Image.Image | None = None
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in oriented.info
    ):
        rgba = oriented.convert("RGBA")
        alpha = rgba.getchannel("A")
        colour: Image.Image = rgba
    else:
        colour = oriented
    if icc and colour.mode in ("RGB", "RGBA", "CMYK", "L"):
        colour = _convert_profile(colour, icc, notes)
    if colour.mode == "CMYK":
        notes.append("The image was CMYK without a colour profile: converted to RGB naively.")
    rgb = colour.convert("RGB")
    pixels = np.asarray(rgb, dtype=np.uint8)
    if alpha is not None:
        mask = np.asarray(alpha, dtype=np.uint8)
        if mask.min() < 255:
            return Image.fromarray(np.dstack([pixels, mask]), "RGBA")
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


def _convert_profile(image: Image.Image, icc: bytes, notes: list[str]) -> Image.Image:
    """``image`` converted from its embedded profile to sRGB (alpha kept aside)."""
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    base = image.convert("RGB") if image.mode == "RGBA" else image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        target = ImageCms.createProfile("sRGB")
        converted = ImageCms.profileToProfile(base, source, target, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        notes.append("The image's colour profile could not be read: its colours were kept as is.")
        return image
    assert converted is not None
    name = ImageCms.getProfileDescription(source).strip() or "embedded"
    if "srgb" not in name.lower():
        notes.append(f"Colours were converted from the {name} profile to sRGB.")
    if alpha is not None:
        converted.putalpha(alpha)
    return converted
