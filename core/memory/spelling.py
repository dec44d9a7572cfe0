"""The query's words against the words prompts used (``search_words``, kept by a trigger):
typo-tolerant spellings with pg_trgm, and whether a word is known at all (without pg_trgm
only unknown words need the prefix arm). ``core.memory.search`` builds its conditions from
these."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["FUZZY_WORDS", "any_unknown", "has_trigrams", "spelled"]

FUZZY_WORDS = 8  # the most query words corrected for typos
SPELLINGS = 3  # known words tried per query word
SPELLING_THRESHOLD = 0.25  # pg_trgm similarity from which a known word may be what was meant

# Typos, with pg_trgm: each query word becomes (itself | the known words most like it), looked
# up in the lexicon ``search_words`` through its trigram index, and the whole is matched
# through the document's GIN index ("blu sqare" → (blu | blue) & (sqare | square)).
_SPELLINGS = """
SELECT w.q, s.word FROM unnest(CAST(:words AS text[])) AS w(q)
CROSS JOIN LATERAL (
    SELECT word FROM search_words WHERE word % w.q ORDER BY word <-> w.q LIMIT :n
) s
"""
_FUZZY = "g.search_doc @@ to_tsquery('english', :fuzzy || :negated)"


async def has_trigrams(session: AsyncSession) -> bool:
    """Whether pg_trgm is installed in this database (the migration adds it where it can)."""
    found = await session.scalar(
        text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")
    )
    return bool(found)


async def spelled(session: AsyncSession, words: list[str], params: dict[str, Any]) -> str:
    """The typo-tolerant condition for ``words`` (sets ``:fuzzy``), or "false" without words."""
    if not words:
        return "false"
    await session.execute(  # transposed letters ("sqaure") score about 0.27
        text("SELECT set_config('pg_trgm.similarity_threshold', :t, true)"),
        {"t": str(SPELLING_THRESHOLD)},
    )
    found = await session.execute(text(_SPELLINGS), {"words": words, "n": SPELLINGS})
    spellings: dict[str, set[str]] = {w: {w} for w in words}
    for word, known in found:
        if re.fullmatch(r"[^\W_]+", known):  # lexemes are words; keep to_tsquery's syntax out
            spellings[word].add(known)
    params["fuzzy"] = " & ".join("(" + " | ".join(sorted(spellings[w])) + ")" for w in words)
    return _FUZZY


async def any_unknown(session: AsyncSession, words: list[str]) -> bool:
    """Whether any of ``words`` is no prompt's word (``search_words``): only then is the prefix
    arm worth its cost ("blu" → blue); known words are matched by the document's own arm (a
    prefix scan of two common words costs ~25 ms at 1M generations, the exact match ~5)."""
    if not words:
        return False
    known = await session.scalar(
        text("SELECT count(*) FROM search_words WHERE word = ANY (CAST(:words AS text[]))"),
        {"words": words},
    )
    return int(known or 0) < len(words)
