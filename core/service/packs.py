"""Campaign packs: every placement from one finished image (``onbrand pack GEN:INDEX``).

The use case: the image and its campaign, the approval gate, the placements (the preset's, or
the shipped set), the preset's logo, and provenance for every file (the source's watermark id,
a C2PA ``pack`` manifest with the source original as ingredient). The pixels are
``core.service.pack_pixels.build_pack``'s.

A pack starts from the image's **logo-free master** (``images.clean_key``, stored by finishing
when the preset draws a logo or badge), so each placement carries the logo once, at its own
rule. An image made before clean masters existed is packed from its original, and the manifest
says its own logo is in the picture.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Mapping, Sequence

from PIL import Image

from core.brand.logo import MAX_LOGO_SIDE, LogoError, preset_logo
from core.brand.placements import Placement, placements_for
from core.brand.presets import Preset
from core.domain import Actor, GenerationStatus, Params
from core.errors import NotAllowed, NotFound, UserError
from core.imaging.brand import decode_logo
from core.imaging.metadata import read_parameters
from core.imaging.placement_geometry import Box
from core.provenance import setup as provenance
from core.provenance.sign import Facts, sign
from core.provenance.watermark import embed, image_id_of
from core.service.base import actor_key
from core.service.pack_pixels import (
    OUTPAINT,
    PENDING_OUTPAINT,
    Pack,
    PackFile,
    PackPrompt,
    Seal,
    build_pack,
)
from core.service.uploads import Uploads

__all__ = [
    "FROM_ORIGINAL",
    "OUTPAINT",
    "PENDING_OUTPAINT",
    "Pack",
    "PackFile",
    "PackPrompt",
    "Packs",
    "build_pack",
    "pack_prompt",
]

FROM_ORIGINAL = (
    "made from the signed original: no logo-free master is stored for this image (made before "
    "they were), so its own logo shows in every file besides the placement's"
)


def choose(known: Mapping[str, Placement], names: Sequence[str] | None) -> list[Placement]:
    """The placements ``names`` asks for (all when ``None``); ``UserError`` for unknown ones."""
    if not names:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(
            f"Unknown placement {', '.join(map(repr, unknown))}; the placements are: "
            f"{', '.join(known)}."
        )
    return [known[n] for n in dict.fromkeys(names)]


def _logo(preset: Preset | None) -> Image.Image | None:
    if preset is None or preset.watermark is None:
        return None
    try:
        file = preset_logo(preset)
        if file is None:
            return None
        return decode_logo(file.data, formats=(file.format,), max_side=MAX_LOGO_SIDE)
    except (LogoError, OSError, ValueError) as exc:
        raise UserError(
            f"The watermark logo of preset {preset.name} can't be used ({exc}); an admin must "
            "fix the preset (`onbrand presets validate`)."
        ) from None


def pack_prompt(params: Params, index: int) -> PackPrompt:
    """What an engine generates a pack's new pixels from: image ``index``'s prompt and seed
    (``Params.seeds``: image i of a grid was made at seed + i - 1)."""
    return PackPrompt(
        params.prompt,
        params.negative_prompt,
        params.steps,
        params.guidance,
        (params.seed + index - 1) % 2**32,
    )


def scaled_box(params: Params, size: tuple[int, int]) -> Box | None:
    """A product shot's box in the stored image's pixels (an upscale is larger)."""
    if params.product_box is None or params.width < 1 or params.height < 1:
        return None
    x, y, w, h = params.product_box
    sx, sy = size[0] / params.width, size[1] / params.height
    return round(x * sx), round(y * sy), max(1, round(w * sx)), max(1, round(h * sy))


class Packs(Uploads):
    async def pack(
        self,
        actor: Actor,
        generation_id: uuid.UUID,
        index: int,
        placements: Sequence[str] | None = None,
    ) -> Pack:
        """The campaign pack of image ``index`` of a finished generation (module docstring)."""
        self._check_ids(actor)
        store, records = self._upload_ports()
        async with self._uow() as uow:
            generation = await uow.repo.generation(generation_id)
            campaign = (
                await uow.repo.campaign(generation.campaign)
                if generation is not None and generation.campaign
                else None
            )
        if generation is None:
            raise NotFound(f"There is no result {generation_id}; check the id.")
        if generation.status is not GenerationStatus.DONE:
            raise UserError(
                f"Result {generation_id} is {generation.status.value}, not finished; "
                "pack it when it is done."
            )
        if not 1 <= index <= generation.image_count:
            raise UserError(
                f"Result {generation_id} has images 1 to {generation.image_count}; pick one."
            )
        key = await records.image_key(generation_id, index)
        if key is None:
            raise NotFound(f"Image {index} of {generation_id} is no longer stored.")
        subject = f"{generation_id}:{index}"
        campaign_id = campaign.id if campaign else None
        if (
            campaign is not None
            and "pack" in campaign.require_approval
            and await records.approvals(generation_id, index) == 0
        ):
            async with self._uow() as uow:
                await uow.repo.audit(
                    actor_key(actor), "pack.refused", subject, {"why": "not approved"}, campaign_id
                )
                await uow.commit()
            who = ", ".join(sorted(self.config.reviewers)) or "none are listed in ONBRAND_REVIEWERS"
            raise NotAllowed(
                f"Campaign {campaign.name} packs only approved images, and image {index} of "
                f"{generation_id} has no approval yet. A reviewer ({who}; or a workspace's "
                "reviewers) approves it with ✅; then pack it again."
            )
        data = await store.get(key)
        clean_key = await records.clean_key(generation_id, index)
        clean = None if clean_key is None else await store.get(clean_key)
        preset = self.presets.get(generation.params.preset)
        chosen = choose(
            placements_for(preset.source_path if preset else None, generation.params.preset),
            placements,
        )
        logo = _logo(preset)
        opacity = preset.watermark.opacity if preset and preset.watermark else 0.8

        def decode() -> Image.Image:
            with Image.open(io.BytesIO(clean or data), formats=("PNG",)) as opened:
                return opened.convert("RGB")

        source = await asyncio.to_thread(decode)
        made = await build_pack(
            source,
            source_ref=f"{generation_id}:{index}",
            campaign=generation.campaign,
            placements=chosen,
            product_box=scaled_box(generation.params, source.size),
            logo=logo,
            logo_opacity=opacity,
            parameters=read_parameters(data),
            seal=_seal(generation_id, index, data),
            note=FROM_ORIGINAL if clean is None and _marks(preset) else "",
        )
        async with self._uow() as uow:
            details = {
                "placements": [f.placement for f in made.files],
                "bytes": len(made.zip_bytes),
            }
            await uow.repo.audit(actor_key(actor), "pack.made", subject, details, campaign_id)
            await uow.commit()
        return made


def _marks(preset: Preset | None) -> bool:
    return preset is not None and (preset.watermark is not None or preset.ai_badge is not None)


def _seal(generation_id: uuid.UUID, index: int, original: bytes) -> Seal:
    """Pack files carry their source's watermark id (verify finds the source image) and are
    signed as a ``pack`` resize of the source original, which travels as their ingredient."""
    credentials = provenance.current()
    image_id = image_id_of(str(generation_id), index)

    def sign_file(data: bytes, mime: str, placement: str, composite: bool) -> bytes:
        facts = Facts(
            title=f"onbrand {generation_id}#{index} {placement}",
            kind="pack_extend" if composite else "pack",
            generation_id=str(generation_id),
            index=index,
            watermark_id=image_id,
            model="",
            engine="",
            parent=original,
            parent_title=f"onbrand {generation_id}#{index}",
        )
        return sign(data, facts, credentials.keys, mime)

    return Seal(lambda im: embed(im, credentials.watermark_secret, image_id), sign_file)
