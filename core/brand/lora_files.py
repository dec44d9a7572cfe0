"""LoRA files a preset names: where they are and whether they fit the preset's model.

Read from the ``.safetensors`` header alone (an 8-byte length and a JSON table of tensor names
and shapes), so preset validation needs neither torch nor the weights. A LoRA fits a model when
it adapts the same denoiser (a UNet for SD 1.x/2.x/SDXL, a transformer for SD3/FLUX), for a
transformer the same family, and for a UNet the same cross-attention width (768 SD 1.x, 1024
SD 2.x, 2048 SDXL). What cannot be told from the header is checked when the engine loads it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from core.brand.families import ModelFamily, model_folder

__all__ = ["MAX_HEADER_BYTES", "LoraFileError", "lora_digest", "lora_mismatch", "resolve_lora"]

MAX_HEADER_BYTES = 64 * 1024 * 1024  # safetensors' own limit is 100 MB; a LoRA's is kilobytes
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"  # what diffusers looks for in a folder


class LoraFileError(ValueError):
    """A LoRA file that is missing or not a safetensors file."""


def resolve_lora(model: str, base: Path) -> str:
    """A LoRA source as the engine takes it: a path relative to the preset's folder made
    absolute (a file or a folder), ``tiny/…`` inside the bundled tiny checkpoint (when no such
    path is beside the preset), else the text as given (a hub id)."""
    path = Path(model).expanduser()
    candidate = path if path.is_absolute() else base / path
    bundled = model_folder("tiny")
    if model.startswith("tiny/") and not candidate.exists() and bundled is not None:
        candidate = bundled / model.removeprefix("tiny/")
    if candidate.exists() or model.endswith(".safetensors") or model.startswith((".", "/", "~")):
        return str(candidate.resolve())
    return model


def _header(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            raw = file.read(8)
            if len(raw) != 8:
                raise LoraFileError(f"{path.name} is not a safetensors file (too short)")
            (size,) = struct.unpack("<Q", raw)
            if size > MAX_HEADER_BYTES:
                raise LoraFileError(f"{path.name} is not a safetensors file (header of {size} B)")
            header = json.loads(file.read(size))
    except OSError as exc:
        raise LoraFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise LoraFileError(f"{path.name} is not a safetensors file") from exc
    if not isinstance(header, dict):
        raise LoraFileError(f"{path.name} is not a safetensors file")
    return header


def _weights(source: str) -> Path:
    path = Path(source)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise LoraFileError(f"LoRA file {path} not found")
    return path


def _cross_attention_width(header: dict[str, Any]) -> int | None:
    for key, value in header.items():
        down = "lora_A" in key or "lora_down" in key
        if "attn2" in key and ("to_k" in key) and down and isinstance(value, dict):
            shape = value.get("shape")
            if isinstance(shape, list) and len(shape) == 2:
                return int(shape[1])
    return None


def lora_mismatch(source: str, family: ModelFamily | None, model_folder: Path | None) -> str | None:
    """Why the LoRA at ``source`` (a file or folder) does not fit the model, or ``None``.

    ``LoraFileError`` when the file is missing or unreadable. A hub id (not a path) is not
    checked here."""
    if not source.startswith("/"):
        return None
    header = _header(_weights(source))
    keys = [key for key in header if key != "__metadata__"]
    unet = any(k.startswith(("unet.", "lora_unet_")) for k in keys)
    transformer = any(k.startswith(("transformer.", "lora_transformer_")) for k in keys)
    if family is None or not (unet or transformer):
        return None
    if family.family in ("sd1", "sd2", "sdxl") and not unet:
        return f"it adapts a transformer (SD3/FLUX), and the model is {family.label}"
    if family.family in ("sd3", "flux"):
        if not transformer:
            return f"it adapts a UNet (SD 1.x/2.x/SDXL), and the model is {family.label}"
        flux = any("single_transformer_blocks" in k for k in keys)
        if flux != (family.family == "flux"):
            return f"it is a {'flux' if flux else 'sd3'} LoRA, and the model is {family.label}"
        return None
    width = _cross_attention_width(header)
    config = model_folder / "unet" / "config.json" if model_folder else None
    try:
        wanted = json.loads(config.read_text(encoding="utf-8")) if config else {}
    except (OSError, ValueError):
        wanted = {}
    model_width = wanted.get("cross_attention_dim") if isinstance(wanted, dict) else None
    if width is not None and isinstance(model_width, int) and width != model_width:
        return (
            f"its cross-attention takes {width}-wide text features and the model's "
            f"{model_width} ({family.label}): a LoRA for another model family"
        )
    return None


_digests: dict[tuple[str, int, int], str] = {}


def lora_digest(source: str) -> str | None:
    """The sha256 of a LoRA's weights file (cached by path, size and mtime), or ``None`` for a
    hub id: part of the preset's version, so changing a LoRA file makes a new version."""
    if not source.startswith("/"):
        return None
    path = _weights(source).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    known = _digests.get(key)
    if known is None:
        digest = hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(1 << 22):
                digest.update(chunk)
        known = _digests[key] = digest.hexdigest()
    return known
