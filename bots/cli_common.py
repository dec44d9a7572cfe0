"""What the ``onbrand`` commands share: the consoles, the settings, the app, who runs them."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable, Coroutine
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from core.domain import Actor, Platform, ReplyTarget, Role
from core.errors import ConfigError, UserError
from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from bots.processes import StopSignals
    from core.bootstrap import App

T = TypeVar("T")

out = Console()
err = Console(stderr=True)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn the errors a user can act on into a message and an exit code."""
    try:
        return asyncio.run(coro)
    except UserError as exc:
        err.print(f"[red]error:[/red] {exc.user_message}", highlight=False)
        raise typer.Exit(2) from None
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def load_settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:  # pydantic's ValidationError: a malformed environment variable
        err.print(f"[red]configuration error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def parse_day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        err.print(f"[red]error:[/red] {option} {value!r}: use a date like 2026-03-01")
        raise typer.Exit(2) from None


def cli_actor() -> Actor:
    """Whoever runs the CLI on this machine: an operator, so an admin and a reviewer."""
    user = getpass.getuser()
    return Actor(
        Platform.CLI, "local", user, user, frozenset({Role.MEMBER, Role.REVIEWER, Role.ADMIN})
    )


def cli_target(channel: str = "terminal") -> ReplyTarget:
    return ReplyTarget(Platform.CLI, "local", channel)


def with_app(fn: Callable[[App], Awaitable[T]], *, signals: StopSignals | None = None) -> T:
    """Build the app (database migrated), run ``fn`` with it, close it. Long-running commands
    pass their ``signals``, listened to before start-up begins."""
    from core.bootstrap import build_app

    async def go() -> T:
        if signals is not None:
            signals.install()
        app = await build_app(load_settings())
        try:
            return await fn(app)
        finally:
            await app.close()

    return run_async(go())
