"""``ImagineRequest`` → ``/imagine`` text (``render``), the inverse of ``core.brand.grammar.parse``:
``parse(render(r)) == (r,)``."""

from __future__ import annotations

from typing import Final

from core.domain import ImagineRequest

__all__ = ["LONG_DASHES", "is_ascii_letter", "render"]

LONG_DASHES: Final = "—–"  # em dash, en dash


def is_ascii_letter(char: str) -> bool:
    return char.isascii() and char.isalpha()


def render(request: ImagineRequest) -> str:
    """Write ``request`` as ``/imagine`` text such that ``parse(render(r)) == (r,)``."""
    parts = [_escape(request.prompt)]
    if request.aspect is not None:
        parts.append(f"--ar {request.aspect}")
    if request.seed is not None:
        parts.append(f"--seed {request.seed}")
    if request.no:
        parts.append("--no " + ", ".join(_escape(term, commas=True) for term in request.no))
    if request.n is not None:
        parts.append(f"--n {request.n}")
    if request.steps is not None:
        parts.append(f"--steps {request.steps}")
    if request.preset is not None:
        parts.append(f"--preset {_escape(request.preset)}")
    if request.campaign is not None:
        parts.append(f"--campaign {_escape(request.campaign)}")
    if request.style_raw or request.style_code:
        parts.append(f"--style {request.style_code or 'raw'}")
    if request.style_weight is not None:
        parts.append(f"--sw {request.style_weight}")
    return " ".join(parts)


def _escape(text: str, *, commas: bool = False) -> str:
    """Backslash every character that ``parse`` would otherwise read as syntax."""
    out: list[str] = []
    for i, char in enumerate(text):
        if char in "\\{}" or (commas and char == ",") or _opens_flag(text, i):
            out.append("\\")
        out.append(char)
    return "".join(out)


def _opens_flag(text: str, i: int) -> bool:
    if i > 0 and not text[i - 1].isspace():
        return False
    if text.startswith("--", i):
        following = text[i + 2 : i + 3]
    elif text[i] in LONG_DASHES:
        following = text[i + 1 : i + 2]
    else:
        return False
    return is_ascii_letter(following)
