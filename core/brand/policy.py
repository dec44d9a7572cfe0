"""Brand-safety matching: find a banned term in a prompt despite common evasion tricks.

The rule is written down, with examples, in ``docs/policy.md``. In short: text and terms are
folded to a plain lowercase Latin skeleton (NFKC, no accents, no invisible characters, look-alike
letters mapped), the text is cut into *words*, and a term matches whole words only: a word, a
hyphen/dot-joined compound, a spelled-out run of single letters, or (for a phrase) consecutive
words. A trailing plural ``s``/``es`` (and therefore a possessive ``'s``) still matches.

Pure and torch-free. Compile a term list once with ``BannedTerms`` and reuse it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["BannedTerms", "find_banned_term", "normalize"]

# Characters that render as nothing (or as a blank) and can be slipped inside a word.
_INVISIBLE = "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180e\u3164\uffa0"
# Apostrophes join: "Nike's" and "Nike’s" become "nikes" (a plural form, which matches).
_APOSTROPHES = "'’‘ʼ`´ʹ′"

# Letters from other scripts (and Latin small capitals) that look like a Latin letter.
# Upper case is listed too, because case folding would turn a look-alike capital (Greek Η)
# into a letter that no longer looks Latin (η).
_LOOKALIKES: dict[str, str] = {
    # Cyrillic
    "а": "a", "А": "a", "в": "b", "В": "b", "с": "c", "С": "c", "ԁ": "d", "е": "e", "Е": "e",
    "ё": "e", "Ё": "e", "һ": "h", "Һ": "h", "Н": "h", "і": "i", "І": "i", "ї": "i", "Ї": "i",
    "ӏ": "l", "Ӏ": "i", "ј": "j", "Ј": "j", "к": "k", "К": "k", "М": "m", "м": "m", "о": "o",
    "О": "o", "р": "p", "Р": "p", "ԛ": "q", "Ԛ": "q", "ѕ": "s", "Ѕ": "s", "Т": "t", "т": "t",
    "у": "y", "У": "y", "ү": "y", "Ү": "y", "ԝ": "w", "Ԝ": "w", "х": "x", "Х": "x", "Ζ": "z",
    # Greek
    "α": "a", "Α": "a", "β": "b", "Β": "b", "ϲ": "c", "Ϲ": "c", "ε": "e", "Ε": "e", "η": "n",
    "Η": "h", "ι": "i", "Ι": "i", "ϳ": "j", "Ϳ": "j", "κ": "k", "Κ": "k", "Μ": "m", "ν": "v",
    "Ν": "n", "ο": "o", "Ο": "o", "ρ": "p", "Ρ": "p", "τ": "t", "Τ": "t", "υ": "u", "Υ": "y",
    "χ": "x", "Χ": "x", "γ": "y", "ω": "w",
    # Armenian
    "օ": "o", "Օ": "o", "ս": "u", "հ": "h", "ց": "g",
    # Latin variants that NFKC keeps
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɡ": "g", "ɩ": "i", "ɪ": "i", "ʏ": "y", "ᴀ": "a", "ʙ": "b",
    "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m",
    "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w",
    "ᴢ": "z", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ħ": "h", "ŧ": "t",
}  # fmt: skip
# Symbols that stand for one Latin letter read as it: regional indicators (flag letters 🇳🇮🇰🇪)
# and the negative circled / negative squared capitals (🅝, 🅽), which NFKC leaves alone.
for _first in (0x1F1E6, 0x1F150, 0x1F170):
    _LOOKALIKES.update({chr(_first + i): chr(ord("a") + i) for i in range(26)})

_FOLD_TABLE: dict[int, str | None] = {ord(c): None for c in _INVISIBLE + _APOSTROPHES}
_FOLD_TABLE.update({ord(k): v for k, v in _LOOKALIKES.items()})

# Leetspeak, tried on the text only (never on the terms), so a term "3m" still means "3m".
# Symbols read as letters in a token that has a letter ("a$$", "@ss"); digits only when one sits
# between two letters ("n1ke", "4d1d4s"), so model numbers and units ("a55", "4k", "1080p") stay.
_LEET_SYMBOLS = "$@!"
_LEET_SYMBOL_TABLE = str.maketrans("$@!", "sai")
_LEET_I = str.maketrans("013457", "oieast")
_LEET_L = str.maketrans("013457", "oleast")
_DIGIT_INSIDE = re.compile(r"[^\W\d_]\d+[^\W\d_]")

# A token: letters/digits of any script, plus the leet symbols.
_TOKEN = re.compile(r"(?:[^\W_]|[$@!])+")
_SPACE = re.compile(r"\s")
# Standalone one-letter English words that may sit next to a spelled-out word ("a n i k e").
_ONE_LETTER_WORDS = frozenset({"a", "i"})


def _is_unspaced_script(ch: str) -> bool:
    """Scripts written without spaces between words (CJK, kana, Hangul, Thai, Lao, Khmer...)."""
    o = ord(ch)
    return 0x0E00 <= o <= 0x0EFF or 0x1780 <= o <= 0x17FF or 0x1100 <= o <= 0x11FF or o >= 0x2E80


@lru_cache(maxsize=4096)
def _is_sign(ch: str) -> bool:
    """A symbol (category S*) that NFKC would spell out as letters or a space: ``™`` → ``TM``,
    ``℠`` → ``SM``, ``№`` → ``No``, ``¨`` → space + mark. It must stay a separator."""
    if not unicodedata.category(ch).startswith("S"):
        return False
    folded = unicodedata.normalize("NFKC", ch)
    return sum(c.isalnum() for c in folded) > 1 or any(c.isspace() for c in folded)


def _nfkc(text: str) -> str:
    """NFKC, except that signs (``_is_sign``) are kept as they are, so they still separate words.
    A symbol that NFKC turns into one letter or digit (``ⓝ``, ``🄽``, ``⒩``) reads as it."""
    if text.isascii():  # NFKC leaves ASCII unchanged
        return text
    parts: list[str] = []
    start = 0
    for i, ch in enumerate(text):
        if _is_sign(ch):
            parts.append(unicodedata.normalize("NFKC", text[start:i]))
            parts.append(ch)
            start = i + 1
    parts.append(unicodedata.normalize("NFKC", text[start:]))
    return "".join(parts)


def normalize(text: str) -> str:
    """Fold ``text`` to the skeleton the matcher compares: NFKC, no marks, no invisibles,
    look-alikes mapped to Latin, case-folded. Separators (spaces, punctuation, symbols such as
    ``™ © 🔥 →``) are kept; an enclosing mark (keycap ``1️⃣``, ``n⃝``) becomes one on each side
    of the character it encloses, which then stands alone."""
    kept: list[str] = []
    for ch in unicodedata.normalize("NFD", _nfkc(text)):
        category = unicodedata.category(ch)
        if category in ("Mn", "Cf"):
            continue
        if category == "Me" and kept and unicodedata.category(kept[-1]) != "Me":
            kept.insert(len(kept) - 1, ch)  # separate the enclosed character on both sides
        kept.append(ch)
    return "".join(kept).translate(_FOLD_TABLE).casefold()


@dataclass(frozen=True, slots=True)
class _Unit:
    """A candidate word: the tokens ``start..end`` (inclusive) read as the strings ``forms``."""

    start: int
    end: int
    forms: frozenset[str]


def _token_forms(token: str) -> set[str]:
    """The readings of one token: as written, without edge leet symbols, and de-leeted."""
    forms = {token}
    stripped = token.strip(_LEET_SYMBOLS)
    for t in {token, stripped}:
        if not t or not any(c.isalpha() for c in t):
            continue
        forms.add(t)
        t = t.translate(_LEET_SYMBOL_TABLE)
        forms.add(t)
        if _DIGIT_INSIDE.search(t):
            forms.add(t.translate(_LEET_I))
            forms.add(t.translate(_LEET_L))
    return forms


def _units(text: str) -> Iterator[_Unit]:
    """Every candidate word of already-normalized ``text``: tokens, compounds, spelled runs."""
    matches = list(_TOKEN.finditer(text))
    tokens = [m.group() for m in matches]
    forms = [frozenset(_token_forms(t)) for t in tokens]
    # joined[i]: token i-1 and token i are separated by punctuation only (no whitespace).
    joined = [False] + [
        not _SPACE.search(text[matches[i - 1].end() : matches[i].start()])
        for i in range(1, len(matches))
    ]
    for i, f in enumerate(forms):
        yield _Unit(i, i, f)

    def glue(start: int, end: int) -> frozenset[str]:
        raw = "".join(tokens[start : end + 1])
        return frozenset(_token_forms(raw))

    # Compounds: tokens joined by punctuation without spaces ("n.i.k.e", "ni-ke", "coca-cola").
    i = 0
    while i < len(tokens):
        j = i
        while j + 1 < len(tokens) and joined[j + 1]:
            j += 1
        if j > i:
            yield _Unit(i, j, glue(i, j))
        i = j + 1

    # Spelled-out runs: two or more one-character tokens in a row, any separators ("n i k e").
    # A space-separated "a" or "i" at either end may be a real word, so the run is also read
    # without it ("buy a n i k e", but not "I.S.S."); the run is never cut anywhere else
    # ("a n i k e t" is not "nike").
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and len(tokens[j]) == 1:
            j += 1
        if j - i >= 2:
            start, end = i, j - 1
            starts, ends = [start], [end]
            if tokens[start] in _ONE_LETTER_WORDS and not joined[start + 1]:
                starts.append(start + 1)
            if tokens[end] in _ONE_LETTER_WORDS and not joined[end]:
                ends.append(end - 1)
            for s in starts:
                for e in ends:
                    if e - s >= 1:
                        yield _Unit(s, e, glue(s, e))
        i = max(j, i + 1)


def _inflections(word: str) -> tuple[str, ...]:
    """The forms of a term's last word that still match: itself, plural, possessive."""
    forms = [word, word + "s", word + "es"]
    if word.endswith("y") and len(word) > 1:
        forms.append(word[:-1] + "ies")
    return tuple(forms)


