"""Campaign packs on Slack: the "📦 Pack only…" menu under a single image.

A ``multi_static_select`` (``action_id`` ``ob:ps:<gen>:<i>``) of the preset's placements
(``Action.choices``); the placements picked queue ``Service.choose`` (a pack of just those). The
📦 Pack button itself (``ob:pk:…``) is an ordinary button (the preset's whole list). The finished
pack comes back as the contact sheet and the zip, uploaded with ``files_upload_v2``
(``bots.slack.sink``). Registered before the buttons' ``ob:`` listener.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck

from bots.slack.edits import _who
from bots.slack.payloads import required
from core import replies
from core.delivery import announce

if TYPE_CHECKING:
    from bots.slack.app import SlackBot

__all__ = ["PACK_SELECT_ID", "register_packs"]

PACK_SELECT_ID = re.compile(r"^ob:ps:")


def register_packs(bot: SlackBot) -> None:
    """The 📦 placements menu on ``bot``'s bolt app."""

    async def on_pack_select(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        async with bot._handling(body) as key:
            actor, where = await _who(bot, body)
            chosen = action.get("selected_options") or []
            values = [str(o.get("value", "")) for o in chosen if isinstance(o, dict)]
            action_id = required(action, "action_id", "actions[0].")
            ticket = await bot.service.choose(action_id, ",".join(values), actor, where, key=key)
            await announce.announce(bot.service, ticket, bot._poster(where), bot.sink)
            notes = replies.warnings(ticket)
            if notes is not None:
                await bot._tell(body, notes)

    bot.bolt.action(PACK_SELECT_ID)(on_pack_select)
