"""The team's memory as use cases: search past work (keyword, more like this), for the chats and
the CLI alike. The SQL is ``core.memory``'s; the service checks the input and decides whose work
the asker may see: their own workspace in chat, everything for the operator's CLI (who runs on
the machine that holds the database)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from core.domain import (
    Action,
    ActionKind,
    Actor,
    FeedbackKind,
    MessageRef,
    Platform,
    RequestKey,
    ResultCard,
)
from core.errors import NotFound, UserError
from core.memory.card import original_card, search_card
from core.memory.lineage import Node
from core.memory.model import ImageRef, Scope, SearchFilters, SearchResult
from core.memory.query import parse_search
from core.memory.store import MemoryStore
from core.replies import private
from core.service.base import NAME_MAX, UseCase, check_text
from core.service.feedback import feedback_for

QUERY_MAX = 500


def scope_of(actor: Actor) -> Scope:
    """Chat users search their own workspace; the CLI operator searches every workspace."""
    if actor.platform is Platform.CLI:
        return Scope()
    return Scope(actor.platform.value, actor.workspace_id)


class Recall(UseCase):
    if TYPE_CHECKING:  # core.service.feedback.Feedback.react, composed beside this in Service

        async def react(
            self,
            message: MessageRef,
            emoji: str,
            actor: Actor,
            *,
            added: bool,
            key: RequestKey | None = None,
        ) -> bool: ...

    async def react_reply(
        self,
        message: MessageRef,
        emoji: str,
        actor: Actor,
        *,
        added: bool,
        key: RequestKey | None = None,
    ) -> ResultCard | None:
        """``react``, then what the reactor should be told privately: for a ✅ approval of an
        image that is a near-duplicate of one approved in another campaign, a warning naming
        it; otherwise None."""
        recorded = await self.react(message, emoji, actor, added=added, key=key)
        meaning = feedback_for(emoji)
        if not recorded or not added or meaning is None or meaning[0] is not FeedbackKind.APPROVE:
            return None
        if self._memory is None:
            return None
        async with self._uow() as uow:
            generation_id = await uow.repo.generation_for_message(message)
            images = await uow.repo.image_ids(generation_id) if generation_id else {}
        if generation_id is None:
            return None
        index = meaning[1] if meaning[1] is not None or len(images) != 1 else next(iter(images))
        found = await self._memory.approved_elsewhere(generation_id, index, scope_of(actor))
        if not found:
            return None
        lines = [
            f"• image {d.index} looks like `{d.other}` in campaign **{d.campaign}**, approved "
            f"{d.approved_at:%Y-%m-%d} by {d.approver} ({d.distance} of 64 bits differ)"
            for d in found
        ]
        return private(
            "⚠️ Approved, but this is a near-duplicate of an image already approved in another "
            "campaign:\n" + "\n".join(lines)
        )

    _memory: MemoryStore | None = None

    def _memory_store(self) -> MemoryStore:
        if self._memory is None:
            raise UserError("Search is not available in this process.")
        return self._memory

    async def search_chat(self, actor: Actor, text: str) -> ResultCard:
        """``/imagine-search words --flags``: the private result card."""
        query, filters = parse_search(text)
        found = await self.search(actor, query, filters)
        return await search_card(found, self._memory_store().read)

    async def memory_button(self, actor: Actor, custom_id: str) -> ResultCard:
        """A search card's button: "Open N" (the original, privately) or "Like N"."""
        try:
            action = Action.parse(custom_id)
        except ValueError:
            raise UserError("That button isn't one of onbrand's.") from None
        ref = ImageRef(action.generation_id, action.index)
        if action.kind is ActionKind.LIKE:
            return await self.search_chat(actor, f"--like {ref}")
        if action.kind is not ActionKind.OPEN:
            raise UserError("That button isn't a search button.")
        self._check_ids(actor)
        memory = self._memory_store()
        hit = await memory.image(ref, scope_of(actor))
        try:
            data = await memory.read(hit.storage_key)
        except KeyError:
            raise NotFound(f"The original of {ref} is missing from the image store.") from None
        return original_card(hit, data)

    async def history(self, actor: Actor, generation_id: uuid.UUID) -> Node:
        """The family tree ``generation_id`` belongs to, from its first ``/imagine``."""
        self._check_ids(actor)
        return await self._memory_store().family(generation_id, scope_of(actor))

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
