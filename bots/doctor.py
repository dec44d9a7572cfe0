"""``onbrand doctor``: the effective configuration and a check of each part."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from core.health import run_checks
from core.settings import Settings


async def run_doctor(settings: Settings, console: Console) -> bool:
    config = Table(title="configuration", show_header=False, box=None)
    for key, value in settings.masked().items():
        config.add_row(key, value)
    console.print(config)

    checks = await run_checks(settings)
    table = Table(title="checks", show_header=False, box=None)
    for check in checks:
        mark = "[green]ok[/green]" if check.ok else "[red]FAILED[/red]"
        table.add_row(mark, check.name, check.detail)
    console.print(table)
    console.print(models_table())
    healthy = all(check.ok for check in checks)
    console.print("[green]healthy[/green]" if healthy else "[red]unhealthy[/red]: see FAILED above")
    return healthy


def models_table() -> Table:
    """The models in the local Hugging Face cache, each with its family (not a health check:
    an empty cache is fine where presets use ``tiny``, local folders or the OpenAI engine)."""
    from core.brand.families import hub_cache_dir

    folder = hub_cache_dir()
    table = Table(show_header=False, box=None)
    table.add_row("[bold]models in the Hugging Face cache[/bold]", str(folder))
    try:
        from core.engines.families import cached_models

        models = cached_models(folder)
    except ImportError:  # huggingface_hub comes with the diffusers extra
        table.add_row("-", "not listed: install onbrand[diffusers] to read the cache")
        return table
    for model in models:
        size = model.size_on_disk
        shown = f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"
        table.add_row(model.repo_id, model.label, shown)
    if not models:
        table.add_row("-", "none")
    return table
