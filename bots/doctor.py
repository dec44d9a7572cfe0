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
    healthy = all(check.ok for check in checks)
    console.print("[green]healthy[/green]" if healthy else "[red]unhealthy[/red]: see FAILED above")
    return healthy
