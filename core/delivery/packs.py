"""A finished pack back in the chat: its contact sheet and, within the upload limit, its zip.

A ``pack`` generation has no images of its own; its result card carries the contact sheet (a
JPEG preview) and the zip as a file (``application/zip``), which each platform uploads as an
attachment (Slack ``files_upload_v2``, Discord a message file). A zip over the platform's upload
limit stays in onbrand's image store, and the card gives the command that writes it
(``onbrand fetch <pack id>``), which needs no upload limit.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from core.cards import result_card
from core.db import delivery as queries
from core.db.database import Database
from core.db.packs import StoredPack
from core.domain import CardImage, Generation, GenerationStatus, ResultCard
from core.errors import NotFound
from core.imaging.preview import encode_preview
from core.ports import ImageStore
from core.service import Service

__all__ = ["SHEET_SHARE", "ZIP_TYPE", "StoredPack", "pack_card", "pack_files", "save_pack"]

ZIP_TYPE = "application/zip"
SHEET_SHARE = 4  # the contact sheet's preview gets at most a quarter of the upload limit


async def pack_card(
    service: Service, store: ImageStore, generation: Generation, *, max_bytes: int
) -> ResultCard:
    """The card of a finished ``pack`` generation (failed and cancelled ones as any other)."""
    if generation.status is not GenerationStatus.DONE:
        return result_card(generation, [])
    pack = await service.pack_of(generation.id)
    if pack is None:
        raise LookupError(f"pack {generation.id} is done but not recorded")
    with Image.open(io.BytesIO(await store.get(pack.sheet_key))) as sheet:
        preview = encode_preview(sheet, max_bytes=max_bytes // SHEET_SHARE)
    images = [CardImage(f"{pack.folder}-pack-sheet.jpg", preview, "image/jpeg")]
    size = _megabytes(pack.bytes)
    count = len(pack.files)
    text = (
        f"📦 Pack of image {pack.source_index} of “{_short(generation.raw_prompt)}”: "
        f"{count} placement{'s' * (count != 1)}, {size} zip"
    )
    if pack.bytes + len(preview) <= max_bytes:
        data = await store.get(pack.storage_key)
        images.append(CardImage(f"{pack.folder}-pack.zip", data, ZIP_TYPE))
    else:
        text += (
            f". The zip is over this chat's upload limit ({_megabytes(max_bytes)}); write it "
            f"with `onbrand fetch {generation.id}`."
        )
    extended = sum(1 for f in pack.files if f.method.startswith("extend"))
    fields = [
        ("pack", str(generation.id)),
        ("placements", ", ".join(f.placement for f in pack.files)),
    ]
    fields.append(("made", f"{count - extended} cropped, {extended} extended"))
    if generation.campaign:
        fields.append(("campaign", generation.campaign))
    return ResultCard(text=text, images=tuple(images), fields=tuple(fields))


def write_whole(path: Path, data: bytes) -> Path:
    """Write ``data`` through a temporary file renamed into place (nothing half-written)."""
    part = path.with_name(f".{path.name}.part")
    try:
        part.write_bytes(data)
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)
    return path


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def _short(prompt: str) -> str:
    return prompt if len(prompt) <= 80 else prompt[:79] + "…"


async def pack_files(
    db: Database, service: Service, store: ImageStore, generation: Generation
) -> tuple[StoredPack, bytes, bytes]:
    """The CLI's delivery of a done pack: its record, zip and contact sheet, and the pack
    marked delivered."""
    pack = await service.pack_of(generation.id)
    if pack is None:
        raise NotFound(f"Pack {generation.id} has no zip recorded; make it again.")
    data = await store.get(pack.storage_key)
    sheet = await store.get(pack.sheet_key)
    await queries.mark_delivered(db, generation.id)
    return pack, data, sheet


async def save_pack(
    db: Database, service: Service, store: ImageStore, generation: Generation, out: Path
) -> list[Path]:
    """``onbrand fetch`` of a pack: ``out/<id>/<folder>-pack.zip`` and its contact sheet."""
    pack, data, sheet = await pack_files(db, service, store, generation)
    folder = out / str(generation.id)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_whole(folder / f"{pack.folder}-pack.zip", data),
        write_whole(folder / "contact-sheet.png", sheet),
    ]
