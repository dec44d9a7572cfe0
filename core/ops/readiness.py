"""Readiness: whether a process is ready for work, as named checks that ``/readyz`` evaluates.

Each process owns one ``Readiness`` (the ``App`` carries it) and fills it: database reachable,
engines loadable for workers, chat connection up for bots. Nothing here is module-global.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from core.db.database import Database

CheckFn = Callable[[], Awaitable[tuple[bool, str]]]


class Readiness:
    """Named readiness conditions: fixed states (``set``) and async checks (``add_check``)."""

    def __init__(self) -> None:
        self._states: dict[str, tuple[bool, str]] = {}
        self._checks: dict[str, CheckFn] = {}

    def set(self, name: str, ok: bool, detail: str = "") -> None:
        self._checks.pop(name, None)
        self._states[name] = (ok, detail)

    def add_check(self, name: str, check: CheckFn) -> None:
        self._states.pop(name, None)
        self._checks[name] = check

    def remove(self, name: str) -> None:
        self._states.pop(name, None)
        self._checks.pop(name, None)

    def clear(self) -> None:
        self._states.clear()
        self._checks.clear()

    async def evaluate(self, timeout_s: float = 3.0) -> dict[str, tuple[bool, str]]:
        results = dict(self._states)
        names = list(self._checks)

        async def run(check: CheckFn) -> tuple[bool, str]:
            try:
                async with asyncio.timeout(timeout_s):
                    return await check()
            except TimeoutError:
                return False, f"no answer within {timeout_s:g} s"
            except Exception as exc:
                return False, f"{type(exc).__name__}: {exc}".splitlines()[0]

        for name, outcome in zip(
            names, await asyncio.gather(*(run(self._checks[n]) for n in names)), strict=True
        ):
            results[name] = outcome
        return results


def database_check(db: Database) -> CheckFn:
    async def check() -> tuple[bool, str]:
        try:
            return True, f"PostgreSQL {await db.ping()}"
        except Exception as exc:  # any failure to answer is "not ready"; the reason is shown
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            return False, f"database unreachable ({detail})"

    return check


def worker_check(worker: Any) -> CheckFn:
    """Ready while the worker takes jobs: not while it waits out a database outage."""

    async def check() -> tuple[bool, str]:
        if getattr(worker, "connected", True):
            return True, "taking jobs"
        return False, "waiting for the database to come back"

    return check


_ENGINE_NEEDS: Final = {"diffusers": ("torch", "diffusers"), "openai": ("openai",), "fake": ()}


def engines_check(engines: Any, kinds: Iterable[str]) -> CheckFn:
    """Ready when every engine the presets use is loaded, or its packages are installed."""
    wanted = sorted(set(kinds))

    async def check() -> tuple[bool, str]:
        built = getattr(engines, "built", {})
        notes, ok = [], True
        for kind in wanted:
            if kind in built:
                notes.append(f"{kind}: loaded")
                continue
            missing = [
                m for m in _ENGINE_NEEDS.get(kind, ()) if importlib.util.find_spec(m) is None
            ]
            if missing:
                ok = False
                notes.append(
                    f"{kind}: missing {', '.join(missing)} (pip install 'onbrand[{kind}]')"
                )
            else:
                notes.append(f"{kind}: loadable")
        return ok, "; ".join(notes) or "no engine in use"

    return check


def tcp_check(host: str, port: int) -> CheckFn:
    """Ready when something accepts connections on ``host:port`` (an HTTP listener)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host

    async def check() -> tuple[bool, str]:
        try:
            _, writer = await asyncio.open_connection(target, port, family=socket.AF_UNSPEC)
        except OSError as exc:
            return False, f"not listening on {target}:{port} ({exc.strerror or exc})"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True, f"listening on {host}:{port}"

    return check
