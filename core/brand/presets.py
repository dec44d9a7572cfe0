"""Brand presets: what a preset may say (``PresetSpec``, validated), and applying one to a
request.

A preset file is validated against ``PresetSpec`` (unknown keys are errors); reading the YAML and
locating every problem in it is ``core.brand.preset_files``. ``apply_preset`` is a pure function:
request + preset → ``Params``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from core.brand.families import ModelFamily
from core.brand.lora_files import resolve_lora
from core.brand.policy import BannedTerms
from core.brand.styles import StyleSpec, adapter_of, style_code, style_fields
from core.domain import ImagineRequest, Params
from core.errors import BlockedPrompt, LockedSetting, PresetError

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_N",
    "LOCKABLE",
    "RETIRED_MODELS",
    "EngineSpec",
    "ImagePromptSpec",
    "Limits",
    "LoraSpec",
    "Preset",
    "PresetSpec",
    "ProductPlacement",
    "ProductSpec",
    "Watermark",
    "apply_preset",
]

LockKey = Literal["engine", "negative_prompt", "steps", "aspect", "seed", "n", "style"]
LOCKABLE: tuple[str, ...] = ("engine", "negative_prompt", "steps", "aspect", "seed", "n", "style")
DEFAULT_N = 4
PROMPT_SLOT = "{prompt}"

_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_ASPECT = re.compile(r"^([1-9][0-9]*):([1-9][0-9]*)$")
_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
_MIN_SIDE, _MAX_SIDE = 32, 4096
_RATIO_TOLERANCE = 0.05  # a size may differ from its nominal ratio by up to 5 %

_Text = Annotated[str, Field(min_length=1)]

# The model an engine kind uses when a preset names none. Diffusers has no default: a preset must
# say which checkpoint carries its look.
DEFAULT_MODELS: Mapping[str, str] = {"openai": "gpt-image-2.5-sunburst", "fake": "fake"}
# Models their provider has switched off (from the openai SDK's ``ImageModel`` notes): a preset
# naming one is refused at load, not when a job fails at the API.
RETIRED_MODELS: Mapping[str, str] = {
    "gpt-image-1": "was shut down by OpenAI on 2026-10-23",
    "dall-e-2": "was retired by OpenAI on 2026-05-12",
    "dall-e-3": "was retired by OpenAI on 2026-05-12",
}


def _check_aspect_key(key: str) -> str:
    if not _ASPECT.fullmatch(key):
        raise ValueError(f"{key!r} is not an aspect ratio; write it as W:H, e.g. '16:9'")
    return key


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    w, h = size
    if any(side % 8 or not _MIN_SIDE <= side <= _MAX_SIDE for side in size):
        raise ValueError(
            f"size {w}x{h} is not allowed; width and height must be multiples of 8 "
            f"between {_MIN_SIDE} and {_MAX_SIDE}"
        )
    return size


_AspectKey = Annotated[str, AfterValidator(_check_aspect_key)]
_Size = Annotated[tuple[int, int], AfterValidator(_check_size)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class LoraSpec(_Strict):
    """A LoRA the brand approved: a .safetensors file or folder (relative to the preset file) or
    a hub id in the local cache, and its weight. Users cannot change a preset's LoRAs."""

    model: _Text
    weight: float = Field(default=1.0, ge=-2.0, le=2.0)


class EngineSpec(_Strict):
    kind: Literal["diffusers", "openai", "fake"]
    model: _Text  # may be left out where the kind has a default (DEFAULT_MODELS)
    steps: int = Field(ge=1, le=200)
    guidance: float = Field(ge=0.0, le=30.0)
    strength: float = Field(default=0.6, gt=0.0, le=1.0)
    upscaler: str | None = None
    loras: tuple[LoraSpec, ...] = ()

    @model_validator(mode="after")
    def _loras_need_diffusers(self) -> EngineSpec:
        if self.loras and self.kind != "diffusers":
            raise ValueError(f"loras: only the diffusers engine takes LoRAs, not {self.kind}")
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "model" not in data:
            default = DEFAULT_MODELS.get(str(data.get("kind")))
            if default is not None:
                return {**data, "model": default}
        return data

    @field_validator("model")
    @classmethod
    def _current_model(cls, v: str) -> str:
        if v in RETIRED_MODELS:
            raise ValueError(
                f"{v!r} {RETIRED_MODELS[v]}; name a current model such as "
                f"{DEFAULT_MODELS['openai']!r}, or leave model out for the engine's default"
            )
        return v


class Watermark(_Strict):
    logo: _Text  # relative to the preset file
    position: Literal["top-left", "top-right", "bottom-left", "bottom-right", "center"] = (
        "bottom-right"
    )
    opacity: float = Field(default=0.8, ge=0.0, le=1.0)
    scale: float = Field(default=0.12, gt=0.0, le=1.0)


_Anchor = Literal[
    "center", "top", "bottom", "left", "right", "top-left", "top-right", "bottom-left",
    "bottom-right",
]  # fmt: skip
_Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]


