"""The ``onbrand`` command: the CLI adapter and the process entry points.

``onbrand presets …`` and ``onbrand campaign …`` live in ``bots.cli_admin``; what every command
shares (consoles, settings, the app) in ``bots.cli_common``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TextIO

import typer

from bots import cli_memory
from bots.cli_admin import campaign_app, presets_app
from bots.cli_common import (
    check_arguments,
    cli_actor,
    cli_target,
    err,
    load_settings,
    out,
    output_file,
    output_folder,
    parse_day,
    refuse,
    run_async,
    with_app,
    written_atomically,
)
from bots.cli_fetch import fetch, fetch_command
from bots.cli_images import check_image_options, edit_command, imagine_from_files, remix_command
from bots.cli_pack import pack
from bots.cli_styles import style_app
from bots.cli_verify import verify
from core.domain import GenerationStatus
from core.errors import DatabaseUnavailable
from core.ops.logs import setup_logging

if TYPE_CHECKING:
    from core.bootstrap import App

app = typer.Typer(
    name="onbrand",
    help="On-brand campaign images from Slack, Discord and the terminal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(presets_app, name="presets")
app.add_typer(campaign_app, name="campaign")
app.add_typer(style_app, name="style")
app.command()(fetch)
app.command()(verify)
app.command()(pack)
app.command("search")(cli_memory.search)
app.command("history")(cli_memory.history)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
) -> None:
    setup_logging(verbose=verbose)


@app.command()
def doctor() -> None:
    """Show the effective configuration (secrets masked) and check every part."""
    from bots.doctor import run_doctor

    healthy = run_async(run_doctor(load_settings(), out))
    raise typer.Exit(0 if healthy else 1)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (alembic upgrade head)."""
    from core.bootstrap import migrate_database

    head = run_async(migrate_database(load_settings()))
    out.print(f"database schema at {head}")


@app.command()
def run() -> None:
    """Run everything on one machine: database, a worker and the configured chat adapters."""
    from bots.processes import StopSignals, run_all

    signals = StopSignals()

    async def go(app: App) -> None:
        await run_all(app, lambda line: err.print(line, highlight=False), signals=signals)

    with_app(go, signals=signals)


@app.command()
def worker(
    max_batch: Annotated[
        int | None,
        typer.Option(min=1, help="Images per engine call (default 8 on GPU, 4 on CPU)."),
    ] = None,
    batch_window_ms: Annotated[
        int | None, typer.Option(min=0, help="How long a job waits for company (default 25).")
    ] = None,
    drain: Annotated[bool, typer.Option(help="Exit when the queue is empty.")] = False,
) -> None:
    """Run a GPU worker that takes jobs from the queue (SIGTERM: finish the batch, exit 0)."""
    from bots.processes import StopSignals, run_worker

    signals = StopSignals()

    async def go(app: App) -> None:
        await run_worker(
            app,
            drain=drain,
            signals=signals,
            max_batch=max_batch,
            batch_window_ms=batch_window_ms,
        )

    with_app(go, signals=signals)


@app.command()
def imagine(
    prompt: Annotated[str, typer.Argument(help="The prompt; /imagine flags work inside it too.")],
    preset: Annotated[str | None, typer.Option(help="Brand preset.")] = None,
    campaign: Annotated[str | None, typer.Option(help="Campaign.")] = None,
    ar: Annotated[str | None, typer.Option("--ar", help="Aspect ratio, e.g. 16:9.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for repeatable images.")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Number of images, 1–4.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where to write the images.")] = Path(
        "onbrand-out"
    ),
    wait: Annotated[
        bool, typer.Option(help="Wait for the images (--no-wait: print the ticket).")
    ] = True,
    local_worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Run a worker in this process while waiting (off when workers run elsewhere).",
        ),
    ] = True,
    image: Annotated[Path | None, typer.Option(help="Start from this image.")] = None,
    iw: Annotated[
        float | None, typer.Option("--iw", help="Image weight 0–3 (strength 1/(1+iw)).")
    ] = None,
    product: Annotated[
        Path | None, typer.Option(help="Product image kept unchanged in new scenes.")
    ] = None,
) -> None:
    """Make images from a prompt, the way /imagine does in chat."""
    from rich.progress import Progress

    from core.bootstrap import build_worker
    from core.delivery.sweep import save_results, wait_until_finished
    from core.replies import imagine_text

    text = imagine_text(prompt, aspect=ar, seed=seed, n=n, preset=preset, campaign=campaign)
    check_image_options(image, iw, product)
    if wait:
        output_folder(out_dir, "--out")  # before anything is queued

    async def go(app: App) -> int:
        ticket = await imagine_from_files(
            app, text, image=image, iw=iw, product=product
        ) or await app.service.imagine(text, cli_actor(), cli_target())
        ids = ", ".join(str(i) for i in ticket.generation_ids)
        eta = f", about {ticket.eta_seconds:.0f} s" if ticket.eta_seconds else ""
        err.print(f"queued #{ticket.position}{eta}: {ids}", highlight=False)
        if not wait:
            return 0
        running = None
        worker_task = None
        if local_worker:
            running = build_worker(app, one_shot=True)
            running.outage.level = logging.INFO  # an outage is this command's one error line
            worker_task = asyncio.create_task(running.run())
        lost = False
        try:
            with Progress(console=err, transient=True) as bar:
                task = bar.add_task("generating", total=1.0)
                generations = await wait_until_finished(
                    app.db,
                    app.service,
                    ticket.generation_ids,
                    lambda f: bar.update(task, completed=f),
                )
        except DatabaseUnavailable:
            lost = True
        finally:
            if running is not None and worker_task is not None:
                running.stop()
                # Without a database its job can't finish here: it is claimed again later.
                await stopped(worker_task, within_s=0.5 if lost else 5)
        if lost:
            later = "; ".join(fetch_command(str(i), out_dir) for i in ticket.generation_ids)
            err.print(
                f"[red]error:[/red] the database went away while waiting for {ids}. The job is "
                f"kept and finishes when a worker runs; then get the images with: {later}",
                highlight=False,
                soft_wrap=True,  # the command stays on one line, to copy
            )
            return 1
        try:
            paths = await save_results(app.db, app.store, generations, out_dir)
        except OSError as exc:
            raise refuse(
                f"--out {out_dir}: can't write the images ({exc.strerror}). They are kept in "
                f"the image store (generations {ids})."
            ) from None
        for path in paths:
            out.print(str(path), highlight=False)
        await cli_memory.index_new(app, [g.id for g in generations])
        failed = [g for g in generations if g.status is not GenerationStatus.DONE]
        for g in failed:
            err.print(f"[red]{g.status.value}:[/red] {g.error or g.id}", highlight=False)
        return 1 if failed else 0

    raise typer.Exit(with_app(go))


