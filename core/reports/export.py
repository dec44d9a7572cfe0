"""Export for designers: the approved (or favourited) originals and a manifest in one zip."""

from __future__ import annotations

import asyncio
import csv
import shutil
import tempfile
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Literal

from core.errors import NotFound
from core.reports.build import Source, open_report
from core.reports.text import CSV_COLUMNS, csv_row, csv_text

__all__ = ["export_zip"]


async def export_zip(
    source: Source,
    campaign: str,
    which: Literal["approved", "favourites"],
    out: Path,
    read_image: Callable[[str], Awaitable[bytes]],
    pseudonymise: bool = False,
    gate: Callable[[list[str]], Awaitable[None]] | None = None,
) -> int:
    """Write the approved (or favourited) originals and a ``manifest.csv`` to ``out``.

    Returns the number of images written. Files are named ``<generation>-<index>.<ext>`` after
    the stored key's extension; the manifest has the CSV report's columns plus ``file``. When
    an original is missing from the store, nothing is kept at ``out`` and ``NotFound`` names
    every missing one: a handover with holes is worse than none. ``gate`` sees the chosen
    images no reviewer approved (``GEN:INDEX``) and may refuse (a campaign's
    ``require_approval: [export]``): then nothing is kept at ``out`` either.

    Memory stays flat however big the campaign: the rows stream from the database
    (``open_report``), each original goes into the zip as it is read and the manifest
    collects in a temporary file until it is added last.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    missing: list[str] = []
    unapproved: list[str] = []
    count = 0
    try:
        with (
            tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as manifest,
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive,
        ):
            writer = csv.writer(manifest, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
            writer.writerow(("file", *CSV_COLUMNS))
            async with open_report(
                source, campaign, pseudonymise=pseudonymise, which=which, summary=False
            ) as opened:
                async for image in opened.images:
                    if not image.approved:
                        unapproved.append(f"{image.generation_id}:{image.index}")
                    suffix = Path(image.storage_key).suffix or ".png"
                    name = f"{image.generation_id}-{image.index}{suffix}"
                    try:
                        archive.writestr(name, await read_image(image.storage_key))
                    except KeyError:
                        missing.append(name)
                    writer.writerow([csv_text(name), *csv_row(image)])
                    count += 1
            if gate is not None:
                await gate(unapproved)
            manifest.seek(0)
            with archive.open("manifest.csv", "w") as entry:
                shutil.copyfileobj(_Encoded(manifest), entry)
    except BaseException:  # nothing half-written stays behind
        await asyncio.to_thread(out.unlink, missing_ok=True)
        raise
    if missing:
        await asyncio.to_thread(out.unlink)
        raise NotFound(
            f"{len(missing)} of the {count} {which} originals are missing from the image "
            f"store, so no export was written: {', '.join(missing[:10])}"
            + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            + ". Restore them to the store and export again."
        )
    return count


class _Encoded:
    """A text file read back as UTF-8 bytes, a block at a time (for ``shutil.copyfileobj``)."""

    def __init__(self, text: IO[str]) -> None:
        self._text = text

    def read(self, size: int = -1) -> bytes:
        return self._text.read(size).encode()
