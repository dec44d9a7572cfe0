"""Placements: the files a campaign pack makes from one image (``onbrand pack``).

A placement set is YAML (``placements.yaml`` beside this module holds onbrand's defaults)::

    placements:
      story-reel:
        size: [1080, 1920]
        format: jpeg            # png, jpeg or webp
        max_bytes: 8000000      # the file must not be larger
        safe: {top: 0.14, bottom: 0.2, left: 0.06, right: 0.06}
        watermark: {corner: top-right, scale: 0.14}
        no_logo: false

``safe`` gives, per edge, the fraction of the picture kept clear of the subject and the logo (a
story's UI bands). Every problem is reported with the file, the line and the key, through the
preset files' loader (the same limits on aliases and nesting).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.brand.preset_files import _describe, _format_loc, _line_of, _read_yaml
from core.errors import PresetError

__all__ = [
    "DEFAULT_PLACEMENTS_FILE",
    "Placement",
    "SafeZone",
    "WatermarkRule",
    "default_placements",
    "parse_placements",
    "placements_for",
    "preset_placements_file",
]

DEFAULT_PLACEMENTS_FILE: Final = Path(__file__).with_name("placements.yaml")
MAX_SIDE: Final = 4096
_NAME = r"^[a-z0-9][a-z0-9-]{0,39}$"

Format = Literal["png", "jpeg", "webp"]
Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
EXTENSIONS: Final[Mapping[str, str]] = {"png": "png", "jpeg": "jpg", "webp": "webp"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_Fraction = Annotated[float, Field(ge=0.0, lt=0.45)]


class SafeZone(_Strict):
    """Fractions of each edge kept clear of the subject and the logo."""

    top: _Fraction = 0.0
    right: _Fraction = 0.0
    bottom: _Fraction = 0.0
    left: _Fraction = 0.0

    def as_tuple(self) -> tuple[float, float, float, float]:
        """(top, right, bottom, left), CSS order."""
        return self.top, self.right, self.bottom, self.left


class WatermarkRule(_Strict):
    corner: Corner = "bottom-right"
    scale: float = Field(default=0.12, gt=0.0, le=0.5)  # × the safe area's width


class _PlacementSpec(_Strict):
    size: tuple[int, int]
    format: Format = "jpeg"
    max_bytes: int = Field(default=8_000_000, ge=10_000, le=100_000_000)
    safe: SafeZone = SafeZone()
    watermark: WatermarkRule = WatermarkRule()
    no_logo: bool = False

    @field_validator("size")
    @classmethod
    def _size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not all(16 <= side <= MAX_SIDE for side in value):
            raise ValueError(f"each side must be 16 to {MAX_SIDE} pixels, e.g. [1080, 1080]")
        return value


class Placement(_PlacementSpec):
    """One placement: its name, exact pixel size, file format and limits."""

    name: str = Field(pattern=_NAME)

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


class _SetSpec(_Strict):
    placements: dict[Annotated[str, Field(pattern=_NAME)], _PlacementSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _few(self) -> _SetSpec:
        if len(self.placements) > 50:
            raise ValueError("a placement set may name at most 50 placements")
        return self


def parse_placements(text: str, source: str = "<string>") -> dict[str, Placement]:
    """The placements in YAML ``text``, by name, in file order; ``PresetError`` lists every
    problem as ``source:line: key.path: what to change``."""
    try:
        root, data = _read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise PresetError(
            f"Invalid placements:\n- {where}: invalid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    if not isinstance(data, dict):
        raise PresetError(
            f"Invalid placements:\n- {source}: a placement set is a mapping with `placements:`"
        )
    try:
        spec = _SetSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc, message = _describe(error)
            line = _line_of(root, loc)
            if loc and loc[-1] == "[key]":
                loc, message = loc[:-1], "a placement name is 1-40 of a-z, 0-9 and '-'"
                line = _key_line(root, loc)
            elif error["type"] == "extra_forbidden":
                model = _PlacementSpec if len(loc) == 3 else _MODELS.get(str(loc[-2]), _SetSpec)
                allowed = ", ".join(model.model_fields)
                message = f"unknown key {loc[-1]!r}; allowed keys here: {allowed}"
            where = f"{source}:{line}" if line else source
            problems.append(f"- {where}: {_format_loc(loc)}: {message}")
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        raise PresetError(f"Invalid placements ({count}):\n" + "\n".join(problems)) from None
    return {
        name: Placement(name=name, **dict(placement)) for name, placement in spec.placements.items()
    }


_MODELS: Final[Mapping[str, type[BaseModel]]] = {"safe": SafeZone, "watermark": WatermarkRule}


def _key_line(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The line of the key ``loc[-1]`` (not of its value)."""
    parent = _line_of(root, loc[:-1])
    node = root
    for part in loc[:-1]:
        if not isinstance(node, yaml.MappingNode):
            return parent
        node = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
    if isinstance(node, yaml.MappingNode):
        for key, _ in node.value:
            if getattr(key, "value", None) == loc[-1]:
                return int(key.start_mark.line) + 1
    return parent


def default_placements() -> dict[str, Placement]:
    """onbrand's shipped placement set."""
    path = DEFAULT_PLACEMENTS_FILE
    return parse_placements(path.read_text(encoding="utf-8"), str(path))


MAX_PLACEMENTS_BYTES: Final = 64 * 1024


def preset_placements_file(preset_path: str | None, preset_name: str) -> Path | None:
    """Where a preset's own placement set lives: ``placements/<preset name>.yaml`` in the
    preset's folder (a subfolder, so the preset loader never takes it for a preset)."""
    if preset_path is None:
        return None
    return Path(preset_path).parent / "placements" / f"{preset_name}.yaml"


def placements_for(preset_path: str | None, preset_name: str) -> dict[str, Placement]:
    """The preset's own placement set when it has one, else the shipped defaults;
    ``PresetError`` (file, line, key) when its file is invalid."""
    path = preset_placements_file(preset_path, preset_name)
    if path is None or not path.is_file():
        return default_placements()
    data = path.read_bytes()[: MAX_PLACEMENTS_BYTES + 1]
    if len(data) > MAX_PLACEMENTS_BYTES:
        raise PresetError(f"Invalid placements:\n- {path}: over {MAX_PLACEMENTS_BYTES:,} bytes")
    return parse_placements(data.decode("utf-8", errors="replace"), str(path))
