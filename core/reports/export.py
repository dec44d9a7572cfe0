"""Export for designers: the approved (or favourited) originals and a manifest in one zip."""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

from core.errors import NotFound
from core.reports.build import Source, build_report
from core.reports.text import CSV_COLUMNS, csv_row, csv_table, csv_text

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
    images no reviewer approved (``GEN:INDEX``) before anything is written, and may refuse
    (a campaign's ``require_approval: [export]``).
    """
    report = await build_report(source, campaign, pseudonymise=pseudonymise, sheet=0)
    assert report.images is not None
    if which == "approved":
        chosen = [i for i in report.images if i.approved]
    else:
        chosen = [i for i in report.images if i.favourites > 0]
    if gate is not None:
        await gate([f"{i.generation_id}:{i.index}" for i in chosen if not i.approved])
    manifest: list[list[object]] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    missing: list[str] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for image in chosen:
            suffix = Path(image.storage_key).suffix or ".png"
            name = f"{image.generation_id}-{image.index}{suffix}"
            try:
                archive.writestr(name, await read_image(image.storage_key))
            except KeyError:
                missing.append(name)
            manifest.append([csv_text(name), *csv_row(image)])
        archive.writestr("manifest.csv", csv_table(("file", *CSV_COLUMNS), manifest))
    if missing:
        await asyncio.to_thread(out.unlink)
        raise NotFound(
            f"{len(missing)} of the {len(chosen)} {which} originals are missing from the image "
            f"store, so no export was written: {', '.join(missing[:10])}"
            + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            + ". Restore them to the store and export again."
        )
    return len(chosen)
