"""The team's memory as use cases: search past work (keyword, more like this), for the chats and
the CLI alike. The SQL is ``core.memory``'s; the service checks the input and decides whose work
the asker may see: their own workspace in chat, everything for the operator's CLI (who runs on
the machine that holds the database)."""

from __future__ import annotations

from core.domain import Actor, Platform
from core.errors import UserError
from core.memory.model import Scope, SearchFilters, SearchResult
from core.memory.store import MemoryStore
from core.service.base import NAME_MAX, UseCase, check_text

QUERY_MAX = 500


def scope_of(actor: Actor) -> Scope:
    """Chat users search their own workspace; the CLI operator searches every workspace."""
    if actor.platform is Platform.CLI:
        return Scope()
    return Scope(actor.platform.value, actor.workspace_id)


class Recall(UseCase):
    _memory: MemoryStore | None = None

    def _memory_store(self) -> MemoryStore:
        if self._memory is None:
            raise UserError("Search is not available in this process.")
        return self._memory

    async def search(self, actor: Actor, query: str, filters: SearchFilters) -> SearchResult:
        """Images matching ``query`` and ``filters`` that ``actor`` may see, best first."""
        self._check_ids(actor)
        check_text("The search", query, QUERY_MAX)
        for what, value in (("The campaign name", filters.campaign), ("--user", filters.user)):
            if value is not None:
                check_text(what, value, NAME_MAX)
        if (
            not query.strip()
            and filters.like is None
            and filters == SearchFilters(limit=filters.limit)
        ):
            raise UserError(
                'Say what to look for, e.g. `onbrand search "blue square"`, or give a filter '
                "such as --approved, --campaign NAME or --like GEN:INDEX."
            )
        return await self._memory_store().search(query, filters.check(), scope_of(actor))
