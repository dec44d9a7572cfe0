"""``/imagine-search`` text → query and filters: the CLI's flags, typed in chat.

``beach sunset --campaign spring --approved --since 2026-03-01 --user ann --like GEN:2
--limit 5``: words that aren't flags are the query. Unknown flags and bad values are refused
with what to write instead.
"""

from __future__ import annotations

import shlex
from datetime import date

from core.errors import UserError
from core.memory.model import DEFAULT_RESULTS, MAX_CARD_RESULTS, ImageRef, SearchFilters

USAGE = (
    "Usage: `/imagine-search words [--campaign NAME] [--approved | --favourites] "
    "[--since YYYY-MM-DD] [--user NAME] [--like GEN:INDEX] [--limit N] [--collapse]`"
)
_VALUED = {"--campaign", "--since", "--user", "--like", "--limit"}
_SWITCHES = {"--approved", "--favourites", "--collapse"}


def parse_search(text: str) -> tuple[str, SearchFilters]:
    try:
        words = shlex.split(text.replace("\u2014", "--"))  # phones turn -- into an em dash
    except ValueError:
        raise UserError(f"A quote is not closed. {USAGE}") from None
    query: list[str] = []
    values: dict[str, str] = {}
    switches: set[str] = set()
    it = iter(words)
    for word in it:
        if word in _SWITCHES:
            switches.add(word)
        elif word in _VALUED:
            value = next(it, None)
            if value is None:
                raise UserError(f"{word} needs a value. {USAGE}")
            values[word] = value
        elif word.startswith("--"):
            raise UserError(f"There is no option {word}. {USAGE}")
        else:
            query.append(word)
    since = None
    if "--since" in values:
        try:
            since = date.fromisoformat(values["--since"])
        except ValueError:
            raise UserError(f"--since {values['--since']!r}: use a date like 2026-03-01.") from None
    limit = min(DEFAULT_RESULTS, MAX_CARD_RESULTS)
    if "--limit" in values:
        try:
            limit = int(values["--limit"])
        except ValueError:
            raise UserError(f"--limit {values['--limit']!r}: give a whole number.") from None
        if not 1 <= limit <= MAX_CARD_RESULTS:
            raise UserError(f"--limit {limit}: in chat give a number from 1 to {MAX_CARD_RESULTS}.")
    filters = SearchFilters(
        campaign=values.get("--campaign"),
        approved="--approved" in switches,
        favourites="--favourites" in switches,
        since=since,
        user=values.get("--user"),
        like=ImageRef.parse(values["--like"]) if "--like" in values else None,
        limit=limit,
        collapse="--collapse" in switches,
    )
    return " ".join(query), filters.check()