class ProductPlacement(_Strict):
    """Where a product goes on the canvas: its box is ``scale`` × the canvas inside ``margin``
    (a share of the shorter side), anchored at ``anchor``."""

    anchor: _Anchor = "bottom"
    scale: float = Field(default=0.6, gt=0.0, le=1.0)
    margin: float = Field(default=0.06, ge=0.0, lt=0.5)


class ProductSpec(ProductPlacement):
    """``product:`` product shots (``--product``): allowed or not, the placement (with
    per-aspect overrides) and the corners the watermark may move to, clear of the product."""

    allowed: bool = True
    aspects: dict[_AspectKey, ProductPlacement] = Field(default_factory=dict)
    watermark_corners: tuple[_Corner, ...] = (
        "bottom-right", "bottom-left", "top-right", "top-left",
    )  # fmt: skip

    def placement(self, aspect: str) -> ProductPlacement:
        return self.aspects.get(aspect, self)


class ImagePromptSpec(_Strict):
    """``image_prompt:`` image prompts (``--image``): allowed or not, the default image weight
    ``iw`` and its bounds, or ``locked`` to the default (``--iw`` then refused)."""

    allowed: bool = True
    iw: float = Field(default=1.0, ge=0.0, le=3.0)
    iw_min: float = Field(default=0.0, ge=0.0, le=3.0)
    iw_max: float = Field(default=3.0, ge=0.0, le=3.0)
    locked: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> ImagePromptSpec:
        if not self.iw_min <= self.iw <= self.iw_max:
            raise ValueError(
                f"iw {self.iw} must lie between iw_min {self.iw_min} and iw_max {self.iw_max}"
            )
        return self


class AiBadge(_Strict):
    """A visible "AI" label on every image, for placements that need one."""

    position: Literal["top-left", "top-right", "bottom-left", "bottom-right"] = "top-left"
    size: float = Field(default=0.08, gt=0.0, le=0.5)  # badge height ÷ the image's shorter side


class Limits(_Strict):
    images_per_user_per_day: int = Field(default=200, ge=1)
    queued_per_user: int = Field(default=3, ge=1)


