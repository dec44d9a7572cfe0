"""Brand preset files: YAML → a validated ``Preset``, or every problem in it.

Every problem is reported with the file, the line, the key path and what is allowed, so a brand
manager can fix a file without reading code. ``parse_preset`` reads text; only the
``load_*``/``validate_files`` functions touch the file system.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import BaseModel, ValidationError

from core.brand.families import family_of, model_folder, refusals
from core.brand.logo import LogoError, preset_logo
from core.brand.lora_files import LoraFileError, lora_digest, lora_mismatch
from core.brand.presets import (
    LOCKABLE,
    EngineSpec,
    Limits,
    LoraSpec,
    Preset,
    PresetSpec,
    Watermark,
)
from core.brand.style_files import style_problems
from core.brand.styles import StyleSpec
from core.errors import PresetError

__all__ = [
    "MAX_PRESET_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "content_version",
    "load_preset",
    "load_presets",
    "model_family",
    "parse_preset",
    "validate_files",
]


def content_version(text: str) -> str:
    """The preset version: first 12 hex digits of the SHA-256 of the file's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# A preset has about a hundred YAML values; aliases may repeat a few, not multiply them. Past this
# many values (aliases counted at their full size) a document is refused before it is built, so a
# "billion laughs" file of a kilobyte cannot take minutes and gigabytes to expand.
MAX_YAML_VALUES = 10_000
MAX_YAML_DEPTH = 32  # a preset nests three deep (aspect_ratios → "1:1" → [w, h])
# A preset file is a kilobyte or two; a longer one is refused before it is parsed.
MAX_PRESET_BYTES = 256 * 1024


