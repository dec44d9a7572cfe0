"""Edits on Discord beyond the buttons: the "Vary (Region)" menu and the Remix form.

Both are ``DynamicItem`` s whose whole state is their ``ob:…`` custom id (DESIGN.md rule 3), so
they work on any message, however old, after a restart:

- ``RegionSelect`` (``ob:vr:<gen>:<i>``): a select of ``core.cards.REGION_CHOICES``; a choice
  queues ``Service.choose`` (a vary-region edit with the result's prompt);
- ``RemixButton`` (``ob:rm:<gen>:0`` under a grid, ``:1`` under a single image): opens
  ``RemixModal`` with the result's prompt to edit; the submission queues ``Service.remix``
  (same seed and settings; one image alone for ``:1``). A refusal is private.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any, cast

import discord

from core import replies
from core.cards import REGION_CHOICES
from core.delivery import announce
from core.domain import Action
from core.service.remix import MAX_REMIX_PROMPT

if TYPE_CHECKING:
    from bots.discord.bot import OnbrandBot

__all__ = ["TEMPLATES", "RegionSelect", "RemixButton", "RemixModal"]

GID = r"(?P<gid>[0-9a-f-]{36}):(?P<index>[0-4])"
REGION_TEMPLATE = rf"ob:vr:{GID}"
REMIX_TEMPLATE = rf"ob:rm:{GID}"
TEMPLATES = (REGION_TEMPLATE, REMIX_TEMPLATE)


def _bot(interaction: discord.Interaction[Any]) -> OnbrandBot:
    return cast("OnbrandBot", interaction.client)


class RegionSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=REGION_TEMPLATE):
    """The "Vary (Region)" menu under a single image."""

    def __init__(self, custom_id: str) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=custom_id,
                placeholder="Vary (Region)",
                options=[discord.SelectOption(label=t, value=v) for v, t in REGION_CHOICES],
            )
        )
        self.action_id = custom_id

    @classmethod
    def for_action(cls, action: Action) -> RegionSelect:
        return cls(action.custom_id)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> RegionSelect:
        return cls(match.string)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        from bots.discord.bot import report_error, send_private

        bot = _bot(interaction)
        try:
            await interaction.response.defer()
            data = interaction.data if isinstance(interaction.data, dict) else {}
            values = data.get("values") or [""]
            actor = bot.actor(interaction)
            ticket = await bot.service.choose(
                self.action_id,
                str(values[0]),
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


class RemixButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=REMIX_TEMPLATE):
    """ "Remix" under a grid (``:0``) or a single image (``:1``): opens the form with the
    result's prompt."""

    def __init__(self, custom_id: str, label: str = "Remix") -> None:
        super().__init__(
            discord.ui.Button(label=label, style=discord.ButtonStyle.secondary, custom_id=custom_id)
        )
        self.action_id = custom_id

    @classmethod
    def for_action(cls, action: Action) -> RemixButton:
        return cls(action.custom_id, action.label)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> RemixButton:
        return cls(match.string)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        from bots.discord.bot import report_error

        bot = _bot(interaction)
        try:
            bot.actor(interaction)  # in a server, or a private refusal
            action = Action.parse(self.action_id)
            parent = await bot.service.generation(action.generation_id)
            modal = RemixModal(bot, parent.id, parent.raw_prompt, action.index)
            await interaction.response.send_modal(modal)
        except Exception as exc:  # a task boundary: the person gets an answer, the log the rest
            await report_error(interaction, exc)


class RemixModal(discord.ui.Modal, title="Remix"):
    """The new prompt; the seed and settings stay."""

    prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
        label="New prompt (seed and settings kept)",
        style=discord.TextStyle.paragraph,
        max_length=MAX_REMIX_PROMPT,
    )

    def __init__(
        self, bot: OnbrandBot, generation_id: uuid.UUID, prompt: str, index: int = 0
    ) -> None:
        super().__init__(custom_id=f"ob:remix-modal:{generation_id}:{index}")
        self.bot = bot
        self.generation_id = generation_id
        self.index = index  # 0: the whole grid; 1-4: one image
        self.prompt.default = prompt[:MAX_REMIX_PROMPT]

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        bot = self.bot
        await interaction.response.defer(ephemeral=True, thinking=True)
        actor = bot.actor(interaction)
        ticket = await bot.service.remix(
            actor,
            bot.reply_target(interaction),
            self.generation_id,
            self.prompt.value,
            index=self.index,
            key=bot.request_key(interaction),
        )
        await announce.announce(bot.service, ticket, bot._poster(interaction, actor), bot.sink)
        await bot.finish_private(interaction, replies.warnings(ticket))

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        from bots.discord.bot import report_error

        await report_error(interaction, error)
