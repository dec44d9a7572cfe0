"""``onbrand fetch GEN``: a finished generation's images, written to a folder later.

The CLI's ``imagine`` writes the images when it sees them done; when it could not wait (the
database went away, the terminal was closed, ``--no-wait``), the job still finishes on a worker
and this writes the same files (originals and, for several, the 2×2 grid) under
``out/<generation id>/``, each through a temporary file renamed into place.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Final

from core.db.database import Database
from core.db.lookup import generations_starting
from core.db.outage import translated
from core.delivery.packs import save_pack
from core.delivery.sweep import save_results
from core.domain import Generation, GenerationKind, GenerationStatus
from core.errors import NotFound, UserError
from core.ports import ImageStore
from core.service import Service

MIN_PREFIX: Final = 8
"""The fewest characters of an id that ``fetch`` accepts (as many as git's short hashes)."""

_ID_TEXT = re.compile(r"[0-9a-f-]+")


async def find_generation(db: Database, service: Service, ref: str) -> Generation:
    """The generation named by its id or the start of it (at least ``MIN_PREFIX`` characters);
    a ``UserError`` saying what is wrong with ``ref`` otherwise."""
    wanted = ref.strip().lower()
    if not _ID_TEXT.fullmatch(wanted) or len(wanted.replace("-", "")) < MIN_PREFIX:
        raise UserError(
            f"{ref[:80]!r} is not a generation id: give the id that `onbrand imagine` printed "
            f"(like 9b5f1c2e-4d7a-…), or at least its first {MIN_PREFIX} characters."
        )
    async with translated():
        try:
            ids = [uuid.UUID(wanted)]
        except ValueError:
            ids = await generations_starting(db, wanted)
        if len(ids) > 1:
            raise UserError(
                f"More than one generation starts with {wanted}: give more of the id "
                f"(e.g. {ids[0]} or {ids[1]})."
            )
        if not ids:
            raise NotFound(f"No generation starts with {wanted}: check the id and try again.")
        try:
            return await service.generation(ids[0])
        except NotFound:
            raise NotFound(f"No generation {ids[0]}: check the id and try again.") from None


async def fetch(
    db: Database, service: Service, store: ImageStore, ref: str, out: Path
) -> tuple[Generation, list[Path]]:
    """Write the images of the generation ``ref`` names under ``out/<id>/``; the generation
    and the files written. A generation that is not done is refused with its state."""
    generation = await find_generation(db, service, ref)
    status = generation.status
    if status in (GenerationStatus.QUEUED, GenerationStatus.RUNNING):
        raise UserError(
            f"Generation {generation.id} is {status.value}, not done yet: run this again "
            "when it is done."
        )
    if status is not GenerationStatus.DONE:
        reason = f": {generation.error}" if generation.error else ""
        raise UserError(f"Generation {generation.id} {status.value}{reason}; it has no images.")
    async with translated():
        if generation.kind is GenerationKind.PACK:
            return generation, await save_pack(db, service, store, generation, out)
        return generation, await save_results(db, store, [generation], out)
