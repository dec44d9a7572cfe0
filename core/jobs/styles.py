"""A job's reference images (``Params.style_refs``) loaded for the engine (``StyleJob``).

References are ``store:<image-store key>`` (registered style codes: clean PNGs stored by
content hash) or ``file:<path>`` (a preset's own reference files). Decoded images are kept in
a small per-process cache (store keys never change; a file is keyed by its size and mtime), so
a style used over and over is read once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections import OrderedDict
from pathlib import Path
from typing import TypeVar

from PIL import Image

from core.brand.lora_files import LoraFileError, lora_digest
from core.domain import Params
from core.ports import GenerateJob, ImageStore, StyleJob, VaryJob

__all__ = ["a1111_loras", "load_reference", "with_style"]

J = TypeVar("J", GenerateJob, VaryJob)
_KEPT = 64
_images: OrderedDict[tuple[str, int, int], Image.Image] = OrderedDict()


def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "WEBP")) as opened:
        return opened.convert("RGB")


async def load_reference(ref: str, store: ImageStore) -> Image.Image:
    """The pixels of one reference (``store:`` or ``file:``)."""
    kind, _, where = ref.partition(":")
    if kind == "file":
        stat = await asyncio.to_thread(Path(where).stat)
        key = (ref, stat.st_size, stat.st_mtime_ns)
    elif kind == "store":
        key = (ref, 0, 0)
    else:
        raise ValueError(f"unknown reference {ref!r} (store:KEY or file:PATH)")
    found = _images.get(key)
    if found is None:
        data = await (
            asyncio.to_thread(Path(where).read_bytes) if kind == "file" else store.get(where)
        )
        found = await asyncio.to_thread(_decode, data)
        _images[key] = found
        while len(_images) > _KEPT:
            _images.popitem(last=False)
    _images.move_to_end(key)
    return found


async def with_style(job: J, params: Params, store: ImageStore) -> J:
    """``job`` with its ``StyleJob`` when ``params`` carry a style code, else unchanged."""
    if params.style_code is None or not params.style_refs:
        return job
    images = tuple([await load_reference(ref, store) for ref in params.style_refs])
    source, subfolder, weights, encoder = params.style_adapter
    style = StyleJob(
        params.style_code, images, params.style_weight, source, subfolder, weights, encoder
    )
    return dataclasses.replace(job, style=style)


def a1111_loras(loras: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float, str | None], ...]:
    """(name, weight, short hash) of each LoRA as A1111 writes them: the file's stem (a
    folder's name, a hub id's last part) and 12 hex digits of its sha256 (``None`` for a hub id
    or a file no longer there)."""
    out = []
    for source, weight in loras:
        path = Path(source)
        name = path.stem if path.suffix == ".safetensors" else path.name
        try:
            digest = lora_digest(source)
        except (LoraFileError, OSError):
            digest = None
        out.append((name, weight, digest[:12] if digest else None))
    return tuple(out)