class PresetSpec(_Strict):
    """Exactly what a preset YAML file may contain."""

    name: str
    brand: _Text
    description: str = ""
    prompt: str
    negative_prompt: str = ""
    banned_terms: tuple[str, ...] = ()
    aspect_ratios: dict[_AspectKey, _Size]
    default_aspect: str
    engine: EngineSpec
    locked: tuple[LockKey, ...] = ()
    palette: tuple[str, ...] = ()
    watermark: Watermark | None = None
    ai_badge: AiBadge | None = None
    limits: Limits = Limits()
    image_prompt: ImagePromptSpec = ImagePromptSpec()
    product: ProductSpec = ProductSpec()
    style: StyleSpec | None = None  # reference images / style codes (core.brand.styles)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v) or len(v) > 64:
            raise ValueError(
                f"{v!r} is not a valid preset name; use lowercase letters, digits and single "
                "hyphens (a-z, 0-9, -), at most 64 characters, e.g. 'acme-spring'"
            )
        return v

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        count = v.count(PROMPT_SLOT)
        if count != 1:
            raise ValueError(
                f"must contain {PROMPT_SLOT} exactly once (found {count}), "
                f'e.g. "{PROMPT_SLOT}, flat vector illustration"'
            )
        return v

    @field_validator("banned_terms")
    @classmethod
    def _banned(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        BannedTerms(v)  # raises ValueError for a term with no letters or digits
        return v

    @field_validator("aspect_ratios")
    @classmethod
    def _aspects(cls, v: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        if not v:
            raise ValueError('must list at least one aspect ratio, e.g. {"1:1": [1024, 1024]}')
        problems = []
        for key, (w, h) in v.items():
            m = _ASPECT.fullmatch(key)
            assert m is not None  # checked by _AspectKey
            nominal = int(m[1]) / int(m[2])
            if abs(w / h - nominal) / nominal > _RATIO_TOLERANCE:
                problems.append(
                    f"{key}: size {w}x{h} has ratio {w / h:.3f}, more than "
                    f"{_RATIO_TOLERANCE:.0%} away from {key} ({nominal:.3f})"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("locked")
    @classmethod
    def _locked(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        dupes = sorted({k for k in v if v.count(k) > 1})
        if dupes:
            raise ValueError(f"lists {', '.join(dupes)} more than once")
        return v

    @field_validator("palette")
    @classmethod
    def _palette(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in v if not _COLOUR.fullmatch(c)]
        if bad:
            shown = ", ".join(repr(c) for c in bad)
            raise ValueError(f"{shown} not a colour; write colours as #RRGGBB, e.g. '#00A6A6'")
        return v

    @model_validator(mode="after")
    def _default_aspect(self) -> PresetSpec:
        if self.aspect_ratios and self.default_aspect not in self.aspect_ratios:
            raise ValueError(
                f"{self.default_aspect!r} is not one of aspect_ratios "
                f"({', '.join(self.aspect_ratios)})"
            )
        return self


class Preset(PresetSpec):
    """A validated preset, with where it came from and its version (hash of its text)."""

    version: str
    source_text: str
    source_path: str | None = None
    # The family of engine.model when the file was loaded and the model was on this machine
    # (core.brand.families); None: unknown, the engine checks it when it loads the model.
    model_family: ModelFamily | None = None
    style_digests: tuple[str, ...] = ()  # sha256 of each style.references file, when loaded

    @property
    def style_refs(self) -> tuple[str, ...]:
        """The preset's own reference images, as ``file:<absolute path>``."""
        base = Path(self.source_path).parent if self.source_path else Path()
        refs = self.style.references if self.style else ()
        return tuple(f"file:{(base / ref).resolve()}" for ref in refs)

    @property
    def style_code(self) -> str | None:
        """The style code of the preset's own references (``None`` without any)."""
        return style_code(self.style_digests, self.brand) if self.style_digests else None

    @property
    def style_adapter(self) -> tuple[str, ...]:
        base = Path(self.source_path).parent if self.source_path else Path()
        return adapter_of(self.style, self.engine.model, base) if self.style else ()

    @property
    def lora_sources(self) -> tuple[tuple[str, float], ...]:
        """(source, weight) of each LoRA, paths resolved against the preset file's folder."""
        base = Path(self.source_path).parent if self.source_path else Path()
        return tuple((resolve_lora(lora.model, base), lora.weight) for lora in self.engine.loras)

    @property
    def logo_path(self) -> Path | None:
        """The watermark logo, resolved against the preset file's folder."""
        if self.watermark is None:
            return None
        base = Path(self.source_path).parent if self.source_path else Path()
        return base / self.watermark.logo

    def is_locked(self, key: str) -> bool:
        return key in self.locked


# --- applying --------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _matcher(terms: tuple[str, ...]) -> BannedTerms:
    return BannedTerms(terms)


def _locked(preset: Preset, what: str, flag: str) -> LockedSetting:
    return LockedSetting(
        f"{what} locked by the {preset.brand} brand (preset {preset.name}); "
        f"remove {flag} and try again."
    )


def _default_seed() -> int:
    return secrets.randbelow(2**32)


def apply_preset(
    request: ImagineRequest,
    preset: Preset,
    *,
    global_banned: Sequence[str] = (),
    seed_source: Callable[[], int] | None = None,
) -> Params:
    """Resolve ``request`` against ``preset``: exactly what the engine will run.

    Raises ``BlockedPrompt`` (banned term in the prompt or a ``--no`` term), ``LockedSetting``
    (the user changes something the brand locked) or ``PresetError`` (an aspect ratio the preset
    does not offer). Which preset a request runs under (``--preset``, the channel's binding and
    whether it is locked) is the service's call, made before this.
    """
    banned = _matcher(tuple(global_banned) + preset.banned_terms)
    for text in (request.prompt, *request.no):
        term = banned.find(text)
        if term is not None:
            raise BlockedPrompt(term)

    locked = preset.is_locked
    engine = preset.engine

    if request.style_raw and locked("style"):
        raise _locked(preset, "The style is", "--style raw")
    if request.no and locked("negative_prompt"):
        raise _locked(preset, "The negative prompt is", "--no")
    family = preset.model_family
    if request.no and family is not None and not family.negative_prompt:
        raise PresetError(
            f"{preset.brand}'s model (preset {preset.name}) is a {family.label} model and takes "
            "no negative prompt; remove --no and say what to show instead."
        )
    if request.steps is not None and request.steps != engine.steps and locked("steps"):
        raise _locked(preset, f"Steps are ({engine.steps})", "--steps")
    if request.seed is not None and locked("seed"):
        raise _locked(preset, "The seed is", "--seed")
    if request.n is not None and request.n != DEFAULT_N and locked("n"):
        raise _locked(preset, f"The number of images is ({DEFAULT_N})", "--n")
    aspect = request.aspect or preset.default_aspect
    if aspect != preset.default_aspect and locked("aspect"):
        raise _locked(preset, f"The aspect ratio is ({preset.default_aspect})", "--ar")
    if aspect not in preset.aspect_ratios:
        raise PresetError(
            f"Aspect ratio {aspect} is not available for {preset.brand} (preset {preset.name}); "
            f"use one of: {', '.join(preset.aspect_ratios)}."
        )
    width, height = preset.aspect_ratios[aspect]

    prompt = request.prompt.strip()
    final_prompt = prompt if request.style_raw else preset.prompt.replace(PROMPT_SLOT, prompt)
    negative = ", ".join(
        part for part in (preset.negative_prompt.strip(), *(t.strip() for t in request.no)) if part
    )
    seed = request.seed if request.seed is not None else (seed_source or _default_seed)()

    return Params(
        prompt=final_prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        steps=request.steps if request.steps is not None else engine.steps,
        guidance=engine.guidance,
        seed=seed,
        n=request.n if request.n is not None else DEFAULT_N,
        engine=engine.kind,
        model=engine.model,
        preset=preset.name,
        preset_version=preset.version,
        strength=engine.strength,
        upscaler=engine.upscaler,
        loras=preset.lora_sources,
        **style_fields(request, preset),
    )
