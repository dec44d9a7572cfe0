"""``onbrand pack GEN:INDEX [--placements a,b] -o pack.zip``: a campaign pack from one image."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bots.cli_common import err, out, output_file, refuse, with_app, written_atomically

if TYPE_CHECKING:
    from core.bootstrap import App
    from core.service.packs import Pack


def pack(
    target: Annotated[str, typer.Argument(help="GENERATION-ID:INDEX, e.g. 3f2a…:2")],
    output: Annotated[Path, typer.Option("--out", "-o", help="The zip to write.")] = Path(
        "pack.zip"
    ),
    placements: Annotated[
        str | None,
        typer.Option(help="Comma-separated placement names (default: every placement)."),
    ] = None,
) -> None:
    """Every placement (feed, story, link card, banners…) from one finished image, as a zip
    with a manifest and a contact sheet."""
    from bots.cli_common import cli_actor

    ident, _, index = target.rpartition(":")
    try:
        generation_id, number = uuid.UUID(ident), int(index)
    except ValueError:
        raise refuse(
            f"{target[:80]!r} isn't GENERATION-ID:INDEX; `onbrand imagine` prints the ids, e.g. "
            "`onbrand pack 3f2a9c1e-…:2 -o pack.zip`."
        ) from None
    names = [n.strip() for n in placements.split(",") if n.strip()] if placements else None
    path = output_file(output, "--out", "pack.zip")

    async def go(app: App) -> Pack:
        return await app.service.pack(cli_actor(), generation_id, number, names)

    started = time.perf_counter()
    made = with_app(go)
    with written_atomically(path, "--out") as part:
        part.write_bytes(made.zip_bytes)
    seconds = time.perf_counter() - started
    for f in made.files:
        out.print(
            f"{f.path}\t{f.size[0]}x{f.size[1]}\t{f.bytes:,} bytes\t{f.method}",
            highlight=False,
            soft_wrap=True,
        )
    err.print(
        f"wrote {path} ({len(made.files)} placements, {len(made.zip_bytes):,} bytes, "
        f"{seconds:.1f} s; protected box from {made.protected_from})",
        highlight=False,
        soft_wrap=True,
    )
    if made.note:
        err.print(f"note: {made.note}", highlight=False, soft_wrap=True)
