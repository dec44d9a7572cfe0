"""The chat messages an adapter posts for a generation (its "Queued" status, its result),
remembered so that reactions, progress edits and delivery find them; and the generation behind
an id."""

from __future__ import annotations

import uuid

from core.cards import closing_card
from core.domain import Generation, MessageRef, ResultCard
from core.errors import NotFound
from core.service.base import UseCase


class Messages(UseCase):
    async def record_message(self, generation_id: uuid.UUID, ref: MessageRef, role: str) -> None:
        """Remember a message an adapter posted, so reactions and edits can find it."""
        async with self._uow() as uow:
            await uow.repo.record_message(generation_id, ref, role)
            await uow.commit()

    async def record_status_message(
        self, generation_id: uuid.UUID, ref: MessageRef
    ) -> ResultCard | None:
        """Remember an adapter's 'Queued' message, which progress edits and delivery closes.

        A fast job can finish and be delivered before its status message is recorded; then the
        delivery could not close it, so this returns the card the message should show now.
        """
        async with self._uow() as uow:
            await uow.repo.record_message(generation_id, ref, "status")
            generation = await uow.repo.generation(generation_id)
            await uow.commit()
        if generation is not None and generation.status.finished:
            return closing_card(generation)
        return None

    async def generation(self, generation_id: uuid.UUID) -> Generation:
        async with self._uow() as uow:
            found = await uow.repo.generation(generation_id)
        if found is None:
            raise NotFound(f"No generation {generation_id}.")
        return found
