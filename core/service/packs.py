"""Campaign packs: every placement from one finished image (``onbrand pack GEN:INDEX``).

For each placement (``core.brand.placements``): crop or extend (``core.imaging.placement_geometry``
around the product's box of a product shot, else a model-free saliency box), Lanczos to the exact
size, the preset's logo per the placement's rule, encoded under the placement's byte limit with the
AI disclosure. The pack is a zip of ``<campaign>/<placement>.<ext>``, ``manifest.csv`` and
``contact-sheet.png``, built in memory: nothing is written unless it all worked.

In this first slice an extended placement is filled with its edges carried outwards, blurred, and
marked ``extend (pending outpaint)``; outpainting through the inpainting pipeline, queued jobs and
the approval gate come next.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import re
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from PIL import Image

from core.brand.logo import MAX_LOGO_SIDE, LogoError, preset_logo
from core.brand.placements import Placement, placements_for
from core.brand.presets import Preset
from core.domain import Actor, Generation, GenerationStatus
from core.errors import NotAllowed, NotFound, UserError
from core.imaging.brand import decode_logo
from core.imaging.metadata import read_parameters
from core.imaging.pack import contact_sheet, disclosure, encode, mark, render
from core.imaging.placement_geometry import Box, clamp_box, plan, saliency_box
from core.provenance import setup as provenance
from core.provenance.sign import Facts, sign
from core.provenance.watermark import embed, image_id_of
from core.service.base import actor_key
from core.service.uploads import Uploads

__all__ = ["Pack", "PackFile", "Packs", "build_pack"]

PENDING_OUTPAINT = "extend (pending outpaint)"
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)  # fixed, so the same pack gives the same zip


@dataclass(frozen=True)
class PackFile:
    placement: str
    path: str  # inside the zip
    size: tuple[int, int]
    bytes: int
    method: str
    quality: int | None
    sha256: str


@dataclass(frozen=True)
class Pack:
    source: str  # GEN:INDEX
    campaign: str
    files: tuple[PackFile, ...]
    zip_bytes: bytes
    contact_sheet: bytes  # PNG
    protected: Box
    protected_from: str  # "product" or "saliency"


@dataclass(frozen=True)
class Seal:
    """Provenance for pack files: the source's invisible watermark (a pixel step, before
    encoding) and a C2PA signature with the source original as ingredient (last)."""

    watermark: Callable[[Image.Image], Image.Image]
    sign: Callable[[bytes, str, str], bytes]  # (file, mime, placement name) → signed file


_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_SIGNATURE_SLACK = 1024  # bytes kept free for the manifest's small size changes between tries


def _encoded(
    image: Image.Image,
    placement: Placement,
    extended: bool,
    parameters: str | None,
    seal: Seal | None,
) -> tuple[bytes, int | None]:
    """The placement's file under its byte limit, signed when ``seal`` asks; the signature's
    bytes count against the limit (the quality search runs again with them reserved)."""
    limit = placement.max_bytes
    for _ in range(3):
        try:
            data, quality = encode(
                image,
                placement.format,
                limit,
                xmp=disclosure(composite=extended),
                parameters=parameters,
            )
        except ValueError as exc:
            raise UserError(f"Placement {placement.name}: {exc}.") from None
        if seal is None:
            return data, quality
        signed = seal.sign(data, _MIME[placement.format.lower()], placement.name)
        if len(signed) <= placement.max_bytes:
            return signed, quality
        limit = placement.max_bytes - (len(signed) - len(data)) - _SIGNATURE_SLACK
        if limit <= 0:
            break
    raise UserError(
        f"Placement {placement.name}: its signed file can't be made under "
        f"{placement.max_bytes:,} bytes; raise the placement's max_bytes."
    )


def _folder(campaign: str | None) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", campaign or "").strip("-.") or "onbrand"
    return name[:60]


def build_pack(
    source: Image.Image,
    *,
    source_ref: str,
    campaign: str | None,
    placements: Sequence[Placement],
    product_box: Box | None = None,
    logo: Image.Image | None = None,
    logo_opacity: float = 0.8,
    parameters: str | None = None,
    seal: Seal | None = None,
) -> Pack:
    """The pack's files, manifest and contact sheet (pure: pixels in, zip bytes out).
    ``UserError`` names the placement whose file can't be made under its byte limit."""
    box = clamp_box(product_box, source.size) if product_box else saliency_box(source)
    folder = _folder(campaign)
    files: list[PackFile] = []
    thumbs: list[tuple[str, Image.Image]] = []
    blobs: list[tuple[str, bytes]] = []
    for placement in placements:
        safe = placement.safe.as_tuple()
        decided = plan(source.size, box, placement.size, safe)
        image = render(source, decided, placement.size)
        if logo is not None and not placement.no_logo:
            rule = placement.watermark
            image = mark(
                image, logo, corner=rule.corner, scale=rule.scale, opacity=logo_opacity, safe=safe
            )
        extended = decided.method == "extend"
        if seal is not None:
            image = seal.watermark(image)
        data, quality = _encoded(image, placement, extended, parameters, seal)
        path = f"{folder}/{placement.name}.{placement.extension}"
        method = PENDING_OUTPAINT if extended else "crop"
        files.append(
            PackFile(
                placement.name,
                path,
                placement.size,
                len(data),
                f"{method}, lanczos",
                quality,
                hashlib.sha256(data).hexdigest(),
            )
        )
        blobs.append((path, data))
        label = f"{placement.name}\n{placement.size[0]}x{placement.size[1]} {method}"
        thumbs.append((label, image))
    sheet = contact_sheet(thumbs, title=f"{folder} from {source_ref}")
    sheet_buf = io.BytesIO()
    sheet.save(sheet_buf, "PNG", compress_level=6)
    manifest = io.StringIO()
    writer = csv.writer(manifest, lineterminator="\n")
    writer.writerow(["placement", "size", "bytes", "method", "source", "sha256"])
    for f in files:
        writer.writerow(
            [f.placement, f"{f.size[0]}x{f.size[1]}", f.bytes, f.method, source_ref, f.sha256]
        )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path, data in blobs:
            archive.writestr(zipfile.ZipInfo(path, _ZIP_TIME), data, zipfile.ZIP_STORED)
        for path, data, how in (
            (f"{folder}/manifest.csv", manifest.getvalue().encode("utf-8"), zipfile.ZIP_DEFLATED),
            (f"{folder}/contact-sheet.png", sheet_buf.getvalue(), zipfile.ZIP_STORED),
        ):
            archive.writestr(zipfile.ZipInfo(path, _ZIP_TIME), data, how)
    return Pack(
        source_ref,
        folder,
        tuple(files),
        out.getvalue(),
        sheet_buf.getvalue(),
        box,
        "product" if product_box else "saliency",
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


def _scaled_box(generation: Generation, size: tuple[int, int]) -> Box | None:
    """A product shot's box in the stored image's pixels (an upscale is larger)."""
    params = generation.params
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
        preset = self.presets.get(generation.params.preset)
        chosen = choose(
            placements_for(preset.source_path if preset else None, generation.params.preset),
            placements,
        )
        logo = _logo(preset)
        opacity = preset.watermark.opacity if preset and preset.watermark else 0.8

        def make() -> Pack:
            with Image.open(io.BytesIO(data)) as opened:
                source = opened.convert("RGB")
            return build_pack(
                source,
                source_ref=f"{generation_id}:{index}",
                campaign=generation.campaign,
                placements=chosen,
                product_box=_scaled_box(generation, source.size),
                logo=logo,
                logo_opacity=opacity,
                parameters=read_parameters(data),
                seal=_seal(generation_id, index, data),
            )

        made = await asyncio.to_thread(make)
        async with self._uow() as uow:
            details = {
                "placements": [f.placement for f in made.files],
                "bytes": len(made.zip_bytes),
            }
            await uow.repo.audit(actor_key(actor), "pack.made", subject, details, campaign_id)
            await uow.commit()
        return made


def _seal(generation_id: uuid.UUID, index: int, original: bytes) -> Seal:
    """Pack files carry their source's watermark id (verify finds the source image) and are
    signed as a ``pack`` resize of the source original, which travels as their ingredient."""
    credentials = provenance.current()
    image_id = image_id_of(str(generation_id), index)

    def sign_file(data: bytes, mime: str, placement: str) -> bytes:
        facts = Facts(
            title=f"onbrand {generation_id}#{index} {placement}",
            kind="pack",
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
