"""Images in: ``/imagine`` that starts from an upload, as an image prompt or a product shot.

Same path as ``/imagine`` (grammar, binding, preset, policy, quotas, one unit of work for the
records and the queue), with the upload's part on top:

- **Image prompt** (``ImageMode.IMAGE_PROMPT``): image-to-image from the upload. ``iw`` is
  Midjourney's image weight (0–3, higher = closer to the image), mapped to diffusers' img2img
  strength (the share of the denoising that is redone) as ``strength = 1 / (1 + iw)``: iw 0 →
  1.0 (the image is only a start), 0.5 → 0.67, 1 → 0.5, 2 → 0.33, 3 → 0.25. The preset may
  forbid image prompts, bound ``iw`` (``iw_min``/``iw_max``) or lock it to its default.
- **Product shot** (``ImageMode.PRODUCT``): the product is cut out (the ``Matter`` port:
  the key-out, or a learned model the operator configured, ``core.imaging.matting``),
  placed in the preset's box for the request's aspect (never enlarged; scaled down once when too
  big), and that placed product is stored by content hash: the worker generates the scene around
  it and pastes its pixels back last. The box goes into the parameters.

Either way the generation records the upload (``upload_id``; its hash in the parameters) and its
kind says how it was used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io

from PIL import Image

from core.brand import grammar
from core.brand.presets import Preset
from core.domain import (
    Actor,
    Generation,
    GenerationKind,
    ImageMode,
    ImagineRequest,
    Params,
    ReplyTarget,
    RequestKey,
    Ticket,
    Upload,
)
from core.errors import LockedSetting, NotAllowed, UserError
from core.imaging.matting import KeyOut
from core.imaging.product import PlacedProduct, place_product
from core.ports import Matter
from core.service.imagine import Imagine
from core.service.uploads import Uploads

__all__ = ["ImagesIn", "child_of_upload", "iw_strength"]

PRODUCT_ENGINES = ("diffusers", "openai", "fake")  # the engines that inpaint
FROM_IMAGES = frozenset(
    {
        GenerationKind.IMAGE_PROMPT,
        GenerationKind.PRODUCT,
        GenerationKind.ZOOM_OUT,
        GenerationKind.PAN,
        GenerationKind.VARY_REGION,
    }
)  # engines that inpaint (core.ports.Inpainter)


def iw_strength(iw: float) -> float:
    """Image weight (0–3) → img2img strength (see the module docstring)."""
    return round(1.0 / (1.0 + iw), 4)


class ImagesIn(Imagine, Uploads):
    _matter: Matter | None = None  # wired by ``Service`` (``matter=``); None: the key-out

    async def imagine_with_image(
        self,
        text: str,
        actor: Actor,
        where: ReplyTarget,
        upload_id: int,
        *,
        mode: ImageMode = ImageMode.IMAGE_PROMPT,
        iw: float | None = None,
        key: RequestKey | None = None,
    ) -> Ticket:
        """``/imagine`` from an upload; the ticket's warnings carry notes for the user.
        ``key``: the platform's id for this request (a copy of it is refused as a duplicate)."""
        requests = grammar.parse(text)
        self._check_ids(actor, where)
        upload = await self.upload_by_id(upload_id)
        store, _ = self._upload_ports()
        product: tuple[Image.Image, Image.Image] | None = None
        if mode is ImageMode.PRODUCT:
            data = await store.get(upload.storage_key)
            product = await asyncio.to_thread(_cut_out, data, self._matter or KeyOut())
        notes: list[str] = list(upload.notes)

        async def shape(params: Params, preset: Preset, request: ImagineRequest) -> Params:
            if product is None:
                return _image_prompt(params, preset, upload, iw)
            aspect = request.aspect or preset.default_aspect
            placed = await asyncio.to_thread(_place, product, params, preset, aspect)
            placed_key = await store.put(_png(placed.image), suffix=".png")
            params = _product(params, preset, upload, placed, placed_key)
            if placed.small:
                notes.append(_small_note(placed, params, preset, aspect))
            return params

        ticket = await self._queue(
            requests,
            actor,
            where,
            key=key,
            kind=GenerationKind(mode.value),
            shape=shape,
            upload_id=upload.id,
        )
        return dataclasses.replace(ticket, warnings=(*ticket.warnings, *dict.fromkeys(notes)))


