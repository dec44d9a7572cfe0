"""The ``onbrand`` command: the CLI adapter and the process entry points."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console

from core.domain import Binding, Campaign, GenerationStatus, Platform, ReplyTarget
from core.errors import ConfigError, UserError
from core.ops.logs import setup_logging
from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from bots.processes import StopSignals
    from core.bootstrap import App

T = TypeVar("T")

app = typer.Typer(
    name="onbrand",
    help="On-brand campaign images from Slack, Discord and the terminal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
presets_app = typer.Typer(help="Brand presets: list, validate, and try prompts against them.")
campaign_app = typer.Typer(help="Campaigns and channel bindings.")
app.add_typer(presets_app, name="presets")
app.add_typer(campaign_app, name="campaign")

out = Console()
err = Console(stderr=True)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn the errors a user can act on into a message and an exit code."""
    try:
        return asyncio.run(coro)
    except UserError as exc:
        err.print(f"[red]error:[/red] {exc.user_message}", highlight=False)
        raise typer.Exit(2) from None
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:  # pydantic's ValidationError: a malformed environment variable
        err.print(f"[red]configuration error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
) -> None:
    setup_logging(verbose=verbose)


@app.command()
def doctor() -> None:
    """Show the effective configuration (secrets masked) and check every part."""
    from bots.doctor import run_doctor

    healthy = _run(run_doctor(_settings(), out))
    raise typer.Exit(0 if healthy else 1)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (alembic upgrade head)."""
    from core.bootstrap import open_database
    from core.db.migrate import head_revision, upgrade

    async def go() -> None:
        db = await open_database(_settings(), migrate=False)
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    _run(go())
    out.print(f"database schema at {head_revision()}")


@app.command()
def run() -> None:
    """Run everything on one machine: database, a worker and the configured chat adapters."""
    from bots.processes import StopSignals, run_all

    signals = StopSignals()

    async def go(app: App) -> None:
        await run_all(app, lambda line: err.print(line, highlight=False), signals=signals)

    _with_app(go, signals=signals)


@app.command()
def worker(
    max_batch: Annotated[
        int | None, typer.Option(help="Images per engine call (default 8 on GPU, 4 on CPU).")
    ] = None,
    batch_window_ms: Annotated[
        int | None, typer.Option(help="How long a job waits for company (default 25).")
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

    _with_app(go, signals=signals)


@app.command()
def imagine(
    prompt: Annotated[str, typer.Argument(help="The prompt; /imagine flags work inside it too.")],
    preset: Annotated[str | None, typer.Option(help="Brand preset.")] = None,
    campaign: Annotated[str | None, typer.Option(help="Campaign.")] = None,
    ar: Annotated[str | None, typer.Option("--ar", help="Aspect ratio, e.g. 16:9.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for repeatable images.")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Number of images, 1–4.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the images.")] = Path(
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
) -> None:
    """Make images from a prompt, the way /imagine does in chat."""
    from rich.progress import Progress

    from bots.processes import save_results
    from core.bootstrap import build_worker, cli_actor, cli_target
    from core.delivery.sweep import wait_until_finished

    text = prompt
    for flag, value in (
        ("--preset", preset),
        ("--campaign", campaign),
        ("--ar", ar),
        ("--seed", seed),
        ("--n", n),
    ):
        if value is not None:
            text += f" {flag} {value}"

    async def go(app: App) -> int:
        ticket = await app.service.imagine(text, cli_actor(), cli_target())
        ids = ", ".join(str(i) for i in ticket.generation_ids)
        eta = f", about {ticket.eta_seconds:.0f} s" if ticket.eta_seconds else ""
        err.print(f"queued #{ticket.position}{eta}: {ids}", highlight=False)
        if not wait:
            return 0
        running = None
        worker_task = None
        if local_worker:
            running = build_worker(app)
            worker_task = asyncio.create_task(running.run())
        try:
            with Progress(console=err, transient=True) as bar:
                task = bar.add_task("generating", total=1.0)
                generations = await wait_until_finished(
                    app.db,
                    app.service,
                    ticket.generation_ids,
                    lambda f: bar.update(task, completed=f),
                )
        finally:
            if running is not None and worker_task is not None:
                running.stop()
                await worker_task
        for paths in [await save_results(app, generations, out_dir)]:
            for path in paths:
                out.print(str(path), highlight=False)
        failed = [g for g in generations if g.status is not GenerationStatus.DONE]
        for g in failed:
            err.print(f"[red]{g.status.value}:[/red] {g.error or g.id}", highlight=False)
        return 1 if failed else 0

    raise typer.Exit(_with_app(go))


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
    from core.bootstrap import build_store, report_thumbnails
    from core.reports.build import SHEET_IMAGES, build_report, to_csv, to_html, to_json, to_markdown

    if fmt not in ("md", "csv", "json", "html"):
        err.print(f"[red]error:[/red] --format {fmt!r}: use md, csv, json or html")
        raise typer.Exit(2)
    first, last = _parse_day(since, "--since"), _parse_day(until, "--until")

    async def go(app: App) -> str:
        made = await build_report(
            app.db,
            campaign,
            since=first,
            until=last,
            pseudonymise=pseudonymise,
            include_images=fmt in ("csv", "json"),
            sheet=(SHEET_IMAGES if sheet is None else sheet) if fmt == "html" else 0,
        )
        if fmt == "csv":
            return to_csv(made)
        if fmt == "json":
            return to_json(made)
        if fmt == "html":
            return to_html(made, await report_thumbnails(made, build_store(app.settings)))
        return to_markdown(made)

    text = _with_app(go)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
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
) -> None:
    """Full-resolution originals and a manifest.csv, for handing to designers."""
    from core.bootstrap import build_store
    from core.reports.build import export_zip

    if approved == favourites:
        err.print("[red]error:[/red] choose one of --approved or --favourites")
        raise typer.Exit(2)
    which: Literal["approved", "favourites"] = "approved" if approved else "favourites"

    async def go(app: App) -> int:
        store = build_store(app.settings)
        return await export_zip(
            app.db, campaign, which, output, store.get, pseudonymise=pseudonymise
        )

    count = _with_app(go)
    out.print(f"wrote {count} {which} images to {output}", highlight=False)


@presets_app.command("list")
def presets_list() -> None:
    """List the presets in the presets directory."""
    from rich.table import Table

    from core.bootstrap import load_brand_presets

    settings = _settings()
    try:
        presets = load_brand_presets(settings)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    table = Table("name", "brand", "engine", "sizes", "version", "description")
    for name, preset in sorted(presets.items()):
        default = " (default)" if name == settings.default_preset else ""
        table.add_row(
            name + default,
            preset.brand,
            f"{preset.engine.kind}:{preset.engine.model}",
            ", ".join(preset.aspect_ratios),
            preset.version,
            preset.description,
        )
    out.print(table)


@presets_app.command("validate")
def presets_validate(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Preset files (default: the presets directory).")
    ] = None,
) -> None:
    """Validate preset files; lists every problem and exits non-zero if there is any."""
    from core.brand.preset_files import validate_files

    paths = files or sorted(_settings().presets_dir.glob("*.y*ml"))
    if not paths:
        err.print(f"no preset files found in {_settings().presets_dir}")
        raise typer.Exit(1)
    problems = validate_files(paths)
    for problem in problems:
        err.print(f"[red]✗[/red] {problem}", highlight=False)
    if problems:
        raise typer.Exit(1)
    for path in paths:
        out.print(f"[green]✓[/green] {path}", highlight=False)


@presets_app.command("check")
def presets_check(
    preset: Annotated[str, typer.Argument(help="A preset name or a path to a YAML file.")],
    prompt: Annotated[str, typer.Argument(help="The /imagine text to try.")],
) -> None:
    """Show what a prompt resolves to under a preset: exit 0 allowed, 3 blocked, 2 invalid."""
    from core.brand import grammar
    from core.brand.preset_files import load_preset, load_presets
    from core.brand.presets import apply_preset
    from core.errors import BlockedPrompt

    settings = _settings()
    try:
        if Path(preset).suffix in (".yaml", ".yml") or Path(preset).is_file():
            chosen = load_preset(preset)
        else:
            available = load_presets(settings.presets_dir)
            if preset not in available:
                raise UserError(
                    f"no preset {preset} in {settings.presets_dir}; "
                    f"use one of: {', '.join(sorted(available))}, or a path to a YAML file"
                )
            chosen = available[preset]
        for request in grammar.parse(prompt):
            params = apply_preset(
                request, chosen, global_banned=settings.banned_terms, seed_source=lambda: 0
            )
            out.print_json(data=dataclasses.asdict(params))
    except BlockedPrompt as exc:
        out.print(f"[red]blocked:[/red] {exc.user_message}", highlight=False)
        raise typer.Exit(3) from None
    except UserError as exc:
        err.print(f"[red]error:[/red] {exc.user_message}", highlight=False)
        raise typer.Exit(2) from None


def _parse_day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        err.print(f"[red]error:[/red] {option} {value!r}: use a date like 2026-03-01")
        raise typer.Exit(2) from None


@campaign_app.command("create")
def campaign_create(
    name: Annotated[str, typer.Argument(help="Campaign name: a-z, 0-9 and dashes.")],
    preset: Annotated[str, typer.Option(help="The brand preset the campaign uses.")],
    starts: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
    ends: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD.")] = None,
    budget_gpu_seconds: Annotated[
        float | None, typer.Option(help="GPU seconds the campaign may use.")
    ] = None,
    rush: Annotated[bool, typer.Option(help="Serve this campaign's jobs first.")] = False,
) -> None:
    """Create a campaign."""
    from core.bootstrap import cli_actor

    async def go(app: App) -> Campaign:
        return await app.service.create_campaign(
            cli_actor(),
            name,
            preset,
            starts_on=_parse_day(starts, "--starts"),
            ends_on=_parse_day(ends, "--ends"),
            gpu_budget_seconds=budget_gpu_seconds,
            rush=rush,
        )

    created = _with_app(go)
    out.print(f"created campaign {created.name} (preset {created.preset})")


@campaign_app.command("list")
def campaign_list() -> None:
    """List campaigns."""
    from rich.table import Table

    async def go(app: App) -> list[Campaign]:
        return await app.service.campaigns()

    table = Table("name", "preset", "starts", "ends", "GPU budget (s)", "rush")
    for c in _with_app(go):
        table.add_row(
            c.name,
            c.preset,
            str(c.starts_on or "—"),
            str(c.ends_on or "—"),
            "—" if c.gpu_budget_seconds is None else f"{c.gpu_budget_seconds:g}",
            "yes" if c.rush else "",
        )
    out.print(table)


Platforms = Annotated[str, typer.Option("--platform", help="slack or discord.")]
Channel = Annotated[str, typer.Option("--channel", help="The channel id.")]
WorkspaceOpt = Annotated[
    str, typer.Option("--workspace", help="Slack team id or Discord guild id.")
]


def _target(platform: str, workspace: str, channel: str) -> ReplyTarget:
    try:
        chosen = Platform(platform)
    except ValueError:
        err.print(f"[red]error:[/red] --platform {platform!r}: use slack or discord")
        raise typer.Exit(2) from None
    return ReplyTarget(chosen, workspace, channel)


@campaign_app.command("bind")
def campaign_bind(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    platform: Platforms,
    channel: Channel,
    workspace: WorkspaceOpt,
    locked: Annotated[bool, typer.Option(help="Users may not override it with flags.")] = False,
) -> None:
    """Bind a chat channel to a campaign (and its preset)."""
    from core.bootstrap import cli_actor

    target = _target(platform, workspace, channel)

    async def go(app: App) -> Binding:
        return await app.service.bind(cli_actor(), target, campaign=name, locked=locked)

    binding = _with_app(go)
    lock = " (locked)" if binding.locked else ""
    out.print(f"{platform} channel {channel} → campaign {name}, preset {binding.preset}{lock}")


@campaign_app.command("unbind")
def campaign_unbind(platform: Platforms, channel: Channel, workspace: WorkspaceOpt) -> None:
    """Remove a channel's binding."""
    from core.bootstrap import cli_actor

    target = _target(platform, workspace, channel)

    async def go(app: App) -> bool:
        return await app.service.unbind(cli_actor(), target)

    if not _with_app(go):
        err.print(f"{platform} channel {channel} was not bound")
        raise typer.Exit(1)
    out.print(f"unbound {platform} channel {channel}")


def _with_app(fn: Callable[[App], Awaitable[T]], *, signals: StopSignals | None = None) -> T:
    """Build the app (database migrated), run ``fn`` with it, close it. Long-running commands
    pass their ``signals``, listened to before start-up begins."""
    from core.bootstrap import build_app

    async def go() -> T:
        if signals is not None:
            signals.install()
        app = await build_app(_settings())
        try:
            return await fn(app)
        finally:
            await app.close()

    return _run(go())


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
