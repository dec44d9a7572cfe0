"""``/imagine`` text → ``ImagineRequest`` s, and back.

The grammar Midjourney users already know::

    <prompt> [--ar W:H] [--seed N] [--no term, term] [--n 1-4] [--steps N]
             [--preset NAME] [--campaign NAME] [--style raw | --style CODE] [--sw 0-1000]

- The prompt comes first; every flag goes after it, in any order. A flag starts a word: ``--`` (or
  one long dash, ``—`` or ``–``, which phones make of ``--``) and then a letter. Flag names ignore
  case, ``--aspect`` is another name for ``--ar``, and a value follows a space or ``=``.
- A flag's value runs up to the next flag. ``--no`` takes comma-separated terms; every other flag
  takes exactly one word, so text after it is an error rather than a silent part of the prompt.
- ``{red, blue}`` expands to one request per option, anywhere in the text (flag values included);
  groups nest, options may be empty, and the product of all groups is at most
  ``MAX_PERMUTATIONS``.
- A backslash makes the next character ordinary when it is one of ``\\ { } , - — –``
  (``\\{``, ``\\,``, ``\\--ar``); before any other character the backslash is itself ordinary.
- Whitespace in the prompt and in ``--no`` terms is collapsed to single spaces. ``--ar`` values are
  reduced to lowest terms (``32:18`` → ``16:9``); whether a ratio is allowed is the preset's call.
- ``--style`` takes ``raw`` or a style code (10 letters a-z and digits 2-7; ``--sref`` is another
  name for it); ``--sw`` is the style weight, 0-1000 as in Midjourney (the preset maps it).

Every problem raises ``GrammarError`` whose text names the flag, quotes what was typed and says
what is allowed. ``render`` writes a request back as text that ``parse`` reads as that request.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple

from core.brand.characters import check_characters
from core.brand.grammar_text import LONG_DASHES as _LONG_DASHES
from core.brand.grammar_text import is_ascii_letter as _is_ascii_letter
from core.brand.grammar_text import render
from core.domain import ImagineRequest
from core.errors import GrammarError

__all__ = [
    "FLAGS",
    "MAX_PERMUTATIONS",
    "MAX_PROMPT_CHARS",
    "MAX_TEXT_CHARS",
    "GrammarError",
    "check_name",
    "parse",
    "render",
]

MAX_PROMPT_CHARS: Final = 1000
MAX_PERMUTATIONS: Final = 8
MAX_TEXT_CHARS: Final = 4000  # the whole command, flags and {…} options included
FLAGS: Final[tuple[str, ...]] = (
    *("ar", "seed", "no", "n", "steps", "preset", "campaign", "style", "sw"),
)
"""The known flag names, without their leading ``--``."""

SEED_MAX: Final = 2**32 - 1
N_MAX: Final = 4
STEPS_MAX: Final = 150
ASPECT_SIDE_MAX: Final = 9999
SW_MAX: Final = 1000

_ALIASES: Final = {"aspect": "ar", "sref": "style"}
_EXAMPLES: Final = {
    "ar": "16:9",
    "seed": "42",
    "no": "text, logos",
    "n": "4",
    "steps": "30",
    "preset": "acme",
    "campaign": "spring-launch",
    "style": "raw",
    "sw": "100",
}
_ESCAPABLE: Final = frozenset("\\{},-" + _LONG_DASHES)
_NAME_RE: Final = re.compile(r"[a-z0-9-]+")
_NUMBER_RE: Final = re.compile(r"[0-9]+")
_CODE_RE: Final = re.compile(r"[a-z2-7]{10}")
_ASPECT_RE: Final = re.compile(r"([0-9]+):([0-9]+)")
_QUOTE_MAX: Final = 40


class _Atom(NamedTuple):
    """One character of the text after escapes: ``escaped`` ones never mean syntax."""

    char: str
    escaped: bool


_EQUALS: Final = _Atom("=", escaped=False)
_HYPHEN: Final = _Atom("-", escaped=False)

_Variant = list[_Atom]


# --- public API --------------------------------------------------------------------------------


def parse(text: str) -> tuple[ImagineRequest, ...]:
    """Parse ``/imagine`` text into one request per permutation; raises ``GrammarError``."""
    if len(text) > MAX_TEXT_CHARS:
        raise GrammarError(
            f"This command is {len(text):,} characters long; the most is {MAX_TEXT_CHARS:,}. "
            "Shorten it and try again."
        )
    check_characters(text, "This command")
    variants = _expand(text)
    return tuple(_parse_variant(atoms, several=len(variants) > 1) for atoms in variants)


# --- permutations ------------------------------------------------------------------------------


@dataclass
class _Seq:
    """A run of text: every way it reads (``None`` once past the limit) and how many there are."""

    variants: list[_Variant] | None = field(default_factory=lambda: [_Variant()])
    count: int = 1

    def add(self, atom: _Atom) -> None:
        if self.variants is not None:
            for variant in self.variants:
                variant.append(atom)

    def add_group(self, group: _Group) -> None:
        self.count *= group.count
        if self.variants is None or group.variants is None or self.count > MAX_PERMUTATIONS:
            self.variants = None
        elif len(group.variants) == 1:
            for variant in self.variants:
                variant.extend(group.variants[0])
        else:
            self.variants = [v + w for v in self.variants for w in group.variants]


@dataclass
class _Group:
    """An open ``{…}``: the options closed so far, and the text around it."""

    opened_at: int
    outer: _Seq
    variants: list[_Variant] | None = field(default_factory=list)
    count: int = 0

    def add_option(self, option: _Seq) -> None:
        self.count += option.count
        if self.variants is None or option.variants is None or self.count > MAX_PERMUTATIONS:
            self.variants = None
        else:
            self.variants.extend(option.variants)


def _expand(text: str) -> list[_Variant]:
    """Resolve escapes and expand ``{…}`` groups, without recursion (nesting depth is free)."""
    groups: list[_Group] = []
    seq = _Seq()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and text[i + 1 : i + 2] in _ESCAPABLE:
            seq.add(_Atom(text[i + 1], escaped=True))
            i += 2
            continue
        if char == "{":
            groups.append(_Group(i, seq))
            seq = _Seq()
        elif char == "," and groups:
            groups[-1].add_option(seq)
            seq = _Seq()
        elif char == "}":
            if not groups:
                raise _unbalanced(text, i, "has no “{” before it")
            group = groups.pop()
            group.add_option(seq)
            seq = group.outer
            seq.add_group(group)
        else:
            seq.add(_Atom(char, escaped=False))
        i += 1
    if groups:
        raise _unbalanced(text, groups[0].opened_at, "is never closed with “}”")
    if seq.variants is None or seq.count > MAX_PERMUTATIONS:
        shown = f"{seq.count:,}" if seq.count < 10**6 else "over a million"
        raise GrammarError(
            f"The {{…}} options make {shown} permutations; the most is {MAX_PERMUTATIONS}. "
            "Use fewer options (or write \\{ for a literal brace)."
        )
    return seq.variants


def _unbalanced(text: str, at: int, problem: str) -> GrammarError:
    start, end = max(0, at - 15), at + 15
    context = ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
    return GrammarError(
        f"Unbalanced braces: the “{text[at]}” at character {at + 1} {problem} "
        f"(in “{' '.join(context.split())}”). Write \\{text[at]} for a literal brace."
    )


# --- flags -------------------------------------------------------------------------------------


def _parse_variant(atoms: _Variant, *, several: bool) -> ImagineRequest:
    starts = [(i, width) for i in range(len(atoms)) if (width := _flag_dashes(atoms, i))]
    aspect: str | None = None
    seed: int | None = None
    no: tuple[str, ...] = ()
    n: int | None = None
    steps: int | None = None
    preset: str | None = None
    campaign: str | None = None
    style_raw = False
    style_code: str | None = None
    style_weight: int | None = None
    given: dict[str, str] = {}

    bounds = [*starts, (len(atoms), 0)]
    for (start, width), (end, _) in itertools.pairwise(bounds):
        word, value_atoms = _split_flag(atoms[start + width : end])
        flag = _ALIASES.get(word.lower(), word.lower())
        if flag not in FLAGS:
            raise _unknown_flag(word)
        value = _text(value_atoms)
        if flag in given:
            raise GrammarError(
                f"--{flag} is given twice ({_q(given[flag])} and {_q(value)}); give each flag once."
            )
        given[flag] = value
        if not (_terms(value_atoms) if flag == "no" else value):
            raise GrammarError(f"--{flag} needs a value, e.g. --{flag} {_EXAMPLES[flag]}")
        match flag:
            case "ar":
                aspect = _aspect(_one_word(flag, value))
            case "seed":
                seed = _number(flag, _one_word(flag, value), 0, SEED_MAX, "the seed")
            case "no":
                no = _terms(value_atoms)
            case "n":
                n = _number(flag, _one_word(flag, value), 1, N_MAX, "the number of images")
            case "steps":
                steps = _number(flag, _one_word(flag, value), 1, STEPS_MAX, "the number of steps")
            case "preset":
                preset = check_name("preset", value)
            case "campaign":
                campaign = check_name("campaign", value)
            case "style":
                style_code = _one_word(flag, value).lower()
                style_raw = style_code == "raw"
                if not style_raw and _CODE_RE.fullmatch(style_code) is None:
                    raise GrammarError(
                        f"--style {_q(value)}: give raw or a style code (10 letters a-z and "
                        "digits 2-7, e.g. --style k3v7x2m4qa); `onbrand style list` shows them."
                    )
                style_code = None if style_raw else style_code
            case "sw":
                style_weight = _number(flag, _one_word(flag, value), 0, SW_MAX, "the style weight")

    prompt = _text(atoms[: starts[0][0]] if starts else atoms)
    if not prompt:
        if several:
            raise GrammarError(
                "One of the {…} permutations leaves the prompt empty: give every option some "
                "text before the flags."
            )
        raise GrammarError(
            "The prompt is empty: describe the image first, then add flags, "
            "e.g. /imagine a sneaker on a beach --ar 16:9"
        )
    if len(prompt) > MAX_PROMPT_CHARS:
        raise GrammarError(
            f"The prompt is {len(prompt):,} characters long; the most is {MAX_PROMPT_CHARS:,}. "
            "Shorten it and try again."
        )
    return ImagineRequest(
        prompt=prompt,
        aspect=aspect,
        seed=seed,
        no=no,
        n=n,
        steps=steps,
        preset=preset,
        campaign=campaign,
        style_raw=style_raw,
        style_code=style_code,
        style_weight=style_weight,
    )


def _flag_dashes(atoms: _Variant, i: int) -> int:
    """How many dash characters open a flag at ``atoms[i]``; 0 where no flag starts."""
    if i > 0 and not atoms[i - 1].char.isspace():
        return 0
    if atoms[i] == _HYPHEN and atoms[i + 1 : i + 2] == [_HYPHEN]:
        width = 2
    elif atoms[i].char in _LONG_DASHES and not atoms[i].escaped:
        width = 1
    else:
        return 0
    following = atoms[i + width].char if i + width < len(atoms) else ""
    return width if _is_ascii_letter(following) else 0


def _split_flag(atoms: _Variant) -> tuple[str, _Variant]:
    """``name value`` or ``name=value`` (the dashes already gone) → the name and the value."""
    k = 0
    while k < len(atoms) and not atoms[k].char.isspace() and atoms[k] != _EQUALS:
        k += 1
    word = "".join(atom.char for atom in atoms[:k])
    if atoms[k : k + 1] == [_EQUALS]:
        k += 1
    return word, atoms[k:]


def _unknown_flag(word: str) -> GrammarError:
    key = word.lower()
    hint = ""
    for name in sorted(FLAGS, key=len, reverse=True):
        if key.startswith(name) and key[len(name) : len(name) + 1].isdigit():
            hint = f" Did you mean “--{name} {_clip(word[len(name) :])}”?"
            break
    else:
        close = difflib.get_close_matches(key, [*FLAGS, *_ALIASES], n=1)
        if close:
            hint = f" Did you mean --{close[0]}?"
    known = ", ".join(f"--{flag}" for flag in FLAGS)
    return GrammarError(
        f"Unknown flag {_q('--' + word)}.{hint} The flags are {known}. "
        "To write “--” in the prompt itself, put a backslash before it: \\--"
    )


def _one_word(flag: str, value: str) -> str:
    if " " in value:
        raise GrammarError(
            f"--{flag} takes one value, but got {_q(value)}. Put the prompt first and the flags "
            f"after it, e.g. /imagine a sneaker on a beach --{flag} {_EXAMPLES[flag]}"
        )
    return value


def _aspect(value: str) -> str:
    match = _ASPECT_RE.fullmatch(value)
    if match is None or not all(side.strip("0") for side in match.groups()):
        raise GrammarError(
            f"--ar {_q(value)}: the ratio needs two positive whole numbers, e.g. 16:9"
        )
    width, height = (side.lstrip("0") for side in match.groups())
    if (
        max(len(width), len(height)) > len(str(ASPECT_SIDE_MAX))
        or max(int(width), int(height)) > ASPECT_SIDE_MAX
    ):
        raise GrammarError(
            f"--ar {_q(value)}: each side of the ratio must be at most {ASPECT_SIDE_MAX}, e.g. 16:9"
        )
    divisor = math.gcd(int(width), int(height))
    return f"{int(width) // divisor}:{int(height) // divisor}"


def _number(flag: str, value: str, low: int, high: int, what: str) -> int:
    allowed = f"{what} must be a whole number from {low} to {high}, e.g. --{flag} {_EXAMPLES[flag]}"
    if _NUMBER_RE.fullmatch(value) is None:
        raise GrammarError(f"--{flag} {_q(value)} is not a whole number: {allowed}")
    digits = value.lstrip("0") or "0"
    # Compare lengths first: int() refuses strings of thousands of digits.
    if len(digits) > len(str(high)) or not low <= int(digits) <= high:
        raise GrammarError(f"--{flag} {_q(value)} is out of range: {allowed}")
    return int(digits)


def check_name(flag: Literal["preset", "campaign"], value: str) -> str:
    """``value`` when it is a valid preset or campaign name (lowercase letters a-z, digits and
    dashes); otherwise a ``GrammarError`` that names the flag and gives an example."""
    if _NAME_RE.fullmatch(value) is None:
        raise GrammarError(
            f"--{flag} {_q(value)}: a {flag} name uses only lowercase letters a-z, digits and "
            f"dashes, e.g. --{flag} {_EXAMPLES[flag]}"
        )
    return value


def _terms(atoms: _Variant) -> tuple[str, ...]:
    """``--no`` terms: split at unescaped commas, whitespace collapsed, empty ones dropped."""
    terms: list[str] = []
    current: _Variant = []
    for atom in [*atoms, _Atom(",", escaped=False)]:
        if atom == _Atom(",", escaped=False):
            if term := _text(current):
                terms.append(term)
            current = []
        else:
            current.append(atom)
    return tuple(terms)


# --- small helpers -----------------------------------------------------------------------------


def _text(atoms: _Variant) -> str:
    return " ".join("".join(atom.char for atom in atoms).split())


def _clip(value: str) -> str:
    return value if len(value) <= _QUOTE_MAX else value[: _QUOTE_MAX - 1] + "…"


def _q(value: str) -> str:
    return f"“{_clip(value)}”"
