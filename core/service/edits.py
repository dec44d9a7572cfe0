"""Edits of a result: zoom out, pan and vary region (``onbrand edit GEN:INDEX``).

Each edit is a generation with its kind, its parent and the image it started from (the parent's
``source_index``), through the same queue, quotas and reports as ``/imagine``. The service makes
the new canvas as a layer of what is kept (``core.imaging.canvas``) and stores it; the worker
generates the rest (inpainting on the preset's model) and pastes the kept pixels back last:

- **zoom out** 1.5× / 2×: the same size; the original, downscaled once, bit-identical in the
  centre; the border generated;
- **pan** left / right / up / down: the canvas extended by half (a multiple of 8) that way; the
  original's pixels bit-identical where they were;
- **vary region** (``onbrand edit --region``, the chat's "Vary (Region)" menu: ``choose``): a
  named region (3×3 cells ``top-left`` … ``bottom-right``, ``center``, the
  halves) generated again, optionally with a new prompt; outside it bit-identical, a feathered
  seam inside it.

Sizes stay multiples of 8, at most 4096 a side and at most four times the preset's largest
size in pixels (what an upscale of it may have).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import uuid

from PIL import Image

from core.brand.presets import DEFAULT_N, Preset, apply_preset
from core.domain import (
    EDIT_ACTIONS,
    Action,
    ActionKind,
    Actor,
    GenerationKind,
    GenerationStatus,
    ImagineRequest,
    Params,
    ReplyTarget,
    RequestKey,
    Ticket,
)
from core.errors import NotFound, UserError
from core.imaging.canvas import (
    PAN_DIRECTIONS,
    REGIONS,
    ZOOM_FACTORS,
    Kept,
    pan,
    vary_region,
    zoom_out,
)
from core.service.buttons import Buttons
from core.service.images_in import ImagesIn

__all__ = ["Edits"]

MAX_SIDE = 4096


class Edits(ImagesIn, Buttons):
    async def act(
        self,
        custom_id: str,
        actor: Actor,
        where: ReplyTarget | None = None,
        *,
        key: RequestKey | None = None,
    ) -> Ticket:
        """Buttons, with the edit buttons (zoom out, pan) of a single image added."""
        try:
            action = Action.parse(custom_id)
        except ValueError:
            action = None
        if action is not None and action.kind is ActionKind.VARY_REGION:
            raise UserError("Pick a region from the Vary (Region) menu.")
        if action is not None and action.kind is ActionKind.REMIX:
            raise UserError("Remix opens a form for the new prompt; press Remix again.")
        if action is None or action.kind not in EDIT_ACTIONS:
            return await super().act(custom_id, actor, where, key=key)
        what, value = EDIT_ACTIONS[action.kind]
        return await self.edit(
            actor,
            where,
            action.generation_id,
            action.index,
            zoom=float(value) if what == "zoom" else None,
            direction=str(value) if what == "pan" else None,
            key=key,
        )

    async def choose(
        self,
        custom_id: str,
        value: str,
        actor: Actor,
        where: ReplyTarget | None = None,
        *,
        key: RequestKey | None = None,
    ) -> Ticket:
        """A choice in a result's menu: ``Vary (Region)`` (``ob:vr:<generation>:<index>``, the
        value a region's name) redraws that region of the image with the result's prompt."""
        try:
            action = Action.parse(custom_id)
        except ValueError:
            action = None
        if action is None or action.kind is not ActionKind.VARY_REGION:
            raise UserError("That menu isn't one of onbrand's.")
        return await self.edit(
            actor, where, action.generation_id, action.index, region=value, key=key
        )

    async def edit(
        self,
        actor: Actor,
        where: ReplyTarget | None,
        generation_id: uuid.UUID,
        index: int,
        *,
        zoom: float | None = None,
        direction: str | None = None,
        region: str | None = None,
        prompt: str | None = None,
        key: RequestKey | None = None,
    ) -> Ticket:
        """Queue one edit of image ``index`` of a finished generation (see the module docstring).
        ``key``: the platform's id for this request (a copy of it is refused as a duplicate)."""
        kind = _kind(zoom, direction, region, prompt)
        self._check_ids(actor, where)
        store, records = self._upload_ports()
        async with self._uow() as uow:
            await self._first_time(uow, key)
            parent = await uow.repo.generation(generation_id)
            if parent is None:
                raise NotFound(f"There is no result {generation_id}; check the id.")
            if parent.status is not GenerationStatus.DONE:
                raise UserError("That result isn't finished; wait for it, then edit it.")
            if not 1 <= index <= parent.image_count:
                raise UserError(
                    f"Result {generation_id} has images 1 to {parent.image_count}; pick one."
                )
            source_key = await records.image_key(generation_id, index)
            if source_key is None:
                raise NotFound(f"Image {index} of {generation_id} is no longer stored.")
            source = await store.get(source_key)
            kept = await asyncio.to_thread(_kept, source, kind, zoom, direction, region)
            preset = self.preset(parent.params.preset)
            width, height = kept.layer.size
            _check_size(width, height, preset)
            params = dataclasses.replace(
                parent.params,
                width=width,
                height=height,
                seed=self._seed(),
                n=DEFAULT_N,
                strength=1.0,
                init_image=await store.put(_png(kept.layer), suffix=".png"),
                product_box=None if kind is GenerationKind.VARY_REGION else kept.box,
                edit_region=kept.box if kind is GenerationKind.VARY_REGION else None,
            )
            if prompt:
                params = self._reprompt(params, preset, prompt)
            user_id = await uow.repo.ensure_user(actor)
            campaign = await uow.repo.campaign(parent.campaign) if parent.campaign else None
            if campaign is not None:
                self._check_dates(campaign)
            active = await self._check_quotas(uow, user_id, [params], preset.limits, campaign)
            child = await self._enqueue_child(
                uow, parent, kind, params, actor=actor, user_id=user_id, where=where,
                source_index=index, campaign=campaign, waiting=active, raw_prompt=prompt or None,
            )  # fmt: skip
            ticket = await self._ticket(uow, [child])
            await uow.commit()
        return ticket

    def _reprompt(self, params: Params, preset: Preset, prompt: str) -> Params:
        """A new prompt for a varied region, through the preset's template and policy."""
        fresh = apply_preset(
            ImagineRequest(prompt=prompt),
            preset,
            global_banned=self.config.global_banned,
            seed_source=lambda: params.seed,
        )
        return dataclasses.replace(
            params, prompt=fresh.prompt, negative_prompt=fresh.negative_prompt
        )


