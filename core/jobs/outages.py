"""How the worker rides out a database outage (``core.db.outage`` says what an outage is).

``patiently`` runs a database statement of a job in hand until the database answers, so a job
keeps its result through an outage; ``QuietOutages`` keeps pgqueuer's and asyncpg's own
per-attempt tracebacks out of the log while the worker says it in one line; ``close_quietly``
and ``unless_fault`` let the worker tear down what a dead connection leaves behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, TypeVar

from core.db.outage import Backoff, OutageLog, fault_of

T = TypeVar("T")

NOISY: Final = ("pgqueuer", "asyncpg.pool")
"""Loggers that log a traceback per failed statement or reconnect during an outage."""


async def patiently(
    call: Callable[[], Awaitable[T]],
    outage: OutageLog,
    cap_s: float,
    *,
    back: Callable[[], bool],
) -> T:
    """``call()`` again and again, backing off, while the database is unreachable or full;
    anything else is raised. When it works after failing and ``back()`` agrees, the outage is
    over. A stop's grace period bounds the wait."""
    backoff = Backoff(base_s=0.1, cap_s=cap_s)
    while True:
        try:
            result = await call()
        except Exception as exc:  # a database fault is waited out; anything else raised
            if fault_of(exc) is None:
                raise
            outage.lost(exc)
            await asyncio.sleep(backoff.next())
        else:
            if backoff.attempts and back():
                outage.back()
            return result


@contextlib.contextmanager
def unless_fault() -> Iterator[None]:
    """Swallow a database fault (an outage), re-raise anything else."""
    try:
        yield
    except Exception as exc:  # classified here: only a database fault is swallowed
        if fault_of(exc) is None:
            raise


async def close_quietly(closable: Any) -> None:
    """Close an asyncpg connection or pool gracefully, or at once when the database is gone."""
    try:
        with unless_fault():
            async with asyncio.timeout(2):
                await closable.close()
                return
    except TimeoutError:
        pass
    closable.terminate()


class QuietOutages(logging.Filter):
    """pgqueuer logs a traceback for every statement that fails on its dead connection (a
    heartbeat or job-log flush every few seconds, even after the database is back, until the
    manager is replaced). The worker's own outage lines say it instead: those records, and
    the buffers' "flush failed" notes while ``down()``, are dropped."""

    def __init__(self, down: Callable[[], bool]) -> None:
        super().__init__()
        self.down = down

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and fault_of(error) is not None:
            return False
        return not ("flush failed" in str(record.msg).lower() and self.down())
