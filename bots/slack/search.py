"""Slack side of the team's memory: private warnings after a reaction (a near-duplicate
approval) and ``/imagine-search``."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import render
from core.domain import ResultCard

log = logging.getLogger(__name__)


async def warn_privately(
    client: AsyncWebClient, channel: str, user: str, card: ResultCard | None
) -> None:
    """Show ``card`` (if any) to ``user`` alone in ``channel``."""
    if card is None:
        return
    try:
        await client.chat_postEphemeral(channel=channel, user=user, text=render.reply_text(card))
    except SlackApiError as exc:
        log.warning("could not warn %s privately: %s", user, exc.response.get("error"))
