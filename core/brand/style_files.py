"""A preset's ``style:`` checked against the files and the model it names, at load time.

Each reference must be a readable PNG, JPEG or WebP file beside the preset (its sha256 becomes
part of the preset's version and of its style code); the IP-Adapter's weight file and image
encoder must be where the preset says (a hub id is checked when the engine loads it); the
engine must be diffusers and the model a UNet family (SD 1.x/2.x, SDXL) when it is known.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from core.brand.families import family_of, model_folder

if TYPE_CHECKING:
    from core.brand.presets import Preset

__all__ = ["MAX_REFERENCE_BYTES", "style_problems"]

MAX_REFERENCE_BYTES = 20 * 1024 * 1024
_FORMATS = ("PNG", "JPEG", "WEBP")

Problem = tuple[tuple[int | str, ...], str]


def _reference(path: Path) -> tuple[str | None, str | None]:
    """(sha256, None) for a usable reference image, else (None, why)."""
    if not path.is_file():
        return None, f"reference image {path} not found"
    if path.stat().st_size > MAX_REFERENCE_BYTES:
        return None, f"reference image {path.name} is over {MAX_REFERENCE_BYTES >> 20} MB"
    data = path.read_bytes()
    try:
        with Image.open(path, formats=_FORMATS) as image:
            image.verify()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None, f"reference image {path.name} is not a PNG, JPEG or WebP image"
    return hashlib.sha256(data).hexdigest(), None


def _adapter_problem(source: str, subfolder: str, weights: str, encoder: str) -> str | None:
    folder = model_folder("tiny") if source == "tiny" else Path(source)
    if folder is None or (not source.startswith("/") and source != "tiny"):
        return None  # a hub id: the engine checks it when it loads
    where = folder / subfolder
    if not (where / weights).is_file():
        return f"IP-Adapter weights {where / weights} not found"
    if not (where / encoder / "config.json").is_file():
        return f"IP-Adapter image encoder {where / encoder} not found (no config.json)"
    return None


def style_problems(preset: Preset) -> tuple[list[Problem], tuple[str, ...]]:
    """The problems of ``preset.style`` (key path, why) and the references' sha256s."""
    style = preset.style
    if style is None:
        return [], ()
    problems: list[Problem] = []
    engine = preset.engine
    if engine.kind != "diffusers":
        problems.append(
            ((("style",)), f"only the diffusers engine takes reference images, not {engine.kind}")
        )
        return problems, ()
    family = family_of(engine.model)
    if family is not None and family.family not in ("sd1", "sd2", "sdxl"):
        problems.append(
            (
                ("style",),
                f"{engine.model!r} is a {family.label} model; reference images (IP-Adapter) run "
                "on SD 1.x/2.x and SDXL models here: remove style or pick such a model",
            )
        )
    adapter = preset.style_adapter
    if not adapter:
        problems.append(
            (
                ("style", "adapter"),
                f"name the IP-Adapter for {engine.model!r} (style.adapter: model, subfolder, "
                "weight_name, image_encoder); only the bundled tiny model has a default",
            )
        )
    elif (why := _adapter_problem(*adapter)) is not None:
        problems.append((("style", "adapter"), why))
    digests: list[str] = []
    for i, ref in enumerate(preset.style_refs):
        digest, why = _reference(Path(ref.removeprefix("file:")))
        if why is not None:
            problems.append((("style", "references", i), why))
        elif digest is not None:
            digests.append(digest)
    return problems, tuple(digests)
