"""Brand looks from reference images: a preset's ``style:`` section, style codes, ``--sw``.

A **style code** is a short stable id of a set of reference images: 10 letters a-z and digits
2-7 (base32) of the sha256 over the brand, the workspace it is limited to (if any) and the
sorted sha256s of the clean reference images. The same images for the same brand always give
the same code; a changed image gives another. Codes come from two places:

- a preset's own ``style.references`` (image files beside the preset; their code is computed
  when the preset is loaded, and their digests are part of the preset's version);
- codes an admin registers (``onbrand style create``; ``core.service.styles``), stored by content
  hash in the image store, limited to one brand (and optionally one workspace), retired when the
  brand no longer wants them. A preset may name one as its ``style.code``.

``--sw`` is Midjourney's style weight, 0-1000 with 100 the default. onbrand maps it onto the
IP-Adapter scale: ``scale = style.weight × sw / 100``, and the result must lie in the preset's
``user_range`` (never clamped: a weight outside it is refused, naming the ``--sw`` values that
are allowed). ``locked: true`` refuses ``--style`` codes and ``--sw``; ``user_codes: false`` (the
default) refuses user codes but keeps ``--sw``.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.domain import ImagineRequest
from core.errors import LockedSetting, PresetError

__all__ = [
    "CODE_LENGTH",
    "TINY_ADAPTER",
    "StyleAdapterSpec",
    "StyleCodeInfo",
    "StyleSpec",
    "adapter_of",
    "style_code",
    "style_fields",
]

CODE_LENGTH = 10
DEFAULT_SW = 100
# The bundled tiny checkpoint's IP-Adapter (scripts/tiny_looks.py): the adapter a preset on
# engine.model "tiny" gets when it names none.
TINY_ADAPTER = ("tiny", "ip_adapter", "ip-adapter_tiny.safetensors", "image_encoder")

_Text = Annotated[str, Field(min_length=1)]


@dataclass(frozen=True)
class StyleCodeInfo:
    """A registered style code (``core.service.styles``): what it is, whose, and its state."""

    code: str
    brand: str
    label: str
    references: tuple[tuple[str, str], ...]  # (sha256, image-store key) of each clean image
    created_by: str
    created_at: datetime
    workspace: tuple[str, str] | None = None  # (platform, workspace id) when limited to one
    retired_at: datetime | None = None
    retired_by: str | None = None

    @property
    def refs(self) -> tuple[str, ...]:
        """The references as ``Params.style_refs`` names them."""
        return tuple(f"store:{key}" for _, key in self.references)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class StyleAdapterSpec(_Strict):
    """The IP-Adapter that turns reference images into a look, as diffusers'
    ``load_ip_adapter`` takes it: a folder (relative to the preset) or a hub id in the local
    cache, the subfolder and weight file in it, and the image encoder's folder."""

    model: _Text
    subfolder: str = ""
    weight_name: _Text = "ip-adapter_sd15.safetensors"
    image_encoder: _Text = "image_encoder"


class StyleSpec(_Strict):
    """``style:`` in a preset (see the module docstring)."""

    references: tuple[_Text, ...] = ()  # image files, relative to the preset file
    code: str | None = None  # a registered style code, instead of references
    weight: float = Field(default=0.6, ge=0.0, le=2.0)  # the IP-Adapter scale at --sw 100
    user_range: tuple[float, float] = (0.0, 1.0)  # scales --sw may reach
    user_codes: bool = False  # users may pick registered codes of the brand (--style CODE)
    locked: bool = False  # --style CODE and --sw refused
    adapter: StyleAdapterSpec | None = None  # default: the bundled one for model "tiny"

    @model_validator(mode="after")
    def _consistent(self) -> StyleSpec:
        if self.references and self.code:
            raise ValueError("give references or a code, not both")
        if len(self.references) > 8:
            raise ValueError(f"at most 8 references (found {len(self.references)})")
        low, high = self.user_range
        if not 0.0 <= low <= high <= 2.0:
            raise ValueError(f"user_range [{low}, {high}] must be two scales 0 ≤ low ≤ high ≤ 2")
        if (self.references or self.code) and not low <= self.weight <= high:
            raise ValueError(f"weight {self.weight} must lie inside user_range [{low}, {high}]")
        if self.code is not None and not _is_code(self.code):
            raise ValueError(
                f"code {self.code!r} is not a style code (10 letters a-z and digits 2-7)"
            )
        return self


