"""``SlackSink``: how the ``Delivery`` edits status messages and posts results in Slack.

* ``update_status`` never blocks the caller. Edits are throttled per message (at least
  ``min_interval_s`` apart; a newer card replaces a pending one, so only the latest is sent) and
  per workspace (one token bucket per bot token, well under Slack's ~50 ``chat.update`` a minute).
  A closing edit (a card without buttons) is never dropped: it waits for its turn like any other,
  and ``flush()`` sends whatever is still pending at shutdown.
* ``post_result`` uploads the grid with ``files_upload_v2`` (the card text as its comment), then
  posts the Block Kit buttons message in the same channel or thread and returns that message:
  reactions there count. The upload's own message is recorded as a result message too (when
  Slack says where it landed), so reactions on the picture count as well. Any failure raises, so
  the ``Delivery`` leaves the generation undelivered and its sweep tries again; an upload that
  succeeded is not repeated on that retry (same process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import render
from core.domain import Generation, MessageRef, Platform, ReplyTarget, ResultCard
from core.service import Service

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 8 * 1024 * 1024


class TokenBucket:
    """``rate_per_minute`` tokens a minute, up to ``burst`` saved; ``take`` waits for one."""

    def __init__(
        self,
        rate_per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    async def take(self) -> None:
        async with self._lock:
            while True:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


class SlackSink:
    """The ``ChatSink`` for one Slack workspace (one bot token)."""

    platform = Platform.SLACK
    max_upload_bytes = MAX_UPLOAD_BYTES

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        service: Service | None = None,
        min_interval_s: float = 3.0,
        updates_per_minute: float = 30.0,
        burst: int = 5,
    ) -> None:
        self.client = client
        self.service = service
        self.min_interval_s = min_interval_s
        self.bucket = TokenBucket(updates_per_minute, burst)
        self._pending: dict[tuple[str, str], ResultCard] = {}
        self._last_sent: dict[tuple[str, str], float] = {}
        self._drains: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._uploaded: dict[uuid.UUID, str | None] = {}  # generation → its file message ts
        self.edits_sent = 0

    # --- status edits ----------------------------------------------------------------------

    async def update_status(self, ref: MessageRef, card: ResultCard) -> None:
        """Queue an edit of a status message; returns at once."""
        key = (ref.channel_id, ref.message_id)
        self._pending[key] = card
        if key not in self._drains:
            self._drains[key] = asyncio.create_task(self._drain(key), name=f"slack-edit-{key[1]}")

    async def _drain(self, key: tuple[str, str]) -> None:
        try:
            while key in self._pending:
                wait = self._last_sent.get(key, -1e9) + self.min_interval_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                await self.bucket.take()
                card = self._pending.pop(key, None)
                if card is None:
                    break
                await self._edit(key, card)
                self._last_sent[key] = time.monotonic()
                if not card.actions:  # the closing edit: nothing follows it
                    self._last_sent.pop(key, None)
        finally:
            self._drains.pop(key, None)

    async def _edit(self, key: tuple[str, str], card: ResultCard) -> None:
        channel, ts = key
        try:
            await self.client.chat_update(
                channel=channel,
                ts=ts,
                text=render.fallback_text(card),
                blocks=render.status_blocks(card),
            )
            self.edits_sent += 1
        except SlackApiError as exc:  # deleted message, archived channel: nothing to retry
            log.warning("could not edit status message %s in %s: %s", ts, channel, _error(exc))

    async def flush(self) -> None:
        """Send every pending edit now (shutdown): the closing edits are never lost."""
        drains = list(self._drains.values())
        for task in drains:
            task.cancel()
        for task in drains:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pending, self._pending = self._pending, {}
        for key, card in pending.items():
            await self._edit(key, card)

    @property
    def pending_edits(self) -> int:
        return len(self._pending)

    # --- results ---------------------------------------------------------------------------

    async def post_result(
        self, target: ReplyTarget, card: ResultCard, generation: Generation
    ) -> MessageRef:
        channel, thread = target.channel_id, target.thread_id
        image_posted = False
        if card.images:
            if generation.id not in self._uploaded:
                self._uploaded[generation.id] = await self._upload(target, card)
            image_posted = True
        mention = render.requester_mention(generation.requester)
        blocks = render.result_blocks(card, image_posted=image_posted)
        if mention:
            blocks.insert(0 if image_posted else 1, render.section(f"for {mention}"))
        posted = await self.client.chat_postMessage(
            channel=channel,
            thread_ts=thread,
            text=render.fallback_text(card),
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        file_ts = self._uploaded.pop(generation.id, None)
        ref = MessageRef(Platform.SLACK, str(posted["channel"]), str(posted["ts"]))
        if file_ts and self.service is not None:
            picture = MessageRef(Platform.SLACK, channel, file_ts)
            await self.service.record_message(generation.id, picture, "result")
        return ref

    async def _upload(self, target: ReplyTarget, card: ResultCard) -> str | None:
        """Upload the card's images into the target; the ts of the message that shares them."""
        uploads: list[dict[str, Any]] = [
            {"content": image.data, "filename": image.filename, "title": image.filename}
            for image in card.images
        ]
        answer = await self.client.files_upload_v2(
            file_uploads=uploads,
            channel=target.channel_id,
            thread_ts=target.thread_id,
            initial_comment=render.fallback_text(card),
        )
        files = answer.get("files") or []
        return _share_ts(files[0], target.channel_id) if files else None


def _share_ts(file: dict[str, Any], channel: str) -> str | None:
    """Where Slack says the file was shared (it may not know yet right after the upload)."""
    shares = file.get("shares") or {}
    for scope in ("public", "private"):
        for share in (shares.get(scope) or {}).get(channel) or []:
            if ts := share.get("ts"):
                return str(ts)
    return None


def _error(exc: SlackApiError) -> str:
    response = getattr(exc, "response", None)
    try:
        return str(response["error"]) if response is not None else str(exc)
    except (KeyError, TypeError):
        return str(exc)
