"""``ChatSink`` over Discord's REST API: the ``Delivery`` edits status messages and posts results.

Everything goes through channel-message endpoints with the bot token, never an interaction token
(which dies after 15 minutes). discord.py honours 429s itself (it waits ``retry_after`` and sends
again); any other failure of a post raises, so the ``Delivery`` leaves the generation undelivered
and its sweep tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import discord

from bots.discord.render import Rendered, render_card
from core.domain import Generation, MessageRef, Platform, ReplyTarget, ResultCard

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # under Discord's default 10 MB per upload
MIN_EDIT_INTERVAL_S = 3.0  # progress edits per message, at most one per interval
PING_REQUESTER = discord.AllowedMentions(everyone=False, roles=False, users=True)


@dataclass
class _Edits:
    """Edits waiting for one message: only the newest card is kept, it is never dropped."""

    pending: ResultCard | None = None
    last_sent: float = float("-inf")
    sending: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        """Only waiting out the interval: nothing to send, nothing in flight."""
        return self.pending is None and not self.sending


def requester_mention(generation: Generation) -> str:
    """``<@user>`` for a Discord requester (``discord:guild:user``), else nothing."""
    platform, _, rest = generation.requester.partition(":")
    user_id = rest.rpartition(":")[2]
    return f"<@{user_id}>" if platform == Platform.DISCORD.value and user_id.isdigit() else ""


class DiscordSink:
    """Status edits (throttled per message) and result posts for the ``Delivery``."""

    platform = Platform.DISCORD

    def __init__(
        self,
        client: discord.Client,
        *,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        min_edit_interval_s: float = MIN_EDIT_INTERVAL_S,
    ) -> None:
        self.client = client
        self.max_upload_bytes = max_upload_bytes
        self.min_edit_interval_s = min_edit_interval_s
        self._edits: dict[tuple[str, str], _Edits] = {}

    # --- results ---------------------------------------------------------------------------

    def upload_limit(self, guild_id: str | None) -> int:
        """Our limit, or the guild's when that is smaller (and the guild is known)."""
        guild = self.client.get_guild(int(guild_id)) if guild_id and guild_id.isdigit() else None
        return min(self.max_upload_bytes, guild.filesize_limit) if guild else self.max_upload_bytes

    def render(self, card: ResultCard, guild_id: str | None) -> Rendered:
        return render_card(card, max_upload_bytes=self.upload_limit(guild_id))

    def channel(self, channel_id: str, guild_id: str | None = None) -> discord.PartialMessageable:
        guild = int(guild_id) if guild_id and guild_id.isdigit() else None
        return self.client.get_partial_messageable(int(channel_id), guild_id=guild)

    async def post_result(
        self, target: ReplyTarget, card: ResultCard, generation: Generation
    ) -> MessageRef:
        """Post the result as an ordinary channel message; raises when Discord refuses it."""
        channel = self.channel(target.thread_id or target.channel_id, target.workspace_id)
        rendered = self.render(card, target.workspace_id)
        sent = await channel.send(
            content=requester_mention(generation) or None,
            embed=rendered.embed,
            files=rendered.files,
            view=rendered.view or discord.utils.MISSING,
            allowed_mentions=PING_REQUESTER,
        )
        return MessageRef(Platform.DISCORD, str(sent.channel.id), str(sent.id))

    # --- status edits ----------------------------------------------------------------------

    async def update_status(self, ref: MessageRef, card: ResultCard) -> None:
        """Show ``card`` in the status message: now, or when the message's interval is up.

        Edits in between are coalesced (the newest card wins); the last one is always sent."""
        key = (ref.channel_id, ref.message_id)
        edits = self._edits.get(key)
        if edits is None or (edits.task is not None and edits.task.cancelling()):
            # new, or its pump is being stopped by ``flush``: a fresh pump keeps the pacing
            last = edits.last_sent if edits is not None else float("-inf")
            edits = self._edits[key] = _Edits(last_sent=last)
        edits.pending = card
        if edits.task is None or edits.task.done():
            edits.task = asyncio.create_task(self._pump(ref, key, edits), name=f"edit-{key[1]}")

    async def _pump(self, ref: MessageRef, key: tuple[str, str], edits: _Edits) -> None:
        try:
            while True:
                wait = edits.last_sent + self.min_edit_interval_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                card, edits.pending = edits.pending, None
                if card is None:
                    return  # a quiet interval: nothing more to show
                edits.last_sent, edits.sending = time.monotonic(), True
                try:
                    await self.edit(ref, card)
                except discord.HTTPException as exc:
                    log.warning("could not edit status message %s: %s", ref.message_id, exc)
                finally:
                    edits.sending = False
        finally:
            if self._edits.get(key) is edits:
                del self._edits[key]

    async def edit(self, ref: MessageRef, card: ResultCard) -> None:
        """Edit a message now: the embed and the buttons (none removes them)."""
        rendered = self.render(card, None)
        message = self.channel(ref.channel_id).get_partial_message(int(ref.message_id))
        await message.edit(embed=rendered.embed, view=rendered.view)

    async def flush(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Send the edits in hand (each still waits out its interval), then stop the pumps.

        For shutdown, and for tests that read the messages."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._edits and loop.time() < deadline:
            for edits in list(self._edits.values()):
                if edits.idle and edits.task is not None:
                    edits.task.cancel()
            tasks = [e.task for e in self._edits.values() if e.task is not None]
            if not tasks:
                break
            await asyncio.wait(tasks, timeout=min(0.05, max(0.0, deadline - loop.time())))