class _PresetLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last), and a
    document whose aliases expand past ``MAX_YAML_VALUES`` values or refer to themselves, or
    whose values nest deeper than ``MAX_YAML_DEPTH``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._values = 0  # values composed so far, each alias counted at its expanded size
        self._sizes: dict[int, int] = {}  # expanded size of nodes an alias reached, by id
        self._open: set[str] = set()  # anchors whose value is being composed
        self._depth = 0  # how deep the node being composed is nested

    def _expanded(self, node: yaml.Node) -> int:
        known = self._sizes.get(id(node))
        if known is None:
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            else:
                children = []
            known = 1 + sum(self._expanded(child) for child in children)
            self._sizes[id(node)] = known
        return known

    def _refuse(self, problem: str, mark: Any) -> NoReturn:
        raise yaml.composer.ComposerError(None, None, problem, mark)

    def _count(self, values: int, mark: Any) -> None:
        self._values += values
        if self._values > MAX_YAML_VALUES:
            self._refuse(
                f"aliases (*name) expand this document past {MAX_YAML_VALUES:,} values; "
                "write the values out instead of nesting aliases",
                mark,
            )

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                self._refuse(
                    f"alias *{event.anchor} is used inside its own anchor &{event.anchor}",
                    event.start_mark,
                )
            node = super().compose_node(parent, index)
            if node is not None:
                self._count(self._expanded(node), event.start_mark)
            return node
        self._count(1, event.start_mark)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            self._refuse(f"values are nested more than {MAX_YAML_DEPTH} deep", event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._open.discard(anchor or "")
            self._depth -= 1

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


def _read_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The composed root node (for line numbers) and the data, from one pass of the loader."""
    loader = _PresetLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return root, data


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
    ("engine", "loras"): LoraSpec,
    ("style",): StyleSpec,
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
        model = _MODELS.get(tuple(str(p) for p in loc[:-1] if not isinstance(p, int)))
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
        root, data = _read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [f"{where}: invalid YAML: {problem}"]
    if not isinstance(data, dict):
        return None, [f"{source}: a preset must be a YAML mapping of keys (name, brand, ...)"]
    problems = []
    for reserved in ("version", "source_text", "source_path", "model_family"):
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
    if path.exists() and not path.is_file():  # a pipe or a device would block or never end
        return None, [f"{path}: is not a regular file; give a preset's .yaml file"]
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_PRESET_BYTES + 1)
        if len(raw) > MAX_PRESET_BYTES:
            return None, [
                f"{path}: is longer than {MAX_PRESET_BYTES:,} bytes; a preset is a short YAML "
                "file, is this the right file?"
            ]
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path}: cannot read: {exc}"]
    preset, problems = _problems(text, str(path))
    if preset is None:
        return None, problems
    preset = preset.model_copy(update={"source_path": str(path)})
    try:
        preset_logo(preset)
    except LogoError as exc:
        line = _line_of(_read_yaml(text)[0], ("watermark", "logo"))
        return None, [f"{path}:{line}: watermark.logo: {exc}"]
    problems = _family_problems(preset, text, path) + _lora_problems(preset, text, path)
    found, references = style_problems(preset)
    root = _read_yaml(text)[0] if found else None
    problems += [f"{path}:{_line_of(root, loc)}: {_format_loc(loc)}: {why}" for loc, why in found]
    if problems:
        return None, problems
    if preset.engine.kind == "diffusers":
        update: dict[str, Any] = {"model_family": family_of(preset.engine.model)}
        update["style_digests"] = references
        digests = [lora_digest(source) or source for source, _ in preset.lora_sources]
        digests += references
        if digests:  # a changed LoRA or reference file is a new version of the preset
            update["version"] = content_version("\n".join([text, *digests]))
        preset = preset.model_copy(update=update)
    return preset, []


def _family_problems(preset: Preset, text: str, path: Path) -> list[str]:
    """What the preset asks of its model's family that the family cannot do (a negative prompt
    on FLUX, guidance on a distilled model). Only for a model found on this machine
    (``core.brand.families.family_of``); any other is checked when the engine loads it."""
    engine = preset.engine
    family = family_of(engine.model) if engine.kind == "diffusers" else None
    if family is None:
        return []
    root = _read_yaml(text)[0]
    found = refusals(
        family,
        model=engine.model,
        negative_prompt=preset.negative_prompt,
        guidance=engine.guidance,
    )
    return [f"{path}:{_line_of(root, loc)}: {'.'.join(loc)}: {why}" for loc, why in found]


def _lora_problems(preset: Preset, text: str, path: Path) -> list[str]:
    """Each LoRA file the preset names must exist, be a safetensors file and fit the model
    (``core.brand.lora_files``); hub ids and models not on this machine are checked at load."""
    if not preset.engine.loras:
        return []
    root = _read_yaml(text)[0]
    family = family_of(preset.engine.model)
    folder = model_folder(preset.engine.model)
    problems = []
    for i, (source, _) in enumerate(preset.lora_sources):
        loc: tuple[int | str, ...] = ("engine", "loras", i, "model")
        try:
            why = lora_mismatch(source, family, folder)
        except LoraFileError as exc:
            why = str(exc)
        else:
            why = f"LoRA {source} does not fit {preset.engine.model!r}: {why}" if why else None
        if why:
            problems.append(f"{path}:{_line_of(root, loc)}: {_format_loc(loc)}: {why}")
    return problems


def model_family(preset: Preset) -> str:
    """The family of the preset's model, for a person to read (``sdxl``, ``sd2, distilled``),
    or ``unknown family, checked at load`` for a model not found on this machine."""
    if preset.engine.kind != "diffusers":
        return f"{preset.engine.kind} engine"
    family = family_of(preset.engine.model)
    return family.label if family is not None else "unknown family, checked at load"


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
    files, problems = expand_preset_paths(paths)
    return problems + _load_many(files)[1]


def expand_preset_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """The preset files ``paths`` name (a folder stands for the ``.yaml``/``.yml`` files in it),
    and a problem for each folder that holds none: validating an empty or wrong folder must not
    pass as if its presets were fine."""
    files: list[Path] = []
    problems: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = _preset_files(p)
            if not found:
                problems.append(
                    f"{p}: holds no preset files (*.yaml, *.yml); is this the right folder?"
                )
            files += found
        else:
            files.append(p)
    return files, problems
