"""``onbrand presets …`` and ``onbrand campaign …``: the brand admin's commands."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bots.cli_common import cli_actor, err, load_settings, out, parse_day, refuse, with_app
from core.domain import Binding, Campaign, Platform, ReplyTarget
from core.errors import ConfigError, UserError

if TYPE_CHECKING:
    from core.bootstrap import App

presets_app = typer.Typer(help="Brand presets: list, validate, and try prompts against them.")
campaign_app = typer.Typer(help="Campaigns and channel bindings.")


@presets_app.command("list")
def presets_list() -> None:
    """List the presets in the presets directory."""
    from rich.table import Table

    from core.bootstrap import load_brand_presets

    settings = load_settings()
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
    from core.brand.preset_files import (
        expand_preset_paths,
        load_preset,
        model_family,
        validate_files,
    )

    paths = files or sorted(load_settings().presets_dir.glob("*.y*ml"))
    if not paths:
        err.print(f"no preset files found in {load_settings().presets_dir}")
        raise typer.Exit(1)
    problems = validate_files(paths)
    for problem in problems:
        err.print(f"[red]✗[/red] {problem}", highlight=False)
    if problems:
        raise typer.Exit(1)
    for path in expand_preset_paths(paths)[0]:
        family = model_family(load_preset(path)) if path.is_file() else ""
        out.print(f"[green]✓[/green] {path}" + (f" ({family})" if family else ""), highlight=False)


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

    settings = load_settings()
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
        raise refuse(exc.user_message) from None


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
    share_prompt: Annotated[
        bool, typer.Option(help="Write the prompt into the images' IPTC metadata.")
    ] = False,
    require_approval: Annotated[
        str | None,
        typer.Option(
            help="What needs a reviewer's approval first: pack, export (comma-separated)."
        ),
    ] = None,
) -> None:
    """Create a campaign."""

    async def go(app: App) -> Campaign:
        return await app.service.create_campaign(
            cli_actor(),
            name,
            preset,
            starts_on=parse_day(starts, "--starts"),
            ends_on=parse_day(ends, "--ends"),
            gpu_budget_seconds=budget_gpu_seconds,
            rush=rush,
            share_prompt=share_prompt,
            require_approval=[g.strip() for g in (require_approval or "").split(",") if g.strip()],
        )

    created = with_app(go)
    out.print(f"created campaign {created.name} (preset {created.preset})")


@campaign_app.command("list")
def campaign_list() -> None:
    """List campaigns."""
    from rich.table import Table

    async def go(app: App) -> list[Campaign]:
        return await app.service.campaigns()

    table = Table("name", "preset", "starts", "ends", "GPU budget (s)", "rush")
    for c in with_app(go):
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
        raise refuse(f"--platform {platform!r}: use slack or discord") from None
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
    target = _target(platform, workspace, channel)

    async def go(app: App) -> Binding:
        return await app.service.bind(cli_actor(), target, campaign=name, locked=locked)

    binding = with_app(go)
    lock = " (locked)" if binding.locked else ""
    out.print(f"{platform} channel {channel} → campaign {name}, preset {binding.preset}{lock}")


@campaign_app.command("unbind")
def campaign_unbind(platform: Platforms, channel: Channel, workspace: WorkspaceOpt) -> None:
    """Remove a channel's binding."""
    target = _target(platform, workspace, channel)

    async def go(app: App) -> bool:
        return await app.service.unbind(cli_actor(), target)

    if not with_app(go):
        err.print(f"{platform} channel {channel} was not bound")
        raise typer.Exit(1)
    out.print(f"unbound {platform} channel {channel}")
