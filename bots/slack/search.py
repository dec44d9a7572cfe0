"""Slack side of the team's memory: private warnings after a reaction (a near-duplicate
approval) and ``/imagine-search``."""

from __future__ import annotations

import functools
import logging
import re
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import render
from bots.slack.payloads import field, part, required, sender
from core.domain import ResultCard
from core.memory.query import USAGE

if TYPE_CHECKING:
    from bots.slack.app import SlackBot

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


SEARCH_BUTTON = re.compile(r"^ob:[ol]:")  # Open N / Like N on a search card
BUTTONS_PER_ROW = 5


def register(bot: SlackBot) -> None:
    """``/imagine-search`` and the search card's buttons on ``bot``'s bolt app (before the
    general ``ob:`` button listener: bolt hands a click to the first listener that matches)."""
    bot.bolt.command("/imagine-search")(functools.partial(on_search, bot))
    bot.bolt.action(SEARCH_BUTTON)(functools.partial(on_button, bot))


async def on_search(bot: SlackBot, ack: AsyncAck, command: dict[str, Any]) -> None:
    text = command.get("text", "").strip()
    if not text:
        await ack(text=USAGE, response_type="ephemeral")
        return
    await ack(text=f"🔎 Searching for {render.escape(text)}…", response_type="ephemeral")
    async with bot._handling(command):
        team, user, channel = sender(command)
        actor = await bot.actor(team, user, command.get("user_name", ""), with_roles=False)
        card = await bot.service.search_chat(actor, text)
        await show_card(bot.client, channel, user, card)


async def on_button(bot: SlackBot, ack: AsyncAck, body: dict[str, Any], action: Any) -> None:
    await ack()
    async with bot._handling(body):
        user = part(body, "user")
        user_id = required(user, "id", "user.")
        team_id = field(part(body, "team"), "id") or field(user, "team_id") or ""
        channel = field(part(body, "container"), "channel_id") or required(
            part(body, "channel"), "id", "channel."
        )
        actor = await bot.actor(team_id, user_id, field(user, "username") or "", with_roles=False)
        card = await bot.service.memory_button(actor, required(action, "action_id", "actions."))
        await show_card(bot.client, channel, user_id, card)


async def show_card(client: AsyncWebClient, channel: str, user: str, card: ResultCard) -> None:
    """``card`` to ``user`` alone: its images uploaded privately (shared nowhere) and shown in
    an ephemeral message with the text and the buttons."""
    blocks: list[render.Block] = [render.section(render.reply_text(card))]
    if card.images:
        answer = await client.files_upload_v2(
            file_uploads=[
                {"content": i.data, "filename": i.filename, "title": i.filename}
                for i in card.images
            ]
        )
        for uploaded in answer.get("files") or []:
            blocks.append(render.image_block(str(uploaded["id"]), card.text.splitlines()[0]))
    for start in range(0, len(card.actions), BUTTONS_PER_ROW):
        row = card.actions[start : start + BUTTONS_PER_ROW]
        blocks.append(
            {
                "type": "actions",
                "block_id": f"ob-search-{start // BUTTONS_PER_ROW + 1}",
                "elements": [render.button(a) for a in row],
            }
        )
    await client.chat_postEphemeral(
        channel=channel, user=user, text=render.fallback_text(card), blocks=blocks
    )
