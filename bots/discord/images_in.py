"""Images in on Discord: ``/imagine`` with an ``image`` attachment and a ``mode``, and the
message command "Imagine from this image" (a modal asks for the prompt).

Adapters only translate: the attachment's bytes are read from Discord's own file host (never any
other URL a payload names), then ``Service.upload`` checks and stores them and
``Service.imagine_with_image`` queues the generation; the "Queued" card and the private notes
are the same as for ``/imagine``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import discord
from discord import app_commands

from core import replies
from core.delivery import announce
from core.domain import ImageMode
from core.errors import UserError
from core.imaging.uploads import MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from bots.discord.bot import OnbrandBot

log = logging.getLogger(__name__)

__all__ = ["MENU_NAME", "ModeName", "imagine_with_attachment", "install_images_in"]

MENU_NAME = "Imagine from this image"
ModeName = Literal["image prompt", "product shot"]
MODES: dict[str, ImageMode] = {
    "image prompt": ImageMode.IMAGE_PROMPT,
    "product shot": ImageMode.PRODUCT,
}
FILE_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})


def _file_hosts() -> frozenset[str]:
    """Discord's file hosts, and the API's own host (where a test or proxy points it)."""
    api = urlsplit(str(discord.http.Route.BASE)).hostname
    return FILE_HOSTS | ({api} if api else set())


def _is_image(attachment: discord.Attachment) -> bool:
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    return kind.startswith("image/") or attachment.filename.lower().endswith(
        (".png", ".jpg", ".jpeg", ".webp")
    )


async def read_attachment(attachment: discord.Attachment) -> bytes:
    """The attachment's bytes, from Discord's file host only; too-big files are not fetched."""
    if urlsplit(attachment.url).hostname not in _file_hosts():
        raise UserError("That image isn't stored on Discord; attach the file itself and try again.")
    if attachment.size > MAX_UPLOAD_BYTES:
        raise UserError(
            f"The image is {attachment.size / 2**20:.1f} MB; the most is "
            f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB. Send a PNG, JPEG or WebP under that."
        )
    return await attachment.read()


async def imagine_with_attachment(
    bot: OnbrandBot,
    interaction: discord.Interaction[Any],
    text: str,
    attachment: discord.Attachment,
    mode: ImageMode,
) -> None:
    """Upload the attachment, queue the generation from it, announce it like ``/imagine``."""
    actor = bot.actor(interaction)
    where = bot.reply_target(interaction)
    upload = await bot.service.upload(await read_attachment(attachment), actor, where)
    ticket = await bot.service.imagine_with_image(
        text, actor, where, upload.id, mode=mode, key=bot.request_key(interaction)
    )
    await announce.announce(bot.service, ticket, bot._poster(interaction, actor), bot.sink)
    await bot.finish_private(interaction, replies.warnings(ticket))


class ImagineModal(discord.ui.Modal, title="Imagine from this image"):
    """The prompt (and the mode) for an image picked with the message command."""

    prompt: discord.ui.TextInput[ImagineModal] = discord.ui.TextInput(
        label="Prompt", placeholder="a kitchen counter at dawn --ar 16:9", max_length=1500
    )
    mode: discord.ui.TextInput[ImagineModal] = discord.ui.TextInput(
        label="Mode: image prompt or product shot", default="image prompt", max_length=20
    )

    def __init__(self, bot: OnbrandBot, attachment: discord.Attachment) -> None:
        super().__init__(custom_id=f"ob:image-modal:{attachment.id}")
        self.bot = bot
        self.attachment = attachment

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        wanted = self.mode.value.strip().lower()
        mode = ImageMode.PRODUCT if wanted.startswith("product") else ImageMode.IMAGE_PROMPT
        await imagine_with_attachment(
            self.bot, interaction, self.prompt.value, self.attachment, mode
        )

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        from bots.discord.bot import report_error

        await report_error(interaction, error)


def install_images_in(bot: OnbrandBot) -> None:
    """The "Imagine from this image" message command on the bot's tree."""

    async def imagine_from_image(
        interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        image = next((a for a in message.attachments if _is_image(a)), None)
        if image is None:
            raise UserError(
                "That message has no image. Use it on a message with a PNG, JPEG or WebP "
                "attached, or use /imagine with the image option."
            )
        await interaction.response.send_modal(ImagineModal(bot, image))

    menu = app_commands.ContextMenu(name=MENU_NAME, callback=imagine_from_image)
    menu.guild_only = True
    bot.tree.add_command(menu)
