"""``RecordingSink``: a chat sink that records what it was asked to post, for the delivery
and the ``ChatSink`` contract suite."""

from __future__ import annotations

from datetime import datetime

from core.domain import (
    Generation,
    MessageRef,
    Platform,
    ReplyTarget,
    ResultCard,
)
from core.ports import Undeliverable

__all__ = ["RecordingSink"]


class RecordingSink:
    """``ChatSink`` in memory: every status card shown and every result posted, in order.

    ``shown(ref)`` is what a status message shows now (the latest card: latest wins, nothing is
    dropped on the way); ``results`` are the posted results with the message each became.
    ``refuse_next`` makes the next post raise, as a platform refusing it does; a post to a
    channel in ``gone`` raises ``Undeliverable``.
    """

    def __init__(
        self, platform: Platform = Platform.CLI, *, max_upload_bytes: int = 8 * 1024 * 1024
    ) -> None:
        self.platform = platform
        self.max_upload_bytes = max_upload_bytes
        self.statuses: dict[MessageRef, list[ResultCard]] = {}
        self.results: list[tuple[ReplyTarget, ResultCard, MessageRef]] = []
        self.flushes = 0
        self._refuse = 0
        self.gone: set[str] = set()  # channels deleted on the platform: posts are Undeliverable

    def refuse_next(self, times: int = 1) -> None:
        self._refuse += times

    def shown(self, ref: MessageRef) -> ResultCard | None:
        cards = self.statuses.get(ref)
        return cards[-1] if cards else None

    async def update_status(self, ref: MessageRef, card: ResultCard) -> None:
        self.statuses.setdefault(ref, []).append(card)

    async def post_result(
        self,
        target: ReplyTarget,
        card: ResultCard,
        generation: Generation,
        *,
        earlier_attempt: datetime | None = None,
    ) -> MessageRef:
        if target.channel_id in self.gone:
            raise Undeliverable(f"channel {target.channel_id} is gone")
        if self._refuse:
            self._refuse -= 1
            raise ConnectionError(f"{self.platform.value} refused the post (a test's wish)")
        channel = target.thread_id or target.channel_id
        ref = MessageRef(self.platform, channel, f"m{len(self.results) + 1}")
        self.results.append((target, card, ref))
        return ref

    async def flush(self) -> None:
        self.flushes += 1