class BannedTerms:
    """A banned-term list compiled once; ``find`` is cheap to call per prompt."""

    def __init__(self, terms: Iterable[str]) -> None:
        self.terms: tuple[str, ...] = tuple(terms)
        # Whole-word forms ("cocacola", "cocacolas", "nike", ...) -> index of the first term.
        self._glued: dict[str, int] = {}
        # Phrases by first word: index, words (the last one in all its inflections).
        self._phrases: dict[str, list[tuple[int, tuple[str, ...], tuple[str, ...]]]] = {}
        # Terms in scripts without word spaces match as a substring of the spaceless text.
        self._unspaced: list[tuple[int, str]] = []
        for index, term in enumerate(self.terms):
            found = (m.group().strip(_LEET_SYMBOLS) for m in _TOKEN.finditer(normalize(term)))
            words = tuple(w for w in found if w)
            if not words:
                raise ValueError(f"banned term {term!r} has no letters or digits")
            skeleton = "".join(words)
            if any(_is_unspaced_script(c) for c in skeleton):
                self._unspaced.append((index, skeleton))
                continue
            for form in _inflections(skeleton):
                self._glued.setdefault(form, index)
            if len(words) > 1:
                self._phrases.setdefault(words[0], []).append(
                    (index, words[1:-1], _inflections(words[-1]))
                )

    def __repr__(self) -> str:
        return f"BannedTerms({list(self.terms)!r})"

    def find(self, text: str) -> str | None:
        """The first term of the list (as written there) that ``text`` contains, else None."""
        index = self.find_index(text)
        return None if index is None else self.terms[index]

    def find_index(self, text: str) -> int | None:
        """Like ``find``, but the position of the term in the list."""
        if not self.terms:
            return None
        folded = normalize(text)
        best: int | None = None

        def hit(i: int) -> None:
            nonlocal best
            if best is None or i < best:
                best = i

        if self._unspaced:
            spaceless = "".join(_TOKEN.findall(folded))
            for i, skeleton in self._unspaced:
                if skeleton in spaceless:
                    hit(i)
        units = list(_units(folded))
        by_start: dict[int, list[_Unit]] = {}
        for unit in units:
            by_start.setdefault(unit.start, []).append(unit)
            for form in unit.forms:
                if form in self._glued:
                    hit(self._glued[form])
        if self._phrases:
            for unit in units:
                for form in unit.forms:
                    for i, middle, last in self._phrases.get(form, ()):
                        if (best is None or i < best) and _phrase_at(
                            by_start, unit.end + 1, middle, last
                        ):
                            hit(i)
        return best


def _phrase_at(
    by_start: dict[int, list[_Unit]], pos: int, middle: tuple[str, ...], last: tuple[str, ...]
) -> bool:
    """Whether consecutive units starting at token ``pos`` read ``middle`` then one of ``last``."""
    if not middle:
        return any(not u.forms.isdisjoint(last) for u in by_start.get(pos, ()))
    return any(
        middle[0] in u.forms and _phrase_at(by_start, u.end + 1, middle[1:], last)
        for u in by_start.get(pos, ())
    )


@lru_cache(maxsize=64)
def _compiled(terms: tuple[str, ...]) -> BannedTerms:
    return BannedTerms(terms)


def find_banned_term(text: str, terms: Iterable[str]) -> str | None:
    """The first banned term (as written in ``terms``) that ``text`` contains, else None.

    The compiled list is cached by its contents; hold a ``BannedTerms`` to skip even that.
    """
    return _compiled(tuple(terms)).find(text)
