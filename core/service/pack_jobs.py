"""Campaign packs as queued jobs: the 📦 Pack button, its placements menu and ``onbrand pack``.

``queue_pack`` checks the image (finished, stored, in range), the placements (by name, against
the preset's set) and the campaign's approval gate, then records a generation of kind ``pack``
(parent and source index as for an upscale; ``Params.placements`` the names asked for, empty for
the preset's whole list) and enqueues it in one unit of work, through the same quotas, GPU
budget and fair queue as every other kind. The worker builds the pack (``core.jobs.packs``),
stores the zip and its contact sheet and records them (``core.db.packs``); delivery posts them.

The approval gate (``require_approval`` on a campaign): ``pack`` refuses packs of an image no
reviewer approved; ``export`` refuses exports that would hand over such images (an export of
favourites holding one). Each refusal names who can approve and is in the audit log.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence

from core.brand.placements import placements_for
from core.db.packs import SqlPacks, StoredPack
from core.domain import (
    Action,
    ActionKind,
    Actor,
    Campaign,
    Generation,
    GenerationKind,
    GenerationStatus,
    ReplyTarget,
    RequestKey,
    Ticket,
)
from core.errors import NotAllowed, NotFound, PresetError, UserError
from core.service.base import actor_key
from core.service.edits import Edits
from core.service.packs import Packs, choose

__all__ = ["PackJobs"]

log = logging.getLogger(__name__)


class PackJobs(Packs, Edits):
    # Wired by ``Service`` (``packs=``); without it packs can be queued but not read back.
    _packs: SqlPacks | None = None

    async def act(
        self,
        custom_id: str,
        actor: Actor,
        where: ReplyTarget | None = None,
        *,
        key: RequestKey | None = None,
    ) -> Ticket:
        """Buttons, with 📦 Pack (``ob:pk:<generation>:<index>``: the preset's placements)."""
        try:
            action = Action.parse(custom_id)
        except ValueError:
            action = None
        if action is not None and action.kind is ActionKind.PACK_SELECT:
            raise UserError("Pick the placements from the 📦 Pack only… menu.")
        if action is None or action.kind is not ActionKind.PACK:
            return await super().act(custom_id, actor, where, key=key)
        return await self.queue_pack(actor, where, action.generation_id, action.index, key=key)

    async def choose(
        self,
        custom_id: str,
        value: str,
        actor: Actor,
        where: ReplyTarget | None = None,
        *,
        key: RequestKey | None = None,
    ) -> Ticket:
        """A menu choice; the 📦 menu (``ob:ps:<generation>:<index>``) takes placement names,
        comma-separated (a multi-select's values)."""
        try:
            action = Action.parse(custom_id)
        except ValueError:
            action = None
        if action is None or action.kind is not ActionKind.PACK_SELECT:
            return await super().choose(custom_id, value, actor, where, key=key)
        names = [n.strip() for n in value.split(",") if n.strip()]
        if not names:
            raise UserError("Pick at least one placement for the pack.")
        return await self.queue_pack(
            actor, where, action.generation_id, action.index, names, key=key
        )

    def placement_choices(self, generation: Generation) -> tuple[tuple[str, str], ...]:
        """The 📦 menu's options for a result: its preset's placements (value, label)."""
        preset = self.presets.get(generation.params.preset)
        try:
            known = placements_for(preset.source_path if preset else None, generation.params.preset)
        except PresetError:  # the preset's placements file is broken: no menu, the button stays
            log.warning("placements of preset %s can't be read", generation.params.preset)
            return ()
        return tuple((p.name, f"{p.name} {p.size[0]}×{p.size[1]}") for p in known.values())

    async def queue_pack(
        self,
        actor: Actor,
        where: ReplyTarget | None,
        generation_id: uuid.UUID,
        index: int,
        placements: Sequence[str] | None = None,
        *,
        key: RequestKey | None = None,
    ) -> Ticket:
        """Queue the campaign pack of image ``index`` of a finished generation (module doc)."""
        self._check_ids(actor, where)
        _, records = self._upload_ports()
        async with self._uow() as uow:
            await self._first_time(uow, key)
            parent = await uow.repo.generation(generation_id)
            if parent is None:
                raise NotFound(f"There is no result {generation_id}; check the id.")
            if parent.kind is GenerationKind.PACK:
                raise UserError("That is a pack already; pack the image it was made from.")
            if parent.status is not GenerationStatus.DONE:
                raise UserError(
                    f"Result {generation_id} is {parent.status.value}, not finished; "
                    "pack it when it is done."
                )
            if not 1 <= index <= parent.image_count:
                raise UserError(
                    f"Result {generation_id} has images 1 to {parent.image_count}; pick one."
                )
            if await records.image_key(generation_id, index) is None:
                raise NotFound(f"Image {index} of {generation_id} is no longer stored.")
            preset = self.preset(parent.params.preset)
            known = placements_for(preset.source_path, preset.name)
            chosen = tuple(p.name for p in choose(known, placements)) if placements else ()
            campaign = await uow.repo.campaign(parent.campaign) if parent.campaign else None
            await self._gate(actor, "pack", campaign, generation_id, index)
            user_id = await uow.repo.ensure_user(actor)
            if campaign is not None:
                self._check_dates(campaign)
            params = dataclasses.replace(parent.params, n=1, placements=chosen)
            active = await self._check_quotas(uow, user_id, [params], preset.limits, campaign)
            child = await self._enqueue_child(
                uow, parent, GenerationKind.PACK, params, actor=actor, user_id=user_id,
                where=where, source_index=index, campaign=campaign, waiting=active,
            )  # fmt: skip
            await uow.repo.audit(
                actor_key(actor),
                "pack.queued",
                f"{generation_id}:{index}",
                {"generation": str(child), "placements": list(chosen) or "preset"},
                campaign.id if campaign else None,
            )
            ticket = await self._ticket(uow, [child])
            await uow.commit()
        return ticket

    async def pack_of(self, generation_id: uuid.UUID) -> StoredPack | None:
        """The pack a ``pack`` generation made (None until it is made)."""
        if self._packs is None:
            raise RuntimeError("Service was built without pack records")
        return await self._packs.of_generation(generation_id)

    async def check_export(
        self, actor: Actor, campaign_name: str, unapproved: Sequence[str]
    ) -> None:
        """Refuse an export of ``campaign_name`` holding images no reviewer approved
        (``unapproved``: their GEN:INDEX) when the campaign requires approval for exports."""
        async with self._uow() as uow:
            campaign = await uow.repo.campaign(campaign_name)
        if campaign is None or "export" not in campaign.require_approval or not unapproved:
            return
        subject = f"campaign:{campaign.name}"
        await self._refuse(
            actor,
            "export",
            campaign,
            subject,
            f"Campaign {campaign.name} exports only approved images, and {len(unapproved)} of "
            f"these have no approval yet (e.g. {unapproved[0]}).",
            {"unapproved": list(unapproved[:20])},
        )

    async def _gate(
        self,
        actor: Actor,
        what: str,
        campaign: Campaign | None,
        generation_id: uuid.UUID,
        index: int,
    ) -> None:
        """``NotAllowed`` (and an audit entry) when ``campaign`` requires approval for ``what``
        and image ``index`` of ``generation_id`` has none."""
        if campaign is None or what not in campaign.require_approval:
            return
        _, records = self._upload_ports()
        if await records.approvals(generation_id, index) > 0:
            return
        await self._refuse(
            actor,
            what,
            campaign,
            f"{generation_id}:{index}",
            f"Campaign {campaign.name} packs only approved images, and image {index} of "
            f"{generation_id} has no approval yet.",
            {"why": "not approved"},
        )

    async def _refuse(
        self,
        actor: Actor,
        what: str,
        campaign: Campaign,
        subject: str,
        message: str,
        details: dict[str, object],
    ) -> None:
        async with self._uow() as uow:
            await uow.repo.audit(actor_key(actor), f"{what}.refused", subject, details, campaign.id)
            await uow.commit()
        who = ", ".join(sorted(self.config.reviewers)) or "none are listed in ONBRAND_REVIEWERS"
        raise NotAllowed(
            f"{message} A reviewer ({who}; or a workspace's reviewers) approves an image with ✅; "
            f"then try again."
        )
