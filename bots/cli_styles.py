"""``onbrand style …``: an admin's style codes (governed reference images) from the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bots.cli_common import cli_actor, out, refuse, with_app
from core.imaging.uploads import MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from core.bootstrap import App
    from core.brand.styles import StyleCodeInfo

style_app = typer.Typer(help="Style codes: a brand's approved reference images (--style CODE).")


def _read(path: Path) -> tuple[str, bytes]:
    """A file's name and bytes, refused when it is not a regular file or far too big to be an
    image (the service checks the rest: type, pixels, metadata)."""
    if not path.is_file():
        raise refuse(f"{path}: not a file; give the reference images' paths")
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise refuse(f"{path}: over {MAX_UPLOAD_BYTES >> 20} MB; give a smaller image")
    return path.name, path.read_bytes()


def _line(info: StyleCodeInfo) -> str:
    where = f", only in {':'.join(info.workspace)}" if info.workspace else ""
    retired = f", retired {info.retired_at:%Y-%m-%d}" if info.retired_at else ""
    label = f" “{info.label}”" if info.label else ""
    return f"{info.code}  {info.brand}{label}: {len(info.references)} image(s){where}{retired}"


@style_app.command("create")
def style_create(
    files: Annotated[list[Path], typer.Argument(help="1-8 reference images (PNG, JPEG, WebP).")],
    brand: Annotated[str, typer.Option(help="The brand the code belongs to (a preset's brand).")],
    label: Annotated[str, typer.Option(help="A name people will recognise.")] = "",
) -> None:
    """Register reference images as one of a brand's style codes; prints the code."""
    read = [_read(path) for path in files]

    async def go(app: App) -> tuple[StyleCodeInfo, bool]:
        return await app.service.create_style(cli_actor(), read, brand=brand, label=label)

    info, created = with_app(go)
    out.print(("created " if created else "already registered: ") + _line(info), highlight=False)


@style_app.command("list")
def style_list(
    brand: Annotated[str | None, typer.Option(help="Only this brand's codes.")] = None,
    retired: Annotated[bool, typer.Option(help="Include retired codes.")] = False,
) -> None:
    """List the registered style codes."""

    async def go(app: App) -> list[StyleCodeInfo]:
        return await app.service.style_codes(cli_actor(), brand, retired=retired)

    found = with_app(go)
    for info in found:
        out.print(_line(info), highlight=False)
    if not found:
        out.print("no style codes" + (f" for {brand}" if brand else ""))


@style_app.command("retire")
def style_retire(code: Annotated[str, typer.Argument(help="The style code.")]) -> None:
    """Retire a style code: requests naming it are refused from now on."""

    async def go(app: App) -> StyleCodeInfo:
        return await app.service.retire_style(cli_actor(), code)

    out.print("retired " + _line(with_app(go)), highlight=False)