def _kind(
    zoom: float | None, direction: str | None, region: str | None, prompt: str | None
) -> GenerationKind:
    asked = [
        name for name, value in (("zoom", zoom), ("pan", direction), ("region", region)) if value
    ]
    if len(asked) != 1:
        raise UserError(
            "Give one edit: --zoom-out 1.5|2, --pan left|right|up|down or --region NAME."
        )
    if zoom is not None and zoom not in ZOOM_FACTORS:
        raise UserError(f"--zoom-out {zoom:g} can't be used; use 1.5 or 2.")
    if direction is not None and direction not in PAN_DIRECTIONS:
        raise UserError(
            f"--pan {direction} can't be used; use one of: {', '.join(PAN_DIRECTIONS)}."
        )
    if region is not None and region not in REGIONS:
        raise UserError(
            f"--region {region} can't be used; use one of: {', '.join(sorted(REGIONS))}."
        )
    if prompt and region is None:
        raise UserError("--prompt goes with --region (a region drawn again with a new prompt).")
    if zoom is not None:
        return GenerationKind.ZOOM_OUT
    return GenerationKind.PAN if direction is not None else GenerationKind.VARY_REGION


def _kept(
    data: bytes, kind: GenerationKind, zoom: float | None, direction: str | None, region: str | None
) -> Kept:
    with Image.open(io.BytesIO(data), formats=("PNG",)) as opened:
        image = opened.convert("RGB")
    if kind is GenerationKind.ZOOM_OUT:
        assert zoom is not None
        return zoom_out(image, zoom)
    if kind is GenerationKind.PAN:
        assert direction is not None
        return pan(image, direction)
    assert region is not None
    return vary_region(image, region)


def _check_size(width: int, height: int, preset: Preset) -> None:
    most = 4 * max(w * h for w, h in preset.aspect_ratios.values())
    if width % 8 or height % 8 or max(width, height) > MAX_SIDE or width * height > most:
        raise UserError(
            f"This edit would make a {width}×{height} image, more than preset {preset.name} "
            f"allows ({most:,} pixels, {MAX_SIDE} a side, multiples of 8). Edit a smaller image "
            "(not an upscale), or pan the other way."
        )


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
