"""Remix: a result made again with an edited prompt, its seed and parameters kept.

A remix is recorded as a **reroll** (``GenerationKind.REROLL``, the parent recorded, no source
image) rather than a kind of its own: the worker already runs a reroll as text-to-image from the
parameters it is given (and ``child_of_upload`` makes a reroll of an image prompt, product shot or
edit the same kind again from the same input), so no new kind, migration or worker change is
needed. What differs from 🔄 is only the parameters: the seed stays, and the prompt and negative
prompt come from the new text through the preset's template and the same policy as ``/imagine``
(banned terms raise ``BlockedPrompt``). ``raw_prompt`` is the new text, so the card, search and
reports show what the person wrote; the lineage (``parent_id``) says what it was remixed from.

**One image** (``index`` 1–4: the Remix button under a single image or an upscale,
``onbrand remix GEN:INDEX``) is remixed alone: one image (``n = 1``) at that image's own seed
(``Params.seeds()``: consecutive per image) with the settings it was made with, recorded as a
reroll of the pressed result with ``source_index`` = ``index``. An upscale has no settings of its
own to redraw with (it resampled a picture), so its remix redraws the image it upscaled, from the
upscale's own parent: a remix of an upscaled product shot is a product shot again, at the size
the product shot was made at (upscale the remix to enlarge it).
"""

from __future__ import annotations

import dataclasses
import re
import uuid

from core.brand.presets import apply_preset
from core.domain import (
    Actor,
    Generation,
    GenerationKind,
    GenerationStatus,
    ImagineRequest,
    Params,
    ReplyTarget,
    RequestKey,
    Ticket,
)
from core.errors import NotFound, UserError
from core.ports import UnitOfWork
from core.service.base import UseCase
from core.service.images_in import child_of_upload
from core.service.imagine import pseudonym

__all__ = ["MAX_REMIX_PROMPT", "Remix"]

MAX_REMIX_PROMPT = 1500
_FLAG = re.compile(r"(?:^|\s)--[a-z]")


class Remix(UseCase):
    async def remix(
        self,
        actor: Actor,
        where: ReplyTarget | None,
        generation_id: uuid.UUID,
        prompt: str,
        *,
        index: int = 0,
        key: RequestKey | None = None,
    ) -> Ticket:
        """Queue result ``generation_id`` again with ``prompt`` instead of its prompt, the same
        seed, size and settings: all of it (``index`` 0) or its image ``index`` alone (1–4, see
        the module docstring). ``key``: the platform's id for this request (a copy of it is
        refused as a duplicate)."""
        text = " ".join(prompt.split())
        if not text:
            raise UserError("Write the new prompt for the remix (the old one is there to edit).")
        if len(text) > MAX_REMIX_PROMPT:
            raise UserError(f"The prompt is {len(text)} characters; keep it to {MAX_REMIX_PROMPT}.")
        if _FLAG.search(text):
            raise UserError(
                "A remix changes the words only and keeps the settings; remove the --flags, "
                "or use /imagine to change them."
            )
        self._check_ids(actor, where)
        async with self._uow() as uow:
            await self._first_time(uow, key)
            parent = await uow.repo.generation(generation_id)
            if parent is None:
                raise NotFound("That result no longer exists, so it can't be remixed.")
            base, params = await _remixed(uow, parent, index)
            preset = self.preset(params.preset)
            fresh = apply_preset(
                ImagineRequest(prompt=text),
                preset,
                global_banned=self.config.global_banned,
                seed_source=lambda: params.seed,
            )
            params = dataclasses.replace(
                params, prompt=fresh.prompt, negative_prompt=fresh.negative_prompt
            )
            kind, params = child_of_upload(base, GenerationKind.REROLL, params, preset)
            user_id = await uow.repo.ensure_user(actor)
            campaign = await uow.repo.campaign(parent.campaign) if parent.campaign else None
            if campaign is not None:
                self._check_dates(campaign)
                if campaign.share_prompt:  # the words are the remixer's now
                    params = dataclasses.replace(params, prompt_writer=pseudonym(actor))
            active = await self._check_quotas(uow, user_id, [params], preset.limits, campaign)
            child = await self._enqueue_child(
                uow, parent, kind, params, actor=actor, user_id=user_id, where=where,
                source_index=index or None, campaign=campaign, waiting=active, raw_prompt=text,
            )  # fmt: skip
            ticket = await self._ticket(uow, [child])
            await uow.commit()
        return ticket


async def _remixed(uow: UnitOfWork, parent: Generation, index: int) -> tuple[Generation, Params]:
    """The generation whose settings a remix redraws, and those settings: ``parent``'s own for
    all of it; for image ``index``, that image's seed with ``n = 1`` (an upscale: the image it
    upscaled, from the upscale's parent)."""
    if index == 0:
        return parent, parent.params
    if parent.status is not GenerationStatus.DONE:
        raise UserError("That result isn't finished; wait for it, then remix an image of it.")
    if not 1 <= index <= parent.image_count:
        raise UserError(f"Result {parent.id} has images 1 to {parent.image_count}; pick one.")
    base, image = parent, index
    if parent.kind is GenerationKind.UPSCALE and parent.parent_id and parent.source_index:
        source = await uow.repo.generation(parent.parent_id)
        if source is None:
            raise NotFound("The result that image was upscaled from no longer exists.")
        base, image = source, parent.source_index
    seed = base.params.seeds()[image - 1] if image <= base.params.n else base.params.seed
    return base, dataclasses.replace(base.params, seed=seed, n=1)
