"""``onbrand imagine --image FILE [--iw W]`` and ``--product FILE``: read the file, hand it to
the same core use cases the chat adapters call (upload, then imagine from it); and
``onbrand edit GEN:INDEX --zoom-out 2 | --pan left | --region NAME [--prompt …]``; and
``onbrand remix GEN[:INDEX] "new prompt"`` (the same seed and settings, ``Service.remix``; with
``:INDEX`` that image alone)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bots.cli_common import cli_actor, cli_target, err, out, refuse
from core.domain import GenerationStatus, ImageMode, Ticket
from core.imaging.uploads import MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from core.bootstrap import App

__all__ = ["check_image_options", "edit_command", "imagine_from_files", "remix_command"]


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


def edit_command(
    target: Annotated[str, typer.Argument(help="GENERATION-ID:INDEX, e.g. 3f2a…:2")],
    zoom_out: Annotated[float | None, typer.Option("--zoom-out", help="1.5 or 2.")] = None,
    pan: Annotated[str | None, typer.Option(help="left, right, up or down.")] = None,
    region: Annotated[
        str | None, typer.Option(help="A region to draw again: top-left … bottom-right, halves.")
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="A new prompt for --region.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where to write the images.")] = Path(
        "onbrand-out"
    ),
) -> None:
    """Zoom out, pan or vary a region of one image of a result (kept pixels stay exact)."""
    from bots.cli_common import output_folder, with_app

    generation_id, index = _target(target)
    output_folder(out_dir, "--out")

    async def go(app: App) -> int:
        ticket = await app.service.edit(
            cli_actor(),
            cli_target(),
            generation_id,
            index,
            zoom=zoom_out,
            direction=pan,
            region=region,
            prompt=prompt,
        )
        return await wait_and_save(app, ticket, out_dir)

    raise typer.Exit(with_app(go))


def remix_command(
    generation: Annotated[
        str,
        typer.Argument(
            help="GENERATION-ID of the result to remix (all of it), or GENERATION-ID:INDEX "
            "for one image of it (its own seed)."
        ),
    ],
    prompt: Annotated[str, typer.Argument(help="The new prompt (no --flags).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the images.")] = Path(
        "onbrand-out"
    ),
) -> None:
    """A result again with a new prompt: the same seed, size and settings (Remix in chat)."""
    from bots.cli_common import output_folder, with_app

    ident, _, index = generation.partition(":")
    try:
        generation_id, image = uuid.UUID(ident), int(index or 0)
    except ValueError:
        raise refuse(
            f"{generation!r} isn't GENERATION-ID or GENERATION-ID:INDEX; `onbrand imagine` "
            "prints the ids."
        ) from None
    output_folder(out_dir, "--out")

    async def go(app: App) -> int:
        ticket = await app.service.remix(
            cli_actor(), cli_target(), generation_id, prompt, index=image
        )
        return await wait_and_save(app, ticket, out_dir)

    raise typer.Exit(with_app(go))


def _target(target: str) -> tuple[uuid.UUID, int]:
    ident, _, index = target.rpartition(":")
    try:
        return uuid.UUID(ident), int(index)
    except ValueError:
        raise refuse(
            f"{target!r} isn't GENERATION-ID:INDEX; `onbrand imagine` prints the ids, e.g. "
            "`onbrand edit 3f2a9c1e-…:2 --zoom-out 2`."
        ) from None


async def wait_and_save(app: App, ticket: Ticket, out_dir: Path) -> int:
    """Run a worker here until the ticket's generations finish; write their images."""
    from core.bootstrap import build_worker
    from core.delivery.sweep import save_results, wait_until_finished

    ids = ", ".join(str(i) for i in ticket.generation_ids)
    err.print(f"queued #{ticket.position}: {ids}", highlight=False)
    running = build_worker(app, one_shot=True)
    worker_task = asyncio.create_task(running.run())
    try:
        generations = await wait_until_finished(
            app.db, app.service, ticket.generation_ids, lambda _: None
        )
    finally:
        running.stop()
        await worker_task
    for path in await save_results(app.db, app.store, generations, out_dir):
        out.print(str(path), highlight=False)
    failed = [g for g in generations if g.status is not GenerationStatus.DONE]
    for g in failed:
        err.print(f"[red]{g.status.value}:[/red] {g.error or g.id}", highlight=False)
    return 1 if failed else 0
