"""``MemoryStore``: the memory's SQL over one ``Database``, as the service calls it."""

from __future__ import annotations

from dataclasses import dataclass

from core.db.database import Database
from core.memory import search as _search
from core.memory.model import Scope, SearchFilters, SearchResult


@dataclass(frozen=True)
class MemoryStore:
    db: Database

    async def search(self, query: str, filters: SearchFilters, scope: Scope) -> SearchResult:
        return await _search.search(self.db, query, filters, scope)
