"""``onbrand imagine --image FILE [--iw W]`` and ``--product FILE``: read the file, hand it to
the same core use cases the chat adapters call (upload, then imagine from it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bots.cli_common import cli_actor, cli_target, err, refuse
from core.domain import ImageMode, Ticket
from core.imaging.uploads import MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from core.bootstrap import App

__all__ = ["check_image_options", "imagine_from_files"]


def check_image_options(image: Path | None, iw: float | None, product: Path | None) -> None:
    """Refuse option mixes that can't work, before anything is queued."""
    if image is not None and product is not None:
        raise refuse("Give --image (an image prompt) or --product (a product shot), not both.")
    if iw is not None and image is None:
        raise refuse("--iw weighs the --image file; give --image FILE too, or drop --iw.")


def _read(path: Path, flag: str) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(MAX_UPLOAD_BYTES + 1)  # one byte over is enough to refuse
    except OSError as exc:
        raise refuse(f"{flag} {path}: can't read it ({exc.strerror or exc}).") from None


async def imagine_from_files(
    app: App, text: str, *, image: Path | None, iw: float | None, product: Path | None
) -> Ticket | None:
    """The ticket of an image prompt or product shot; ``None`` when neither file was given."""
    path, flag, mode = (
        (image, "--image", ImageMode.IMAGE_PROMPT)
        if image is not None
        else (product, "--product", ImageMode.PRODUCT)
    )
    if path is None:
        return None
    upload = await app.service.upload(_read(path, flag), cli_actor(), cli_target())
    ticket = await app.service.imagine_with_image(
        text, cli_actor(), cli_target(), upload.id, mode=mode, iw=iw
    )
    for note in ticket.warnings:
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    return ticket
