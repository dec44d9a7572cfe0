"""The ``ChatSink`` over Discord's REST API: status edits and result posts for the ``Delivery``.

Everything goes through channel-message endpoints with the bot token, never an interaction token
(which dies after 15 minutes). discord.py honours 429s itself (it waits ``retry_after`` and sends
again); any other failure of a post raises, so the ``Delivery`` leaves the generation undelivered
and its sweep tries again. Posts carry an enforced nonce (``nonce``), so one sent again after a
lost answer is not shown twice.
"""

from __future__ import annotations

import base64
import logging
import uuid
from datetime import datetime

import discord

from bots.discord.render import Rendered, render_card
from core.delivery.throttle import EditThrottle
from core.domain import Generation, MessageRef, Platform, ReplyTarget, ResultCard
from core.ports import Undeliverable

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # under Discord's default 10 MB per upload
MIN_EDIT_INTERVAL_S = 3.0  # progress edits per message, at most one per interval
PING_REQUESTER = discord.AllowedMentions(everyone=False, roles=False, users=True)


def nonce(kind: str, generation_id: uuid.UUID) -> str:
    """The nonce of a generation's status (``s``) or result (``r``) message: Discord allows 25
    characters, so the id as 22 characters of URL-safe base64 after the kind."""
    return kind + base64.urlsafe_b64encode(generation_id.bytes).decode().rstrip("=")


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
        self.edits = EditThrottle(self.edit, min_interval_s=min_edit_interval_s)

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
        self,
        target: ReplyTarget,
        card: ResultCard,
        generation: Generation,
        *,
        earlier_attempt: datetime | None = None,
    ) -> MessageRef:
        """Post the result as an ordinary channel message; raises when Discord refuses it, with
        ``Undeliverable`` when the channel is gone (404). A 403 (missing permissions) is worth
        retrying: an admin can grant them.

        The message carries a nonce made from the generation's id, enforced: a post whose
        answer was lost, sent again (discord.py's own retry of a 5xx, or the sweep's within a
        few minutes, ``earlier_attempt`` or not), gets the message already made back instead of
        a second one."""
        channel = self.channel(target.thread_id or target.channel_id, target.workspace_id)
        rendered = self.render(card, target.workspace_id)
        try:
            sent = await channel.send(
                content=requester_mention(generation) or None,
                embed=rendered.embed,
                files=rendered.files,
                view=rendered.view or discord.utils.MISSING,
                allowed_mentions=PING_REQUESTER,
                nonce=nonce("r", generation.id),
            )
        except discord.NotFound as exc:
            raise Undeliverable(f"Discord: {exc.status} {exc.text or exc.code}") from exc
        return MessageRef(Platform.DISCORD, str(sent.channel.id), str(sent.id))

    # --- status edits ----------------------------------------------------------------------

    async def update_status(self, ref: MessageRef, card: ResultCard) -> None:
        """Show ``card`` in the status message: now, or when the message's interval is up
        (``core.delivery.throttle``: the newest card wins, the last one is always sent)."""
        self.edits.update(ref, card)

    async def edit(self, ref: MessageRef, card: ResultCard) -> None:
        """Edit a message now: the embed and the buttons (none removes them)."""
        rendered = self.render(card, None)
        message = self.channel(ref.channel_id).get_partial_message(int(ref.message_id))
        try:
            await message.edit(embed=rendered.embed, view=rendered.view)
        except discord.HTTPException as exc:  # deleted message, lost access: nothing to retry
            log.warning("could not edit status message %s: %s", ref.message_id, exc)

    async def flush(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Send the status edits in hand (shutdown, and tests that read the messages)."""
        await self.edits.flush(timeout)
