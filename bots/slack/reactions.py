"""Slack reaction events for one (message, user, emoji) one at a time, in the order they happened.

Events are acked first and handled concurrently, so an addition and its removal a few
milliseconds apart could be applied in either order; and Slack does not promise to deliver
events in order. ``ReactionOrder`` serialises each key and drops an event older (by its
``event_ts``) than one already handled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from decimal import Decimal, InvalidOperation

REACTION_KEYS_KEPT = 10_000  # (message, user, emoji) keys whose latest event_ts is remembered

ReactionKey = tuple[str, str, str, str]  # channel, message ts, user, emoji


class ReactionOrder:
    """Reaction events for one (message, user, emoji) one at a time, newest last.

    ``turn(key, event_ts)`` waits for the key's lock (taken before the first ``await``, so
    events that arrive in order are handled in order) and yields whether the event is still
    current: False when an event with a later ``event_ts`` for the same key was already
    handled (Slack may deliver an addition after its own removal). Locks go when nobody holds
    or waits for them; the latest ``event_ts`` of the last ``keep`` keys is remembered.
    """

    def __init__(self, keep: int = REACTION_KEYS_KEPT) -> None:
        self.keep = keep
        self._locks: dict[ReactionKey, tuple[asyncio.Lock, int]] = {}  # key → (lock, users)
        self._latest: OrderedDict[ReactionKey, Decimal] = OrderedDict()

    @contextlib.asynccontextmanager
    async def turn(self, key: ReactionKey, event_ts: str | None) -> AsyncIterator[bool]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield self._current(key, _event_time(event_ts))
        finally:
            lock, users = self._locks[key]
            if users > 1:
                self._locks[key] = (lock, users - 1)
            else:
                del self._locks[key]

    def _current(self, key: ReactionKey, at: Decimal | None) -> bool:
        if at is None:  # no event_ts: nothing to order by
            return True
        latest = self._latest.get(key)
        if latest is not None and at < latest:
            return False
        self._latest[key] = at
        self._latest.move_to_end(key)
        while len(self._latest) > self.keep:
            self._latest.popitem(last=False)
        return True

    @property
    def locks(self) -> int:
        """Keys with a handler running or waiting (0 when idle: nothing leaks)."""
        return len(self._locks)


def _event_time(event_ts: str | None) -> Decimal | None:
    try:
        return Decimal(event_ts) if event_ts else None
    except InvalidOperation:
        return None
