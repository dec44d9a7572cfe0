"""Database outages: telling them from other errors, and riding them out.

A long-running process (worker, delivery, chat adapters) must survive PostgreSQL going away for
a while: a restart, a failover, a full disk. ``fault_of`` says whether an exception is such a
fault (and which), through SQLAlchemy's and asyncpg's wrappers; ``Backoff`` spaces reconnects
(capped exponential with full jitter); ``OutageLog`` writes one line when the database goes and
one when it is back, rather than a traceback per attempt; ``translated`` turns a fault under a
user's request into ``DatabaseUnavailable``, a ``UserError`` every adapter shows privately.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Final, Literal

from core.errors import DatabaseUnavailable

__all__ = ["Backoff", "Fault", "OutageLog", "fault_of", "translated"]

Fault = Literal["unreachable", "full"]

_SHUTDOWN_STATES: Final = frozenset({"57P01", "57P02", "57P03"})  # admin/crash shutdown, starting
_FULL_STATES: Final = frozenset({"53100", "53200"})  # disk full, out of memory

UNREACHABLE_MESSAGE: Final = (
    "The database is unreachable right now, so nothing was done; try again in a moment."
)
FULL_MESSAGE: Final = (
    "The database is out of space right now, so nothing was saved; try again later."
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen) or len(seen) > 20:
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__, getattr(current, "orig", None)]
    return seen


def fault_of(exc: BaseException) -> Fault | None:
    """``"unreachable"`` (connection refused, cut, timed out, server shutting down or starting),
    ``"full"`` (SQLSTATE 53100 disk full / 53200 out of memory) or None for anything else."""
    import asyncpg

    for error in _chain(exc):
        if isinstance(error, DatabaseUnavailable):
            return "full" if error.user_message == FULL_MESSAGE else "unreachable"
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(state, str):
            if state in _FULL_STATES:
                return "full"
            if state.startswith("08") or state in _SHUTDOWN_STATES:
                return "unreachable"
        if isinstance(error, asyncpg.PostgresConnectionError | OSError | TimeoutError):
            return "unreachable"
        if isinstance(error, asyncpg.InterfaceError) and "closed" in str(error):
            return "unreachable"
    return None


def unavailable(fault: Fault) -> DatabaseUnavailable:
    return DatabaseUnavailable(FULL_MESSAGE if fault == "full" else UNREACHABLE_MESSAGE)


@contextlib.asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Raise ``DatabaseUnavailable`` for a database fault in the block; anything else as is."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as exc:  # classified here; everything that is not a fault is re-raised
        if (fault := fault_of(exc)) is None:
            raise
        raise unavailable(fault) from exc


class Backoff:
    """Waits between reconnects: ``base`` doubling up to ``cap``, each drawn uniformly from
    [half of that, all of it] ("equal jitter"), so that many processes don't reconnect in step
    and none hammers the server."""

    def __init__(self, base_s: float = 0.1, cap_s: float = 5.0) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempts = 0

    def next(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2**self.attempts)
        self.attempts += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0


class OutageLog:
    """One line when ``what`` loses the database, one when it has it back."""

    def __init__(self, log: logging.Logger, what: str, level: int = logging.WARNING) -> None:
        self.log = log
        self.what = what
        self.level = level
        self.down_since: float | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def lost(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            self.log.log(
                self.level,
                "%s: the database is %s (%s); retrying with backoff",
                self.what,
                "out of space" if fault_of(exc) == "full" else "unreachable",
                detail,
            )

    def back(self) -> None:
        if self.down_since is not None:
            self.log.log(
                self.level,
                "%s: the database is back after %.1f s",
                self.what,
                time.monotonic() - self.down_since,
            )
            self.down_since = None
