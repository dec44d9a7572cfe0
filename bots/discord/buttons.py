"""The one button class: a ``DynamicItem`` whose whole state is its ``ob:…`` custom id.

discord.py matches every component click against the template, so a button works on any message,
including messages posted before the bot restarted; the generation is looked up in PostgreSQL.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, cast

import discord

from core.domain import Action, ActionKind

TEMPLATE = r"ob:(?P<action>[urvx]|z2|zh|p[lrudk]):(?P<gid>[0-9a-f-]{36}):(?P<index>[0-4])"

_STYLES = {
    ActionKind.UPSCALE: discord.ButtonStyle.primary,
    ActionKind.VARY: discord.ButtonStyle.secondary,
    ActionKind.REROLL: discord.ButtonStyle.secondary,
    ActionKind.CANCEL: discord.ButtonStyle.danger,
}


class ActionHandler(Protocol):
    """What the bot offers its buttons: one entry point for every click."""

    async def on_action(self, interaction: discord.Interaction[Any], custom_id: str) -> None: ...


class ActionButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """U1–U4, V1–V4, 🔄 and ✖; the click is handed to the client's ``on_action``."""

    def __init__(self, custom_id: str, label: str = "", style: discord.ButtonStyle | None = None):
        super().__init__(
            discord.ui.Button(
                label=label or None,
                style=style or discord.ButtonStyle.secondary,
                custom_id=custom_id,
            )
        )
        self.action_id = custom_id

    @classmethod
    def for_action(cls, action: Action) -> ActionButton:
        style = _STYLES.get(action.kind, discord.ButtonStyle.secondary)  # edits: secondary
        return cls(action.custom_id, action.label, style)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> ActionButton:
        # Never raises: a malformed id is refused by the service, with a message for the user.
        return cls(match.string)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await cast(ActionHandler, interaction.client).on_action(interaction, self.action_id)
