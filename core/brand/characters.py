"""What any text we store may hold: no control characters (tab and line breaks aside) and no lone
surrogates. PostgreSQL refuses NUL in text and nothing can store a lone surrogate, so every text
a person gives us (``/imagine`` text, names, ids) passes here before any write."""

from __future__ import annotations

import unicodedata

from core.errors import GrammarError

__all__ = ["check_characters"]


def check_characters(text: str, what: str) -> str:
    """``text`` when it holds no control character (tab and line breaks aside) and no lone
    surrogate; otherwise a ``GrammarError`` that names the character and where it is. PostgreSQL
    refuses NUL in text and nothing can store a lone surrogate, so this runs before any write."""
    for i, char in enumerate(text):
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") and char not in "\t\n\r":
            kind = "a lone surrogate" if category == "Cs" else "a control character"
            raise GrammarError(
                f"{what} has {kind} (U+{ord(char):04X}) at character {i + 1}, which can't be "
                "used; remove it (it may have come from a copy and paste) and try again."
            )
    return text
