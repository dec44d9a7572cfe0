"""Admin use cases: create and list campaigns, bind a channel to a campaign or a preset (locked
or not), unbind it. Each change is audited."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from core.brand import grammar
from core.domain import GATES, Actor, Binding, Campaign, ReplyTarget, RequestKey, Role
from core.errors import NotFound, UserError
from core.service.base import (
    NAME_MAX,
    UseCase,
    actor_key,
    check_gpu_budget,
    check_text,
)


class Campaigns(UseCase):
    async def create_campaign(
        self,
        actor: Actor,
        name: str,
        preset: str,
        *,
        starts_on: date | None = None,
        ends_on: date | None = None,
        gpu_budget_seconds: float | None = None,
        rush: bool = False,
        share_prompt: bool = False,
        require_approval: Sequence[str] = (),
    ) -> Campaign:
        self._require(actor, Role.ADMIN, "create campaigns")
        gated = tuple(dict.fromkeys(require_approval))
        if unknown := [g for g in gated if g not in GATES]:
            raise UserError(
                f"require_approval takes {' and '.join(GATES)}, "
                f"not {', '.join(map(repr, unknown))}."
            )
        self._check_ids(actor)
        self.preset(check_text("The preset name", preset, NAME_MAX))
        grammar.check_name("campaign", check_text("The campaign name", name, NAME_MAX))
        check_gpu_budget(gpu_budget_seconds)
        if starts_on and ends_on and ends_on < starts_on:
            raise UserError("The campaign must end on or after the day it starts.")
        async with self._uow() as uow:
            owner = await uow.repo.ensure_user(actor)
            created = await uow.repo.add_campaign(
                Campaign(
                    name,
                    preset,
                    starts_on,
                    ends_on,
                    gpu_budget_seconds,
                    rush,
                    None,
                    share_prompt,
                    gated,
                ),
                owner,
            )
            await uow.repo.audit(
                actor_key(actor), "campaign.created", name, {"preset": preset}, created.id
            )
            await uow.commit()
        return created

    async def campaigns(self) -> list[Campaign]:
        async with self._uow() as uow:
            return await uow.repo.campaigns()

    async def bind(
        self,
        actor: Actor,
        where: ReplyTarget,
        *,
        campaign: str | None = None,
        preset: str | None = None,
        locked: bool = False,
        key: RequestKey | None = None,
    ) -> Binding:
        """Bind a channel to a campaign (and its preset) or to a preset alone."""
        self._require(actor, Role.ADMIN, "bind channels")
        if campaign is None and preset is None:
            raise UserError("Name a campaign or a preset to bind this channel to.")
        self._check_ids(actor, where)
        for what, name in (("The campaign name", campaign), ("The preset name", preset)):
            if name is not None:
                check_text(what, name, NAME_MAX)
        async with self._uow() as uow:
            await self._first_time(uow, key)
            found = await uow.repo.campaign(campaign) if campaign else None
            if campaign and found is None:
                raise NotFound(f"There is no campaign called {campaign}.")
            preset_name = preset or (found.preset if found else self.config.default_preset)
            self.preset(preset_name)
            binding = Binding(
                where.platform, where.workspace_id, where.channel_id, preset_name, campaign, locked
            )
            user_id = await uow.repo.ensure_user(actor)
            await uow.repo.save_binding(binding, user_id)
            await uow.repo.audit(
                actor_key(actor),
                "binding.saved",
                f"{where.platform.value}:{where.channel_id}",
                _binding_details(binding),
                found.id if found else None,
            )
            await uow.commit()
        return binding

    async def unbind(
        self, actor: Actor, where: ReplyTarget, *, key: RequestKey | None = None
    ) -> bool:
        self._require(actor, Role.ADMIN, "unbind channels")
        self._check_ids(actor, where)
        async with self._uow() as uow:
            await self._first_time(uow, key)
            removed = await uow.repo.delete_binding(where)
            if removed:
                await uow.repo.audit(
                    actor_key(actor),
                    "binding.deleted",
                    f"{where.platform.value}:{where.channel_id}",
                    {},
                )
            await uow.commit()
        return removed


def _binding_details(binding: Binding) -> dict[str, Any]:
    return {"campaign": binding.campaign, "preset": binding.preset, "locked": binding.locked}
