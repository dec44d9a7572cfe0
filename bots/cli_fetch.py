"""``onbrand fetch GEN [-o DIR]``: write a finished generation's images (and its grid)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bots.cli_common import err, out, output_folder, refuse, with_app

if TYPE_CHECKING:
    from core.bootstrap import App

DEFAULT_OUT = Path("onbrand-out")


def fetch_command(generation: str, out_dir: Path) -> str:
    """The command that fetches ``generation`` into ``out_dir`` (what ``imagine`` suggests)."""
    folder = "" if out_dir == DEFAULT_OUT else f" -o {out_dir}"
    return f"onbrand fetch {generation}{folder}"


def fetch(
    generation: Annotated[
        str, typer.Argument(help="The generation id `imagine` printed, or its first 8+ characters.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the images.")
    ] = DEFAULT_OUT,
) -> None:
    """Write a finished generation's images (and its 2×2 grid) under DIR/<generation id>/."""
    from core.delivery.fetch import fetch as fetch_images

    output_folder(out_dir, "--out")

    async def go(app: App) -> list[Path]:
        try:
            _, paths = await fetch_images(app.db, app.service, app.store, generation, out_dir)
        except OSError as exc:
            raise refuse(f"--out {out_dir}: can't write the images ({exc.strerror}).") from None
        return paths

    paths = with_app(go)
    for path in paths:
        out.print(str(path), highlight=False)
    err.print(f"wrote {len(paths)} files", highlight=False)
