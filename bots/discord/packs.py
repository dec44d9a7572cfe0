"""Campaign packs on Discord: the "📦 Pack only…" menu under a single image.

``PackSelect`` (``ob:ps:<gen>:<i>``) is a ``DynamicItem`` whose state is its custom id (DESIGN.md
rule 3): a multi-select of the preset's placements (``Action.choices``); the placements picked
queue ``Service.choose`` (a pack of just those). The 📦 Pack button itself is an ``ActionButton``
(the preset's whole list). The finished pack comes back as a message with the contact sheet and
the zip attached (``core.delivery.packs``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast

import discord

from core import replies
from core.delivery import announce
from core.domain import Action

if TYPE_CHECKING:
    from bots.discord.bot import OnbrandBot

__all__ = ["PACK_TEMPLATE", "PackSelect"]

PACK_TEMPLATE = r"ob:ps:(?P<gid>[0-9a-f-]{36}):(?P<index>[0-4])"
MAX_OPTIONS = 25  # Discord's limit for a select's options


class PackSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=PACK_TEMPLATE):
    """The "📦 Pack only…" menu: pick the placements, the pack of just those is queued."""

    def __init__(self, custom_id: str, choices: tuple[tuple[str, str], ...] = ()) -> None:
        options = [discord.SelectOption(label=t, value=v) for v, t in choices[:MAX_OPTIONS]]
        super().__init__(
            discord.ui.Select(
                custom_id=custom_id,
                placeholder="📦 Pack only…",
                min_values=1,
                max_values=max(1, len(options)),
                options=options,
            )
        )
        self.action_id = custom_id

    @classmethod
    def for_action(cls, action: Action) -> PackSelect:
        return cls(action.custom_id, action.choices)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> PackSelect:
        return cls(match.string)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        from bots.discord.bot import report_error, send_private

        bot = cast("OnbrandBot", interaction.client)
        try:
            await interaction.response.defer()
            data = interaction.data if isinstance(interaction.data, dict) else {}
            values = [str(v) for v in data.get("values") or []]
            actor = bot.actor(interaction)
            ticket = await bot.service.choose(
                self.action_id,
                ",".join(values),
                actor,
                bot.reply_target(interaction),
                key=bot.request_key(interaction),
            )
            await announce.announce(bot.service, ticket, bot._poster(interaction, actor), bot.sink)
            notes = replies.warnings(ticket)
            if notes is not None:
                await send_private(interaction, notes)
        except Exception as exc:  # a task boundary: the person gets an answer, the log the rest
            await report_error(interaction, exc)
