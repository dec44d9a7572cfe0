"""Discord side of the team's memory: private warnings after a reaction (a near-duplicate
approval: a reaction has no interaction to answer ephemerally, so it goes by direct message)
and ``/imagine-search``."""

from __future__ import annotations

import logging

import discord

from bots.discord.render import reply_content
from core.domain import ResultCard

log = logging.getLogger(__name__)


async def warn_privately(client: discord.Client, user_id: int, card: ResultCard | None) -> None:
    """Send ``card`` (if any) to the user alone, as a direct message."""
    if card is None:
        return
    try:
        user = client.get_user(user_id) or await client.fetch_user(user_id)
        await user.send(reply_content(card))
    except discord.HTTPException as exc:  # DMs closed, or the user is gone: the log says so
        log.warning("could not warn user %s privately: %s", user_id, exc)
