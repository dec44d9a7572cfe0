"""Generation events over PostgreSQL LISTEN/NOTIFY.

Events carry only ids (and the platform, so a bot can ignore other platforms' results); readers
load the state from the database. They are wake-ups, not the source of truth: a periodic sweep
finds anything a listener missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "onbrand_events"
EventType = Literal["queued", "progress", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class Event:
    type: EventType
    generation_id: uuid.UUID
    platform: str

    def encode(self) -> str:
        return json.dumps(
            {"type": self.type, "generation": str(self.generation_id), "platform": self.platform}
        )

    @classmethod
    def decode(cls, payload: str) -> Event | None:
        try:
            data = json.loads(payload)
            return cls(data["type"], uuid.UUID(data["generation"]), data["platform"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed event %r", payload[:200])
            return None


async def publish(connection: Any, event: Event) -> None:
    """NOTIFY on an asyncpg connection (inside a transaction it is sent at commit)."""
    await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, event.encode())


class Events(asyncio.Queue[Event]):
    """The events received; ``lost`` is set when the LISTEN connection dies (the database went
    away): no event arrives after that, and the reader should subscribe again."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = asyncio.Event()


@contextlib.asynccontextmanager
async def subscribe(dsn: str) -> AsyncIterator[Events]:
    """A queue of events received on a dedicated LISTEN connection for as long as it's open."""
    queue = Events()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        if (event := Event.decode(payload)) is not None:
            queue.put_nowait(event)

    connection = await asyncpg.connect(dsn)
    listener: Callable[..., None] = on_notify
    await connection.add_listener(CHANNEL, listener)
    connection.add_termination_listener(lambda _conn: queue.lost.set())
    try:
        yield queue
    finally:
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await connection.remove_listener(CHANNEL, listener)  # a lost connection has none
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await connection.close()
