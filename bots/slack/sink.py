"""``SlackSink``: how the ``Delivery`` edits status messages and posts results in Slack.

* ``update_status`` never blocks the caller. Edits are throttled per message by
  ``core.delivery.throttle`` (at least ``min_interval_s`` apart; a newer card replaces a pending
  one, so only the latest is sent) and per workspace (one token bucket per bot token, well under
  Slack's ~50 ``chat.update`` a minute). A closing edit (a card without buttons) is never
  dropped: it waits for its turn like any other, and ``flush()`` sends whatever is still pending
  at shutdown. An edit Slack refuses for a passing reason (429 or 5xx after the client's own
  retries, a dropped connection) is queued again, unless a newer card waits, at most
  ``EDIT_TRIES`` times in all: chat.update is idempotent, and a lost closing edit would leave
  a "Generating… 75%" message with its ✖ for good.
* ``post_result`` posts ONE message, as Discord does: it uploads the grid privately
  (``files_upload_v2`` without a channel: ``files.getUploadURLExternal``, the bytes,
  ``files.completeUploadExternal``; no message, only the bot can see the file), then
  ``chat.postMessage`` with the card's text, who asked, an image block showing the upload
  (``slack_file``; the bot may show its own file), the context line and the buttons, in the
  channel or thread. That message is returned, and the ``Delivery`` records it: reactions on
  it count.
* When Slack refuses the image block (``invalid_blocks``: Slack may not have processed a fresh
  upload yet, or won't show the file), it logs a warning with the error, deletes the private
  upload (best effort) and falls back to two messages: the grid uploaded into the channel or
  thread (the card text as its comment; that message is recorded as a result message too, when
  Slack says where it landed, so reactions on the picture count), then the buttons message.
* Any other failure raises, so the ``Delivery`` leaves the generation undelivered and its sweep
  tries again; an upload that succeeded is not repeated on that retry (same process).
* The result message is posted at most once (``bots.slack.once``): it carries metadata naming
  its generation; an answer that leaves the outcome unknown (5xx, lost connection) is followed
  by a look at the channel or thread, and so is a try after an earlier one whose answer was lost
  (``earlier_attempt``: another process, or after a crash) before anything is uploaded again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import once, render
from core.delivery.throttle import EditThrottle
from core.domain import Generation, MessageRef, Platform, ReplyTarget, ResultCard
from core.ports import Undeliverable
from core.service import Service

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 8 * 1024 * 1024
EDIT_TRIES = 3  # chat.update calls per card when Slack refuses it for a passing reason
IMAGE_REFUSED = frozenset({"invalid_blocks"})  # Slack won't show the upload in an image block
# Errors that no retry cures: the channel was deleted or archived, or the bot can't post there.
CHANNEL_GONE = frozenset(
    {"channel_not_found", "not_in_channel", "is_archived", "restricted_action", "team_not_found"}
)


@dataclass
class _Posting:
    """What already went out for one generation's result, so a retry doesn't repeat it."""

    files: list[str] | None = None  # the privately uploaded images' file ids
    fallback: bool = False  # Slack refused the image blocks: an upload, then the buttons
    shared: bool = False  # the fallback's upload into the channel is done
    shared_ts: str | None = None  # the message that shares it, when Slack said
    posted: MessageRef | None = None  # the fallback's buttons message
    since: float = 0.0  # epoch seconds: a lookup for the message reads from here on


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
        self.bucket = TokenBucket(updates_per_minute, burst)
        self.edits = EditThrottle(self._edit, min_interval_s=min_interval_s, pace=self.bucket.take)
        self._postings: dict[uuid.UUID, _Posting] = {}  # generations being posted
        self._with_files: dict[uuid.UUID, MessageRef] = {}  # posted; their files not yet
        self._edit_tries: dict[tuple[str, str], tuple[ResultCard, int]] = {}  # card, tries
        self.edits_sent = 0

    # --- status edits ----------------------------------------------------------------------

    async def update_status(self, ref: MessageRef, card: ResultCard) -> None:
        """Queue an edit of a status message; returns at once."""
        self.edits.update(ref, card)

    async def _edit(self, ref: MessageRef, card: ResultCard) -> None:
        key = (ref.channel_id, ref.message_id)
        last, tries = self._edit_tries.pop(key, (None, 0))
        tries = tries + 1 if last is card else 1
        try:
            await self.client.chat_update(
                channel=ref.channel_id,
                ts=ref.message_id,
                text=render.fallback_text(card),
                blocks=render.status_blocks(card),
            )
            self.edits_sent += 1
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            why = _error(exc) if isinstance(exc, SlackApiError) else repr(exc)
            if _passing(exc) and tries < EDIT_TRIES:  # again, unless a newer card waits
                self._edit_tries[key] = (card, tries)
                self.edits.retry(ref, card)
                log.info("status edit of %s refused (%s); trying again", ref.message_id, why)
                return
            # a deleted message, an archived channel, or Slack refusing it again and again
            log.warning(
                "could not edit status message %s in %s: %s", ref.message_id, ref.channel_id, why
            )

    async def flush(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Send the pending edits (shutdown): the closing edits are never lost."""
        await self.edits.flush(timeout)

    @property
    def pending_edits(self) -> int:
        return self.edits.pending

    # --- results ---------------------------------------------------------------------------

    async def post_result(
        self,
        target: ReplyTarget,
        card: ResultCard,
        generation: Generation,
        *,
        earlier_attempt: datetime | None = None,
    ) -> MessageRef:
        """The result as one message with the grid and its buttons (or, when Slack refuses the
        image block, as an upload and a buttons message); raises when Slack refuses it, with
        ``Undeliverable`` when the channel is gone or closed to the bot for good. After an
        ``earlier_attempt`` whose answer was lost, the message that attempt posted, if Slack
        shows it."""
        since = (earlier_attempt or datetime.now(UTC)).timestamp() - once.LOOKBACK_S
        with_files = any(not i.content_type.startswith("image/") for i in card.images)
        try:
            if earlier_attempt is not None:  # whose answer was lost: did it post?
                found = await once.find(
                    self.client,
                    once.RESULT,
                    str(generation.id),
                    target.channel_id,
                    target.thread_id,
                    since,
                )
                if found is not None:
                    log.info("the result of %s was posted already: not again", generation.id)
                    self._postings.pop(generation.id, None)
                    if not with_files:
                        return MessageRef(Platform.SLACK, *found)
                    self._with_files[generation.id] = MessageRef(Platform.SLACK, *found)
            if with_files:
                return await self._post_with_files(target, card, generation, since)
            return await self._post_result(target, card, generation, since)
        except SlackApiError as exc:
            if _error(exc) in CHANNEL_GONE:
                self._postings.pop(generation.id, None)
                self._with_files.pop(generation.id, None)
                raise Undeliverable(f"Slack: {_error(exc)}") from exc
            raise

    async def _post_result(
        self, target: ReplyTarget, card: ResultCard, generation: Generation, since: float
    ) -> MessageRef:
        posting = self._postings.setdefault(generation.id, _Posting(since=since))
        if card.images and not posting.fallback:
            if posting.files is None:
                posting.files = await self._upload_privately(card)
            alt_text = card.text or card.images[0].filename
            images = [render.image_block(file_id, alt_text) for file_id in posting.files]
            try:
                ref = await self._post(target, card, generation, posting.since, images=images)
            except SlackApiError as exc:
                if _error(exc) not in IMAGE_REFUSED:
                    raise
                log.warning(
                    "Slack refused the grid of %s as an image block (%s: %s); posting it as an "
                    "upload and a buttons message instead",
                    generation.id,
                    _error(exc),
                    _details(exc),
                )
                posting.fallback = True
                await self._delete(posting.files)
            else:
                del self._postings[generation.id]
                return ref
        if card.images and not posting.shared:
            posting.shared_ts = await self._upload(target, card)
            posting.shared = True
        if posting.posted is None:
            posting.posted = await self._post(
                target, card, generation, posting.since, image_posted=bool(card.images)
            )
        if posting.shared_ts and self.service is not None:
            picture = MessageRef(Platform.SLACK, target.channel_id, posting.shared_ts)
            await self.service.record_message(generation.id, picture, "result")
        del self._postings[generation.id]
        return posting.posted

    async def _post_with_files(
        self, target: ReplyTarget, card: ResultCard, generation: Generation, since: float
    ) -> MessageRef:
        """A card with files that are not pictures (a pack's zip): the message with its
        pictures first, then the files uploaded into the channel or thread beside it
        (``files_upload_v2``); a retry after a failed upload doesn't post the message again."""
        pictures = tuple(i for i in card.images if i.content_type.startswith("image/"))
        files = [i for i in card.images if not i.content_type.startswith("image/")]
        ref = self._with_files.get(generation.id)
        if ref is None:
            ref = await self._post_result(target, replace(card, images=pictures), generation, since)
            self._with_files[generation.id] = ref
        await self.client.files_upload_v2(
            file_uploads=[
                {"content": f.data, "filename": f.filename, "title": f.filename} for f in files
            ],
            channel=target.channel_id,
            thread_ts=target.thread_id,
            initial_comment=f"📦 {', '.join(f.filename for f in files)}",
        )
        del self._with_files[generation.id]
        return ref

    async def _post(
        self,
        target: ReplyTarget,
        card: ResultCard,
        generation: Generation,
        since: float,
        *,
        images: Sequence[render.Block] = (),
        image_posted: bool = False,
    ) -> MessageRef:
        blocks = render.result_blocks(
            card,
            images=images,
            image_posted=image_posted,
            mention=render.requester_mention(generation.requester),
        )
        channel, ts = await once.post_once(
            self.client,
            once.RESULT,
            str(generation.id),
            channel=target.channel_id,
            thread_ts=target.thread_id,
            since=since,
            text=render.fallback_text(card),
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        return MessageRef(Platform.SLACK, channel, ts)

    async def _upload_privately(self, card: ResultCard) -> list[str]:
        """Upload the card's images without sharing them anywhere; their file ids."""
        answer = await self.client.files_upload_v2(file_uploads=_uploads(card))
        ids = [str(f["id"]) for f in answer.get("files") or [] if f.get("id")]
        if len(ids) != len(card.images):
            raise RuntimeError(f"Slack answered {len(ids)} file ids for {len(card.images)} uploads")
        return ids

    async def _delete(self, file_ids: Sequence[str]) -> None:
        """Delete private uploads nobody will see (best effort: they are only clutter)."""
        for file_id in file_ids:
            try:
                await self.client.files_delete(file=file_id)
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:  # only clutter
                why = _error(exc) if isinstance(exc, SlackApiError) else repr(exc)
                log.warning("could not delete the unused upload %s: %s", file_id, why)

    async def _upload(self, target: ReplyTarget, card: ResultCard) -> str | None:
        """Upload the card's images into the target; the ts of the message that shares them."""
        answer = await self.client.files_upload_v2(
            file_uploads=_uploads(card),
            channel=target.channel_id,
            thread_ts=target.thread_id,
            initial_comment=render.fallback_text(card),
        )
        files = answer.get("files") or []
        return _share_ts(files[0], target.channel_id) if files else None


def _uploads(card: ResultCard) -> list[dict[str, Any]]:
    return [
        {"content": image.data, "filename": image.filename, "title": image.filename}
        for image in card.images
    ]


def _share_ts(file: dict[str, Any], channel: str) -> str | None:
    """Where Slack says the file was shared (it may not know yet right after the upload)."""
    shares = file.get("shares") or {}
    for scope in ("public", "private"):
        for share in (shares.get(scope) or {}).get(channel) or []:
            if ts := share.get("ts"):
                return str(ts)
    return None


def _passing(exc: Exception) -> bool:
    """Whether Slack refused a call for a reason that passes: rate limited, a server error, a
    connection that failed (all after the client's own retries)."""
    if not isinstance(exc, SlackApiError):
        return True  # aiohttp.ClientError, TimeoutError
    status = getattr(exc.response, "status_code", 200)
    return status == 429 or status >= 500 or _error(exc) in {"ratelimited", "internal_error"}


def _details(exc: SlackApiError) -> str:
    """Slack's explanation of an ``invalid_blocks`` (which block, what is wrong), if any."""
    try:
        return "; ".join(str(e) for e in exc.response.get("errors") or []) or "no details"
    except (AttributeError, TypeError):
        return "no details"


def _error(exc: SlackApiError) -> str:
    response = getattr(exc, "response", None)
    try:
        return str(response["error"]) if response is not None else str(exc)
    except (KeyError, TypeError):
        return str(exc)
