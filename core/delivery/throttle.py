"""The latest-wins throttle for status-message edits, one for every chat platform.

Progress arrives faster than a chat platform lets a bot edit a message. ``EditThrottle`` keeps,
per message, only the newest card waiting and sends it when the message's interval
(``min_interval_s`` since its last edit) is up: ``update`` never blocks, edits in between are
coalesced, and the last one is never dropped. A message's pacing is forgotten after a quiet
interval. ``pace`` (optional) is awaited before each edit: a platform-wide budget such as a
token bucket per workspace.

``flush`` sends what is still waiting (shutdown, tests that read the messages): an edit whose
interval ends within the flush's time is sent then, keeping the pacing; one that would have to
wait longer is sent at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.domain import MessageRef, ResultCard

log = logging.getLogger(__name__)

SendFn = Callable[[MessageRef, ResultCard], Awaitable[None]]
PaceFn = Callable[[], Awaitable[None]]


@dataclass
class _Edits:
    """One message's waiting card and pacing."""

    pending: ResultCard | None = None
    last_sent: float = float("-inf")
    task: asyncio.Task[None] | None = None


class EditThrottle:
    """Status edits per message: at most one per ``min_interval_s``, the newest card wins."""

    def __init__(self, send: SendFn, *, min_interval_s: float, pace: PaceFn | None = None) -> None:
        self._send = send
        self.min_interval_s = min_interval_s
        self._pace = pace
        self._edits: dict[tuple[str, str], _Edits] = {}
        self._flush_by: float | None = None  # while flushing: the deadline
        self._hurry = asyncio.Event()  # set when a flush starts: pumps re-plan their wait

    @property
    def pending(self) -> int:
        """Messages with an edit waiting to be sent."""
        return sum(1 for edits in self._edits.values() if edits.pending is not None)

    def update(self, ref: MessageRef, card: ResultCard) -> None:
        """Show ``card`` in the message: now, or when the message's interval is up."""
        key = (ref.channel_id, ref.message_id)
        edits = self._edits.get(key)
        if edits is None or (edits.task is not None and edits.task.cancelling()):
            last = edits.last_sent if edits is not None else float("-inf")
            edits = self._edits[key] = _Edits(last_sent=last)
        edits.pending = card
        if edits.task is None or edits.task.done():
            edits.task = asyncio.create_task(self._pump(ref, key, edits), name=f"edit-{key[1]}")

    def retry(self, ref: MessageRef, card: ResultCard) -> None:
        """Send ``card`` again after the message's interval (its edit failed for a passing
        reason), unless a newer card is already waiting to replace it."""
        edits = self._edits.get((ref.channel_id, ref.message_id))
        if edits is None or edits.pending is None:
            self.update(ref, card)

    async def _pump(self, ref: MessageRef, key: tuple[str, str], edits: _Edits) -> None:
        try:
            while True:
                due = edits.last_sent + self.min_interval_s
                if self._flush_by is not None:
                    if edits.pending is None:
                        return  # nothing more to show: no need to wait out the interval
                    if due > self._flush_by:
                        due = 0.0  # no time left to keep the pace
                wait = due - time.monotonic()
                if wait > 0:
                    await self._pause(wait)
                    continue
                if edits.pending is not None and self._pace is not None and self._flush_by is None:
                    await self._pace()
                card, edits.pending = edits.pending, None
                if card is None:
                    return  # a quiet interval: the message's pacing is forgotten
                edits.last_sent = time.monotonic()
                await self._send(ref, card)
        except Exception:  # a task boundary: the next update starts a fresh pump
            log.exception("status edits of message %s stopped", ref.message_id)
        finally:
            if self._edits.get(key) is edits:
                del self._edits[key]

    async def _pause(self, seconds: float) -> None:
        if self._flush_by is not None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), seconds)

    async def flush(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Send the edits still waiting, within ``timeout``; what is still in flight then is
        given up."""
        self._flush_by = time.monotonic() + timeout
        self._hurry.set()
        try:
            tasks = [e.task for e in self._edits.values() if e.task is not None]
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=timeout)
                for task in late:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            self._flush_by = None
            self._hurry.clear()
