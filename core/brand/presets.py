"""Brand presets: load and validate YAML, then apply a preset to a request.

A preset file is validated against ``PresetSpec`` (unknown keys are errors). Every problem is
reported with the file, the line, the key path and what is allowed, so a brand manager can fix a
file without reading code. ``apply_preset`` is a pure function: request + preset → ``Params``.
Only the ``load_*``/``validate_files`` functions touch the file system.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.brand.policy import BannedTerms
from core.domain import ImagineRequest, Params
from core.errors import BlockedPrompt, LockedSetting, PresetError

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_N",
    "LOCKABLE",
    "RETIRED_MODELS",
    "EngineSpec",
    "Limits",
    "Preset",
    "PresetSpec",
    "Watermark",
    "apply_preset",
    "load_preset",
    "load_presets",
    "parse_preset",
    "validate_files",
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


class EngineSpec(_Strict):
    kind: Literal["diffusers", "openai", "fake"]
    model: _Text  # may be left out where the kind has a default (DEFAULT_MODELS)
    steps: int = Field(ge=1, le=200)
    guidance: float = Field(ge=0.0, le=30.0)
    strength: float = Field(default=0.6, gt=0.0, le=1.0)
    upscaler: str | None = None

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
    limits: Limits = Limits()

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

    @property
    def logo_path(self) -> Path | None:
        """The watermark logo, resolved against the preset file's folder."""
        if self.watermark is None:
            return None
        base = Path(self.source_path).parent if self.source_path else Path()
        return base / self.watermark.logo

    def is_locked(self, key: str) -> bool:
        return key in self.locked


# --- loading ---------------------------------------------------------------------------------


def content_version(text: str) -> str:
    """The preset version: first 12 hex digits of the SHA-256 of the file's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _line_of(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    nxt = k if isinstance(v, yaml.ScalarNode) and v.value == "" else v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            nxt = node.value[part] if part < len(node.value) else None
        node = nxt
    if node is not None:
        line = node.start_mark.line + 1
    return line


_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    (): PresetSpec,
    ("engine",): EngineSpec,
    ("watermark",): Watermark,
    ("limits",): Limits,
}


def _describe(error: Mapping[str, Any]) -> tuple[tuple[int | str, ...], str]:
    """A pydantic error → (location, one precise sentence)."""
    loc: tuple[int | str, ...] = tuple(error["loc"])
    kind, msg, value = error["type"], str(error["msg"]), error.get("input")
    if loc[:1] == ("aspect_ratios",) and len(loc) >= 3:
        if loc[2] == "[key]":
            return loc[:2], msg.removeprefix("Value error, ")
        return loc[:2], "must be [width, height] in pixels, e.g. [1024, 1024]"
    if kind == "extra_forbidden":
        model = _MODELS.get(tuple(str(p) for p in loc[:-1]))
        allowed = ", ".join(model.model_fields) if model else "none"
        return loc, f"unknown key {loc[-1]!r}; allowed keys here: {allowed}"
    if kind == "missing":
        return loc, "is required but missing"
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        if loc == ():  # model-level check: the only one is default_aspect
            return ("default_aspect",), msg
        return loc, msg
    if loc and loc[0] == "locked" and kind == "literal_error":
        return loc, f"{value!r} cannot be locked; lockable settings: {', '.join(LOCKABLE)}"
    return loc, f"{msg} (got {value!r})"


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _problems(text: str, source: str) -> tuple[Preset | None, list[str]]:
    """Parse and validate ``text``; return the preset or every problem, each prefixed."""
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [f"{where}: invalid YAML: {problem}"]
    if not isinstance(data, dict):
        return None, [f"{source}: a preset must be a YAML mapping of keys (name, brand, ...)"]
    problems = []
    for reserved in ("version", "source_text", "source_path"):
        if reserved in data:
            problems.append(
                f"{source}:{_line_of(root, (reserved,))}: {reserved}: is set by onbrand, "
                "remove it from the file"
            )
            del data[reserved]
    try:
        spec = PresetSpec.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc, message = _describe(error)
            line = _line_of(root, loc)
            where = f"{source}:{line}" if line else source
            problems.append(f"{where}: {_format_loc(loc)}: {message}")
        aspects, default = data.get("aspect_ratios"), data.get("default_aspect")
        reported = any(e["loc"] in ((), ("default_aspect",)) for e in exc.errors())
        if isinstance(aspects, dict) and aspects and default not in aspects and not reported:
            problems.append(
                f"{source}:{_line_of(root, ('default_aspect',))}: default_aspect: "
                f"{default!r} is not one of aspect_ratios ({', '.join(map(str, aspects))})"
            )
    if problems:
        return None, problems
    preset = Preset(**dict(spec), version=content_version(text), source_text=text, source_path=None)
    return preset, []


def _raise(problems: Sequence[str]) -> None:
    if problems:
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        raise PresetError(f"Invalid preset ({count}):\n" + "\n".join(f"- {p}" for p in problems))


def parse_preset(text: str, source: str = "<string>") -> Preset:
    """Validate preset YAML ``text``; ``PresetError`` lists every problem."""
    preset, problems = _problems(text, source)
    _raise(problems)
    assert preset is not None
    return preset


def _load(path: Path) -> tuple[Preset | None, list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path}: cannot read: {exc}"]
    preset, problems = _problems(text, str(path))
    if preset is None:
        return None, problems
    preset = preset.model_copy(update={"source_path": str(path)})
    logo = preset.logo_path
    if logo is not None and not logo.is_file():
        line = _line_of(yaml.compose(text, Loader=_UniqueKeyLoader), ("watermark", "logo"))
        return None, [
            f"{path}:{line}: watermark.logo: file {logo} not found "
            "(the path is relative to the preset file)"
        ]
    return preset, []


def load_preset(path: str | Path) -> Preset:
    """Read and validate one preset file; ``PresetError`` lists every problem."""
    preset, problems = _load(Path(path))
    _raise(problems)
    assert preset is not None
    return preset


def _preset_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _load_many(paths: Iterable[Path]) -> tuple[dict[str, Preset], list[str]]:
    presets: dict[str, Preset] = {}
    problems: list[str] = []
    for path in paths:
        preset, errors = _load(path)
        problems += errors
        if preset is None:
            continue
        if preset.name in presets:
            first = presets[preset.name].source_path
            problems.append(f"{path}: name: preset name {preset.name!r} is already used by {first}")
            continue
        presets[preset.name] = preset
    return presets, problems


def load_presets(directory: str | Path) -> dict[str, Preset]:
    """Every ``*.yaml``/``*.yml`` preset in ``directory`` by name; duplicate names are errors."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PresetError(f"Preset folder {directory} does not exist.")
    presets, problems = _load_many(_preset_files(directory))
    _raise(problems)
    return presets


def validate_files(paths: Iterable[str | Path]) -> list[str]:
    """Every problem in every file (each prefixed with its file name); empty means valid.

    A folder stands for the preset files in it. Names must be unique across all files.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        files += _preset_files(p) if p.is_dir() else [p]
    return _load_many(files)[1]


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
    )
