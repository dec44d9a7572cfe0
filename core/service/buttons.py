"""The buttons under a result: U1–U4 upscale, V1–V4 vary, 🔄 reroll (each a child generation,
queued like an ``/imagine``) and ✖ cancel. A button's id carries its state, so a press is looked
up in the records and works after a restart."""

from __future__ import annotations

import dataclasses

from core.brand.presets import DEFAULT_N, Limits
from core.domain import (
    Action,
    ActionKind,
    Actor,
    Generation,
    GenerationKind,
    GenerationStatus,
    ReplyTarget,
    RequestKey,
    Role,
    Ticket,
)
from core.errors import NotAllowed, NotFound, UserError
from core.ports import UnitOfWork
from core.service.base import ACTIVE, UseCase, actor_key
from core.service.images_in import child_of_upload


class Buttons(UseCase):
    async def act(
        self,
        custom_id: str,
        actor: Actor,
        where: ReplyTarget | None = None,
        *,
        key: RequestKey | None = None,
    ) -> Ticket:
        """A button press: U1–U4 upscale, V1–V4 vary, 🔄 reroll, ✖ cancel. ``key``: the
        platform's id for this press (a copy raises ``DuplicateRequest``; two presses by a
        person have two ids and make two children)."""
        try:
            action = Action.parse(custom_id)
        except ValueError:
            raise UserError("That button isn't one of onbrand's.") from None
        self._check_ids(actor, where)
        async with self._uow() as uow:
            await self._first_time(uow, key)
            parent = await uow.repo.generation(action.generation_id)
            if parent is None:
                raise NotFound("That result no longer exists, so its buttons can't be used.")
            if action.kind is ActionKind.CANCEL:
                ticket = await self._cancel(uow, parent, actor)
            else:
                ticket = await self._derive(uow, parent, action, actor, where)
            await uow.commit()
        return ticket

    async def _cancel(self, uow: UnitOfWork, generation: Generation, actor: Actor) -> Ticket:
        if generation.requester != actor_key(actor) and not actor.has(Role.ADMIN):
            raise NotAllowed("Only the person who asked for these images or an admin can cancel.")
        if generation.status.finished:
            raise UserError(f"This job has already {_finished_words(generation.status)}.")
        await uow.queue.remove(generation.id)
        await uow.repo.set_status(
            generation.id,
            GenerationStatus.CANCELLED,
            only_from=ACTIVE,
            error=f"Cancelled by {actor.display_name or actor.user_id}",
        )
        await uow.repo.audit(actor_key(actor), "generation.cancelled", str(generation.id), {})
        return Ticket(generation_ids=(generation.id,), position=0)

    async def _derive(
        self,
        uow: UnitOfWork,
        parent: Generation,
        action: Action,
        actor: Actor,
        where: ReplyTarget | None,
    ) -> Ticket:
        """A child generation: an upscale or variation of one image, or a reroll of all."""
        if action.kind in (ActionKind.UPSCALE, ActionKind.VARY):
            if parent.status is not GenerationStatus.DONE:
                raise UserError("Wait until the images are ready, then pick one.")
            if not 1 <= action.index <= parent.image_count:
                raise UserError(f"There is no image {action.index} in this result.")
        kind, params, source = {
            ActionKind.UPSCALE: (
                GenerationKind.UPSCALE,
                dataclasses.replace(parent.params, n=1),
                action.index,
            ),
            ActionKind.VARY: (
                GenerationKind.VARIATION,
                dataclasses.replace(parent.params, seed=self._seed(), n=DEFAULT_N),
                action.index,
            ),
            ActionKind.REROLL: (
                GenerationKind.REROLL,
                dataclasses.replace(parent.params, seed=self._seed()),
                None,
            ),
        }[action.kind]
        user_id = await uow.repo.ensure_user(actor)
        campaign = await uow.repo.campaign(parent.campaign) if parent.campaign else None
        if campaign is not None:
            self._check_dates(campaign)
        preset = self.presets.get(parent.params.preset)
        kind, params = child_of_upload(parent, kind, params, preset)  # images in: keep or drop
        limits = preset.limits if preset is not None else Limits()
        active = await self._check_quotas(uow, user_id, [params], limits, campaign)
        child = await self._enqueue_child(
            uow, parent, kind, params, actor=actor, user_id=user_id, where=where,
            source_index=source, campaign=campaign, waiting=active,
        )  # fmt: skip
        return await self._ticket(uow, [child])


def _finished_words(status: GenerationStatus) -> str:
    return {"done": "finished", "failed": "failed", "cancelled": "been cancelled"}[status.value]