def child_of_upload(
    parent: Generation, kind: GenerationKind, params: Params, preset: Preset | None
) -> tuple[GenerationKind, Params]:
    """A button's child of a result made from an image (image prompt, product shot, edit): a
    reroll makes the same kind again from the same input (new seed); an upscale or variation
    works on the chosen image like on any grid (the preset's variation strength, no input image,
    no kept box or region)."""
    if parent.kind not in FROM_IMAGES:
        return kind, params
    if kind is GenerationKind.REROLL:
        return parent.kind, params
    strength = preset.engine.strength if preset is not None else Params.strength
    return kind, dataclasses.replace(params, init_image=None, product_box=None, strength=strength)


def _image_prompt(params: Params, preset: Preset, upload: Upload, iw: float | None) -> Params:
    spec = preset.image_prompt
    if not spec.allowed:
        raise NotAllowed(
            f"The {preset.brand} brand (preset {preset.name}) doesn't take image prompts; "
            "send the prompt without an image."
        )
    if iw is not None and spec.locked and iw != spec.iw:
        raise LockedSetting(
            f"The image weight is locked to {spec.iw:g} by the {preset.brand} brand "
            f"(preset {preset.name}); remove --iw and try again."
        )
    weight = spec.iw if iw is None else iw
    if not spec.iw_min <= weight <= spec.iw_max:
        raise UserError(
            f"--iw {weight:g} is outside what preset {preset.name} allows; "
            f"use a value from {spec.iw_min:g} to {spec.iw_max:g}."
        )
    strength = iw_strength(weight)
    if int(params.steps * strength) < 1:
        most = params.steps - 1
        raise UserError(
            f"--iw {weight:g} keeps so much of the image that {params.steps} steps leave none "
            f"to run; use --iw {most:g} or less."
        )
    return dataclasses.replace(
        params, strength=strength, upload=upload.sha256, init_image=upload.storage_key
    )


def _product(
    params: Params, preset: Preset, upload: Upload, placed: PlacedProduct, key: str
) -> Params:
    if not preset.product.allowed:
        raise NotAllowed(
            f"The {preset.brand} brand (preset {preset.name}) doesn't make product shots; "
            "send the prompt without a product."
        )
    if params.engine not in PRODUCT_ENGINES:
        raise UserError(
            f"Product shots need a preset on an engine that inpaints (diffusers or openai); "
            f"preset {preset.name} uses {params.engine}. Pick another preset with --preset."
        )
    return dataclasses.replace(
        params, strength=1.0, upload=upload.sha256, init_image=key, product_box=placed.box
    )


def _small_note(placed: PlacedProduct, params: Params, preset: Preset, aspect: str) -> str:
    spot = preset.product.placement(aspect)
    _, _, w, h = placed.box
    return (
        f"Your product is {w}×{h} px, smaller than its place in a {params.width}×"
        f"{params.height} image ({spot.scale:.0%} of it), so it was kept at its own size "
        "(products are never enlarged). Send a larger photo to fill the space."
    )


def _cut_out(data: bytes, matter: Matter) -> tuple[Image.Image, Image.Image]:
    """The upload's pixels and the product's alpha (``UserError`` when there is no product)."""
    with Image.open(io.BytesIO(data), formats=("PNG",)) as opened:
        image = opened.convert("RGBA") if opened.mode == "RGBA" else opened.convert("RGB")
    return image, matter.alpha(image)


def _place(
    product: tuple[Image.Image, Image.Image], params: Params, preset: Preset, aspect: str
) -> PlacedProduct:
    spot = preset.product.placement(aspect)
    image, alpha = product
    return place_product(
        image,
        alpha,
        (params.width, params.height),
        anchor=spot.anchor,
        scale=spot.scale,
        margin=spot.margin,
    )


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
