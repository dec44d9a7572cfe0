"""Discord side of the team's memory: private warnings after a reaction (a near-duplicate
approval: a reaction has no interaction to answer ephemerally, so it goes by direct message)
and ``/imagine-search``."""

from __future__ import annotations

import io
import logging
import re
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.utils import MISSING

from bots.discord.buttons import ActionButton
from bots.discord.render import reply_content
from core.domain import ActionKind, ResultCard

if TYPE_CHECKING:
    from bots.discord.bot import OnbrandBot

log = logging.getLogger(__name__)


async def warn_privately(client: discord.Client, user_id: int, card: ResultCard | None) -> None:
    """Send ``card`` (if any) to the user alone, as a direct message."""
    if card is None:
        return
    try:
        channel = await client.create_dm(discord.Object(user_id))
        await channel.send(reply_content(card))
    except discord.HTTPException as exc:  # DMs closed, or the user is gone: the log says so
        log.warning("could not warn user %s privately: %s", user_id, exc)


TEMPLATE = r"ob:(?P<action>[ol]):(?P<gid>[0-9a-f-]{36}):(?P<index>[0-4])"  # Open N / Like N
MAX_ROW_ITEMS = 5


class SearchButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """A search card's "Open N" / "Like N": its state is its id, so it works after a restart."""

    def __init__(self, custom_id: str, label: str = "") -> None:
        super().__init__(
            discord.ui.Button(
                label=label or None, style=discord.ButtonStyle.secondary, custom_id=custom_id
            )
        )
        self.action_id = custom_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> SearchButton:
        return cls(match.string)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        from bots.discord.bot import report_error

        bot = cast("OnbrandBot", interaction.client)
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            card = await bot.service.memory_button(bot.actor(interaction), self.action_id)
            await send_card(interaction, card)
        except Exception as exc:  # a task boundary: the person gets an answer, the log the rest
            await report_error(interaction, exc)


def search_command(bot: OnbrandBot) -> app_commands.Command[Any, ..., None]:
    """``/imagine-search query``: a private card of past work."""

    @app_commands.command(name="imagine-search", description="Search past images")
    @app_commands.describe(
        query="Words to look for; --campaign, --approved, --favourites, --since, --user, "
        "--like GEN:INDEX and --limit work here too."
    )
    @app_commands.guild_only()
    async def imagine_search(interaction: discord.Interaction[Any], query: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        card = await bot.service.search_chat(bot.actor(interaction), query)
        await send_card(interaction, card)

    return imagine_search


async def send_card(interaction: discord.Interaction[Any], card: ResultCard) -> None:
    """``card`` privately, as the followup of a deferred interaction: text, the images as
    attachments, the buttons in rows of five (at most 25: ``MAX_CARD_RESULTS``)."""
    view = discord.ui.View(timeout=None)
    for n, action in enumerate(card.actions):
        button: discord.ui.DynamicItem[discord.ui.Button[Any]]
        if action.kind in (ActionKind.OPEN, ActionKind.LIKE):
            button = SearchButton(action.custom_id, action.label)
        else:  # 📦: the result buttons' own (the pack is announced in the channel)
            button = ActionButton.for_action(action)
        button.row = n // MAX_ROW_ITEMS
        view.add_item(button)
    files = [discord.File(io.BytesIO(i.data), filename=i.filename) for i in card.images]
    await interaction.followup.send(
        reply_content(card), files=files, view=view if card.actions else MISSING, ephemeral=True
    )
