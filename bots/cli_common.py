"""What the ``onbrand`` commands share: the consoles, the settings, the app, who runs them, and
the checks on what they are given (arguments that aren't UTF-8, files and folders to write)."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from datetime import date
from pathlib import Path
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
        raise refuse(exc.user_message) from None
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
        raise refuse(f"{option} {value!r}: use a date like 2026-03-01") from None


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


def refuse(message: str) -> typer.Exit:
    """Print ``message`` as an error; the ``Exit`` (code 2, bad input) for the caller to raise."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(2)


def check_arguments(arguments: Sequence[str]) -> None:
    """Refuse an argument that isn't valid UTF-8 (Python keeps its bytes as lone surrogates,
    which nothing can print or store), naming the argument and the byte."""
    for number, argument in enumerate(arguments, 1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError as exc:
            raw = os.fsencode(argument)
            raise refuse(
                f"argument {number} ({str(raw[:60])[2:-1]}) is not valid UTF-8: byte "
                f"0x{raw[len(argument[: exc.start].encode('utf-8'))]:02X} at character "
                f"{exc.start + 1}. Retype it, or set the terminal to UTF-8 (LANG=C.UTF-8)."
            ) from None


def output_folder(path: Path, option: str) -> Path:
    """A folder to write files into: created if missing, refused (before any work is queued)
    when it is a file or can't be written."""
    if path.exists() and not path.is_dir():
        raise refuse(f"{option} {path} is a file, not a folder: name a folder for the images.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise refuse(
            f"{option} {path}: can't write there ({exc.strerror}); choose a folder you can "
            "write to."
        ) from None
    return path


def output_file(path: Path, option: str, example: str) -> Path:
    """A file to write: in a folder that exists, not a folder itself nor a device; the path
    to write to (a symbolic link's target)."""
    if path.is_dir():
        raise refuse(f"{option} {path} is a folder: name a file in it, e.g. {path / example}")
    if path.exists() and not path.is_file():
        raise refuse(f"{option} {path} is not a regular file: name a file to write.")
    target = path.resolve() if path.is_symlink() else path
    if not target.parent.is_dir():
        raise refuse(
            f"{option} {path}: there is no folder {target.parent}; create it first or name a "
            "file in a folder that exists."
        )
    return target


@contextlib.contextmanager
def written_atomically(path: Path, option: str) -> Iterator[Path]:
    """A temporary file beside ``path`` to write into, moved into place when the block ends
    normally and removed otherwise, so no half-written file is ever left at ``path``. Refused
    up front when the folder can't be written."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise refuse(
            f"{option} {path}: can't write a file in {path.parent} ({exc.strerror}); choose a "
            "folder you can write to."
        ) from None
    os.close(fd)
    part = Path(name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        part.chmod(0o666 & ~umask)  # what an ordinary new file gets, not mkstemp's 0600
        yield part
        try:
            os.replace(part, path)
        except OSError as exc:
            raise refuse(f"{option} {path}: can't write it ({exc.strerror}).") from None
    finally:
        part.unlink(missing_ok=True)