app.command(name="edit")(edit_command)
app.command(name="remix")(remix_command)


@app.command()
def report(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md (default), csv, json or html.")] = "md",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to a file.")] = None,
    pseudonymise: Annotated[
        bool, typer.Option(help="Replace user names by stable pseudonyms.")
    ] = False,
    sheet: Annotated[
        int | None,
        typer.Option(min=0, help="Images on the HTML contact sheet, newest first (default 48)."),
    ] = None,
) -> None:
    """A campaign report: markdown to the terminal, or CSV, JSON or a self-contained HTML page."""
    from core.delivery.bundle import report_thumbnails
    from core.reports.build import SHEET_IMAGES, build_report, open_report
    from core.reports.html import to_html
    from core.reports.text import to_markdown, write_csv, write_json

    if fmt not in ("md", "csv", "json", "html"):
        raise refuse(f"--format {fmt!r}: use md, csv, json or html")
    first, last = parse_day(since, "--since"), parse_day(until, "--until")
    target = None if output is None else output_file(output, "-o", f"report.{fmt}")

    async def go(app: App) -> str:
        made = await build_report(
            app.db,
            campaign,
            since=first,
            until=last,
            pseudonymise=pseudonymise,
            include_images=False,
            memory=True,  # near-duplicates and acceptance per week (docs/memory.md)
            sheet=(SHEET_IMAGES if sheet is None else sheet) if fmt == "html" else 0,
        )
        if fmt == "html":
            return to_html(made, await report_thumbnails(made, app.store))
        return to_markdown(made)

    def rows(out: TextIO) -> None:  # CSV and JSON: one row per image, written as they arrive
        async def go(app: App) -> None:
            async with open_report(
                app.db, campaign, since=first, until=last, pseudonymise=pseudonymise,
                summary=fmt == "json", memory=True,
            ) as opened:  # fmt: skip
                if opened.report is None:
                    await write_csv(opened.images, out)
                else:
                    await write_json(opened.report, opened.images, out)

        with_app(go)

    if target is None:
        if fmt in ("csv", "json"):
            rows(sys.stdout)
        else:
            sys.stdout.write(with_app(go))
        return
    with written_atomically(target, "-o") as part:
        if fmt in ("csv", "json"):
            with part.open("w", encoding="utf-8", newline="") as out:
                rows(out)
        else:
            part.write_text(with_app(go), encoding="utf-8")
    err.print(f"wrote {output}", highlight=False)


@app.command()
def export(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The zip file to write.")],
    approved: Annotated[bool, typer.Option("--approved", help="Approved images.")] = False,
    favourites: Annotated[bool, typer.Option("--favourites", help="Favourited images.")] = False,
    pseudonymise: Annotated[
        bool, typer.Option(help="Replace user names by stable pseudonyms.")
    ] = False,
    pairs: Annotated[
        bool,
        typer.Option("--pairs", help="Preference pairs as parquet (Pick-a-Pic / Diffusion-DPO)."),
    ] = False,
) -> None:
    """Full-resolution originals and a manifest.csv, for handing to designers; or, with
    --pairs, preference pairs from grid choices (docs/memory.md)."""
    from core.reports.export import export_zip

    if pairs:
        cli_memory.export_pairs(campaign, output, other_choice=approved or favourites)
        return
    if approved == favourites:
        raise refuse("choose one of --approved or --favourites")
    which: Literal["approved", "favourites"] = "approved" if approved else "favourites"
    target = output_file(output, "-o", f"{campaign}.zip")

    with written_atomically(target, "-o") as part:

        async def go(app: App) -> int:
            async def gate(unapproved: list[str]) -> None:  # require_approval: [export]
                await app.service.check_export(cli_actor(), campaign, unapproved)

            return await export_zip(
                app.db,
                campaign,
                which,
                part,
                app.store.get,
                pseudonymise=pseudonymise,
                gate=gate,
            )

        count = with_app(go)
    out.print(f"wrote {count} {which} images to {output}", highlight=False)


async def stopped(task: asyncio.Task[None], within_s: float) -> None:
    """Wait for a stopping task; past ``within_s`` (a worker waiting for a database that is
    gone) cancel it: its job is claimed again by the next worker."""
    await asyncio.wait([task], timeout=within_s)
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, DatabaseUnavailable):
        await task


def main() -> None:
    try:
        check_arguments(sys.argv[1:])
    except typer.Exit as refused:
        sys.exit(refused.exit_code)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