def _is_code(text: str) -> bool:
    return len(text) == CODE_LENGTH and all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in text)


def style_code(digests: Iterable[str], brand: str, workspace: str | None = None) -> str:
    """The style code of reference images with these sha256 ``digests`` (order-free)."""
    text = "\n".join(["onbrand-style-v1", brand.casefold(), workspace or "", *sorted(digests)])
    raw = hashlib.sha256(text.encode("utf-8")).digest()
    return base64.b32encode(raw).decode("ascii").lower()[:CODE_LENGTH]


def _sw_bounds(spec: StyleSpec) -> tuple[int, int]:
    low, high = spec.user_range
    if spec.weight == 0:
        return (0, 1000)
    return (
        max(0, math.ceil(low / spec.weight * DEFAULT_SW - 1e-9)),
        min(1000, math.floor(high / spec.weight * DEFAULT_SW + 1e-9)),
    )


class StyledPreset(Protocol):
    """What ``style_fields`` reads of a ``core.brand.presets.Preset``."""

    @property
    def name(self) -> str: ...
    @property
    def brand(self) -> str: ...
    @property
    def style(self) -> StyleSpec | None: ...
    @property
    def style_code(self) -> str | None: ...
    @property
    def style_refs(self) -> tuple[str, ...]: ...
    @property
    def style_adapter(self) -> tuple[str, ...]: ...


def style_fields(request: ImagineRequest, of: StyledPreset) -> dict[str, Any]:
    """``Params``' style fields for ``request`` under preset ``of`` (``{}``: no style).

    The preset's own code and references (its reference files as ``file:<path>``) are used
    unless the request names another code; a registered code gets its references from the
    service (``core.service.styles``)."""
    spec, preset, brand = of.style, of.name, of.brand
    who = f"the {brand} brand (preset {preset})"
    if request.style_code or request.style_weight is not None:
        if spec is None or not (spec.references or spec.code or spec.user_codes):
            raise PresetError(
                f"Preset {preset} has no reference style, so --style codes and --sw do "
                "nothing here; remove them (or ask an admin for a preset with a style)."
            )
        if spec.locked:
            raise LockedSetting(
                f"The style is locked by {who}; remove --style and --sw and try again."
            )
    if spec is None:
        return {}
    code, refs = (spec.code, ()) if spec.code else (of.style_code, of.style_refs)
    if request.style_code and request.style_code != code:
        if not spec.user_codes:
            raise LockedSetting(
                f"{who.capitalize()} allows no other style codes; remove --style "
                f"{request.style_code} and try again."
            )
        code, refs = request.style_code, ()
    if code is None:
        return {}
    sw = DEFAULT_SW if request.style_weight is None else request.style_weight
    scale = round(spec.weight * sw / DEFAULT_SW, 4)
    low, high = spec.user_range
    if not low - 1e-9 <= scale <= high + 1e-9:
        sw_low, sw_high = _sw_bounds(spec)
        raise PresetError(
            f"--sw {sw} gives style weight {scale:g}, outside {low:g}-{high:g} that {who} "
            f"allows; use --sw {sw_low} to {sw_high}."
        )
    if not of.style_adapter:
        raise PresetError(f"Preset {preset} names no style.adapter; an admin must add one.")
    return {
        "style_code": code,
        "style_weight": scale,
        "style_refs": refs,
        "style_adapter": of.style_adapter,
    }


def adapter_of(spec: StyleSpec, model: str, base: Path) -> tuple[str, ...]:
    """The adapter as the engine takes it: (source, subfolder, weight file, image encoder),
    a relative folder resolved against the preset's ``base`` (``tiny``: the bundled
    checkpoint's, found by the engine); ``()`` when there is none."""
    if spec.adapter is None:
        return TINY_ADAPTER if model == "tiny" else ()
    a = spec.adapter
    source = a.model
    if a.model != "tiny" and ((base / a.model).exists() or a.model.startswith((".", "/", "~"))):
        source = str((base / Path(a.model).expanduser()).resolve())
    return (source, a.subfolder, a.weight_name, a.image_encoder)
