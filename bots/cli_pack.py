"""``onbrand pack GEN:INDEX [--placements a,b] -o pack.zip``: a campaign pack from one image."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bots.cli_common import err, out, output_file, refuse, with_app, written_atomically
from core.domain import GenerationStatus
from core.errors import UserError

if TYPE_CHECKING:
    from core.bootstrap import App
    from core.delivery.packs import StoredPack


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
    with a manifest and a contact sheet: queued like any job and built by a worker run here."""
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

    started = time.perf_counter()
    made, data, took = with_app(lambda app: _queue_and_build(app, generation_id, number, names))
    with written_atomically(path, "--out") as part:
        part.write_bytes(data)
    seconds = time.perf_counter() - started
    for f in made.files:
        out.print(
            f"{made.folder}/{f.placement}\t{f.width}x{f.height}\t{f.bytes:,} bytes\t{f.method}",
            highlight=False,
            soft_wrap=True,
        )
    err.print(
        f"wrote {path} ({len(made.files)} placements, {len(data):,} bytes; pack "
        f"{made.generation_id}: {took:.1f} s queued → done, {seconds:.1f} s in all)",
        highlight=False,
        soft_wrap=True,
    )


async def _queue_and_build(
    app: App, generation_id: uuid.UUID, index: int, names: list[str] | None
) -> tuple[StoredPack, bytes, float]:
    """Queue the pack like any job, run a worker here until it is done, and read its zip."""
    from bots.cli_common import cli_actor, cli_target
    from core.bootstrap import build_worker
    from core.delivery.packs import pack_files
    from core.delivery.sweep import wait_until_finished

    started = time.perf_counter()
    ticket = await app.service.queue_pack(cli_actor(), cli_target(), generation_id, index, names)
    running = build_worker(app, one_shot=True)
    worker_task = asyncio.create_task(running.run())
    try:
        (done,) = await wait_until_finished(
            app.db, app.service, ticket.generation_ids, lambda _: None
        )
        took = time.perf_counter() - started
    finally:
        running.stop()
        await worker_task
    if done.status is not GenerationStatus.DONE:
        raise UserError(f"The pack {done.status.value}: {done.error or done.id}.")
    pack, data, _ = await pack_files(app.db, app.service, app.store, done)
    return pack, data, took
