"""Watermark logo files: where a preset's logo may live and what it may be.

A preset names its logo by a path relative to the preset file, and the logo must stay inside that
file's folder: the path is resolved (symlinks followed) before it is checked, so neither
``../../etc/passwd``, an absolute path nor a symlink that leads out is read. The file must be a
PNG, JPEG or WebP by its bytes (not its name), at most ``MAX_LOGO_BYTES`` long and at most
``MAX_LOGO_SIDE`` pixels a side, judged from its header before any pixel is decoded, so a
decompression bomb costs nothing. ``read_logo`` runs at preset load (``presets validate``) and
again in the worker before each use, since a file can change after it was loaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, UnidentifiedImageError

from core.brand.presets import Preset

__all__ = [
    "LOGO_FORMATS",
    "MAX_LOGO_BYTES",
    "MAX_LOGO_SIDE",
    "LogoError",
    "LogoFile",
    "logo_location",
    "preset_logo",
    "read_logo",
]

MAX_LOGO_BYTES: Final = 4 * 1024 * 1024
MAX_LOGO_SIDE: Final = 4096
LOGO_FORMATS: Final = ("PNG", "JPEG", "WEBP")  # Pillow's names, as ``Image.open(formats=…)`` takes


class LogoError(ValueError):
    """A logo that cannot be used; the message says what to change (no file name prefix)."""


@dataclass(frozen=True)
class LogoFile:
    """A checked logo: its resolved path, its bytes and what they are."""

    path: Path
    data: bytes
    sha256: str
    format: str  # one of LOGO_FORMATS
    size: tuple[int, int]


def _sniff(data: bytes) -> str | None:
    """The image type the bytes announce, or ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def logo_location(preset_folder: Path, logo: str) -> Path:
    """``logo`` resolved against ``preset_folder``; ``LogoError`` unless it stays inside it."""
    relative = Path(logo)
    if relative.is_absolute() or relative.parts[:1] == ("~",):  # "~/x" means a home folder
        raise LogoError(
            f"{logo!r} is an absolute path; give a path relative to the preset file, inside its "
            "folder, e.g. logos/brand.png"
        )
    folder = preset_folder.resolve()
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder):
        via = " through a symlink" if ".." not in relative.parts else ""
        raise LogoError(
            f"{logo!r} leads outside the preset folder{via}; put the logo inside the folder "
            "of the preset file (e.g. logos/brand.png) and name it relative to it"
        )
    if not path.exists():
        raise LogoError(
            f"file {preset_folder / relative} not found (the path is relative to the preset file)"
        )
    return path


def _read_regular(path: Path) -> bytes:
    """At most ``MAX_LOGO_BYTES`` + 1 bytes of ``path``; ``LogoError`` for a non-regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise LogoError(f"cannot be read: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise LogoError("is not a regular file; give an image file")
        if info.st_size > MAX_LOGO_BYTES:
            raise LogoError(_too_long(info.st_size))
        data = file.read(MAX_LOGO_BYTES + 1)
    if len(data) > MAX_LOGO_BYTES:
        raise LogoError(_too_long(len(data)))
    return data


def _too_long(size: int) -> str:
    return (
        f"is {size:,} bytes, more than the {MAX_LOGO_BYTES:,} a logo may have; "
        "save it smaller (a logo needs a few hundred pixels)"
    )


def read_logo(path: Path) -> LogoFile:
    """The logo at ``path`` (already located), checked; ``LogoError`` says what is wrong."""
    data = _read_regular(path)
    kind = _sniff(data)
    if kind is None:
        raise LogoError("is not an image: a logo must be a PNG, JPEG or WebP file")
    try:
        with warnings.catch_warnings():
            # our own cap is far below Pillow's; its bomb warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=(kind,)) as image:
                size = image.size
                if max(size) <= MAX_LOGO_SIDE:
                    image.verify()  # chunk structure and checksums, without decoding pixels
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as exc:
        raise LogoError(f"is not a readable {kind} image ({exc})") from exc
    except Image.DecompressionBombError as exc:
        raise LogoError(
            f"has too many pixels ({exc}); a logo may be at most {MAX_LOGO_SIDE} pixels a side"
        ) from exc
    if max(size) > MAX_LOGO_SIDE or min(size) < 1:
        raise LogoError(
            f"is {size[0]}x{size[1]} pixels; a logo may be at most {MAX_LOGO_SIDE} pixels a "
            "side: scale it down"
        )
    return LogoFile(path, data, hashlib.sha256(data).hexdigest(), kind, size)


def preset_logo(preset: Preset) -> LogoFile | None:
    """``preset``'s checked watermark logo (``None`` without one); ``LogoError`` if unusable."""
    if preset.watermark is None:
        return None
    folder = Path(preset.source_path).parent if preset.source_path else Path()
    return read_logo(logo_location(folder, preset.watermark.logo))
