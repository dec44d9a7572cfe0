"""The "Verify image" message context menu: the images attached to a message, verified, answered
privately (ephemeral). Campaign and approval are named only to members of the server that made
the image (decided in ``core.service.verify``).

The bot's ``verifier`` (set by ``serve_discord``, ``verifier_for``) does the work; each image
attachment (at most ``MOST``, none larger than verify reads) is fetched from Discord's CDN.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from core.domain import Actor
from core.provenance.inspect import MAX_BYTES
from core.provenance.setup import provenance_of
from core.service.verify import verify_for_chat

if TYPE_CHECKING:
    from bots.discord.bot import OnbrandBot
    from core.bootstrap import App

Verifier = Callable[[bytes, Actor], Awaitable[str]]
MOST = 4  # images verified per message
NAME = "Verify image"


def verifier_for(app: App) -> Verifier:
    async def verify(data: bytes, viewer: Actor) -> str:
        return await verify_for_chat(app.db, provenance_of(app.settings), data, viewer)

    return verify


def verify_menu(bot: OnbrandBot) -> app_commands.ContextMenu:
    async def verify_image(interaction: discord.Interaction[Any], message: discord.Message) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        viewer = bot.actor(interaction)
        images = [a for a in message.attachments if (a.content_type or "").startswith("image/")]
        answers: list[str] = []
        for attachment in images[:MOST]:
            if bot.verifier is None:
                answers.append("Verifying images is not available in this process.")
                break
            if attachment.size > MAX_BYTES:
                answers.append(f"**{attachment.filename}**: ❌ larger than {MAX_BYTES:,} bytes.")
                continue
            answer = await bot.verifier(await attachment.read(), viewer)
            answers.append(f"**{attachment.filename}**: {answer}")
        text = "\n".join(answers) or "This message has no image to verify."
        await interaction.followup.send(text[:2000], ephemeral=True)

    menu = app_commands.ContextMenu(name=NAME, callback=verify_image)
    menu.guild_only = True
    return menu
