"""``/imagine``: parse, apply the channel's binding, the brand's preset and policy, check quotas,
then record and enqueue every request in one unit of work (or nothing)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence

from core.brand import grammar
from core.brand.presets import Preset, apply_preset
from core.domain import (
    Actor,
    Binding,
    Campaign,
    GenerationKind,
    ImagineRequest,
    NewGeneration,
    Params,
    ReplyTarget,
    RequestKey,
    Ticket,
)
from core.errors import BlockedPrompt, LockedSetting, NotFound
from core.ports import UnitOfWork
from core.service.base import UseCase, actor_key
from core.service.styles import StyleRegistry, resolve_style

log = logging.getLogger(__name__)

Shape = Callable[[Params, Preset, ImagineRequest], Awaitable[Params]]
"""Adjusts one request's parameters after its preset is applied (``Imagine._queue``)."""


class Imagine(UseCase):
    _style_codes: StyleRegistry | None = None  # wired by ``Service`` (core.service.styles)

    async def imagine(
        self, text: str, actor: Actor, where: ReplyTarget, *, key: RequestKey | None = None
    ) -> Ticket:
        """Parse, apply the brand's preset and policy, check quotas, record and enqueue.

        ``key``: the platform's id for this request; a copy of a request already recorded
        raises ``DuplicateRequest`` and changes nothing (``UseCase._first_time``)."""
        requests = grammar.parse(text)
        self._check_ids(actor, where)
        return await self._queue(requests, actor, where, key=key)

    async def _queue(
        self,
        requests: Sequence[ImagineRequest],
        actor: Actor,
        where: ReplyTarget,
        *,
        key: RequestKey | None,
        kind: GenerationKind = GenerationKind.IMAGINE,
        shape: Shape | None = None,
        upload_id: int | None = None,
    ) -> Ticket:
        """Apply the binding, preset and policy to each request, check quotas, then record and
        enqueue them all in one unit of work (or nothing). ``shape`` adjusts each request's
        parameters after the preset (image prompts and product shots: core.service.images_in);
        ``kind`` and ``upload_id`` are recorded with each generation."""
        checking: tuple[ImagineRequest, Preset, Campaign | None] | None = None
        try:
            async with self._uow() as uow:
                await self._first_time(uow, key)
                user_id = await uow.repo.ensure_user(actor)
                binding = await uow.repo.binding_for(where)
                planned: list[tuple[Params, Preset, Campaign | None, str]] = []
                for request in requests:
                    preset, campaign = await self._context(uow, request, binding)
                    checking = (request, preset, campaign)
                    params = apply_preset(
                        request,
                        preset,
                        global_banned=self.config.global_banned,
                        seed_source=self._seed,
                    )
                    params = prompt_travel(params, campaign, actor)
                    params = await resolve_style(self._style_codes, params, preset, actor)
                    if shape is not None:
                        params = await shape(params, preset, request)
                    planned.append((params, preset, campaign, request.prompt))

                _, first_preset, first_campaign, _ = planned[0]
                active = await self._check_quotas(
                    uow, user_id, [p for p, *_ in planned], first_preset.limits, first_campaign
                )
                ids: list[uuid.UUID] = []
                for params, preset, campaign, raw_prompt in planned:
                    preset_id = await uow.repo.record_preset(
                        preset.name, preset.version, preset.source_text
                    )
                    generation = NewGeneration(
                        id=uuid.uuid4(),
                        kind=kind,
                        platform=actor.platform,
                        user_id=user_id,
                        campaign_id=campaign.id if campaign else None,
                        preset_id=preset_id,
                        raw_prompt=raw_prompt,
                        params=params,
                        reply_target=where,
                        upload_id=upload_id,
                    )
                    await self._record_and_enqueue(uow, generation, campaign, active + len(ids))
                    ids.append(generation.id)
                ticket = await self._ticket(uow, ids)
                await uow.commit()
        except BlockedPrompt as blocked:
            # Nothing of the request was kept; the attempt itself is recorded for the brand.
            assert checking is not None
            await self._audit_blocked(actor, where, *checking, blocked)
            raise
        return ticket

    async def _context(
        self, uow: UnitOfWork, request: ImagineRequest, binding: Binding | None
    ) -> tuple[Preset, Campaign | None]:
        """The preset and campaign a request runs under: binding, flags, then defaults."""
        campaign: Campaign | None = None
        if binding is not None:
            if binding.locked and request.campaign and request.campaign != binding.campaign:
                raise LockedSetting(
                    f"This channel is locked to campaign {binding.campaign or '(none)'}; "
                    f"remove --campaign {request.campaign} and try again."
                )
            if binding.locked and request.preset and request.preset != binding.preset:
                raise LockedSetting(
                    f"This channel is locked to preset {binding.preset}; "
                    f"remove --preset {request.preset} and try again."
                )
        campaign_name = request.campaign or (binding.campaign if binding else None)
        if campaign_name:
            campaign = await uow.repo.campaign(campaign_name)
            if campaign is None:
                raise NotFound(
                    f"There is no campaign called {campaign_name}. "
                    "`/imagine-admin campaigns` lists them."
                )
            self._check_dates(campaign)
        preset_name = (
            request.preset
            or (binding.preset if binding else None)
            or (campaign.preset if campaign else None)
            or self.config.default_preset
        )
        return self.preset(preset_name), campaign

    async def _audit_blocked(
        self,
        actor: Actor,
        where: ReplyTarget,
        request: ImagineRequest,
        preset: Preset,
        campaign: Campaign | None,
        blocked: BlockedPrompt,
    ) -> None:
        """Blocked prompts are recorded (who, where, which term) in their own transaction."""
        async with self._uow() as uow:
            await uow.repo.audit(
                actor_key(actor),
                "prompt.blocked",
                f"{where.platform.value}:{where.channel_id}",
                {"term": blocked.term, "prompt": request.prompt, "preset": preset.name},
                campaign_id=campaign.id if campaign else None,
            )
            await uow.commit()
        log.info("blocked prompt from %s: term %r", actor_key(actor), blocked.term)


def prompt_travel(params: Params, campaign: Campaign | None, actor: Actor) -> Params:
    """Whether the prompt may travel in the files: a campaign decides (``share_prompt``, off by
    default: launch campaigns are often confidential); work outside campaigns carries it. When it
    travels, its writer is named by pseudonym (IPTC AIPromptWriterName)."""
    if campaign is None:
        return params
    if campaign.share_prompt:
        return dataclasses.replace(params, prompt_writer=pseudonym(actor))
    return dataclasses.replace(params, confidential=True)


def pseudonym(actor: Actor) -> str:
    """The stable stand-in for a prompt's writer: the reports' formula
    (``core.reports.queries.pseudonym``; a test checks that the two agree)."""
    key = f"{actor.platform.value}:{actor.workspace_id}:{actor.user_id}"
    return "user-" + hashlib.sha256(key.encode()).hexdigest()[:10]
