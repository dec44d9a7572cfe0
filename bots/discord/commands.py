"""The slash commands: ``/imagine``, ``/imagine-report`` and the ``/imagine-admin`` group.

Each command defers privately ("thinking…"), calls the bot (which calls the service) and
answers; errors go to the tree's one error handler (``bots.discord.bot.report_error``).
Autocomplete offers the presets and campaigns.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bots.discord.images_in import MODES, ModeName, imagine_with_attachment, install_images_in
from bots.discord.search import search_command
from bots.discord.verify import verify_menu
from core import replies

if TYPE_CHECKING:
    from bots.discord.bot import OnbrandBot

log = logging.getLogger(__name__)

SEED_MAX = 2**32 - 1
MAX_CHOICES = 25  # Discord's limit for choices and autocomplete answers

Interaction = discord.Interaction["OnbrandBot"]
Choices = list[app_commands.Choice[str]]


def install_commands(bot: OnbrandBot) -> None:
    """``/imagine``, ``/imagine-report`` and ``/imagine-admin`` on the bot's tree."""
    bot.tree.add_command(imagine_command(bot))
    bot.tree.add_command(report_command(bot))
    bot.tree.add_command(AdminCommands(bot))
    install_images_in(bot)
    bot.tree.add_command(verify_menu(bot))  # "Verify image" on a message (bots.discord.verify)
    bot.tree.add_command(search_command(bot))  # /imagine-search (bots.discord.search)


def imagine_command(bot: OnbrandBot) -> app_commands.Command[Any, ..., None]:
    """``/imagine prompt [aspect] [seed] [n] [preset] [campaign]``."""

    @app_commands.command(name="imagine", description="Make on-brand images from a prompt")
    @app_commands.describe(
        prompt="What to draw. --ar, --seed, --n, --no, --preset and --campaign work here too.",
        aspect="Aspect ratio (the preset decides which are allowed)",
        seed="Seed, for repeatable images",
        n="How many images (1-4)",
        preset="Brand preset",
        campaign="Campaign to count these images towards",
        image="An image to start from (PNG, JPEG or WebP)",
        mode="What the image is for (default: image prompt)",
    )
    @app_commands.guild_only()
    async def imagine(
        interaction: Interaction,
        prompt: str,
        aspect: str | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        n: app_commands.Range[int, 1, 4] | None = None,
        preset: str | None = None,
        campaign: str | None = None,
        image: discord.Attachment | None = None,
        mode: ModeName = "image prompt",
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = replies.imagine_text(
            prompt, aspect=aspect, seed=seed, n=n, preset=preset, campaign=campaign
        )
        if image is not None:  # images in: bots/discord/images_in.py
            await imagine_with_attachment(bot, interaction, text, image, MODES[mode])
            return
        await bot.imagine(interaction, text)

    aspects = sorted(
        {a for preset in bot.service.presets.values() for a in preset.aspect_ratios},
        key=_aspect_order,
    )[:MAX_CHOICES]
    if aspects:
        app_commands.choices(aspect=[app_commands.Choice(name=a, value=a) for a in aspects])(
            imagine
        )

    @imagine.autocomplete("preset")
    async def imagine_preset(interaction: Interaction, current: str) -> Choices:
        return preset_choices(bot, current)

    @imagine.autocomplete("campaign")
    async def imagine_campaign(interaction: Interaction, current: str) -> Choices:
        return await campaign_choices(bot, current)

    return imagine


def report_command(bot: OnbrandBot) -> app_commands.Command[Any, ..., None]:
    """``/imagine-report campaign``: the report, public in the channel."""

    @app_commands.command(
        name="imagine-report", description="A campaign's report: summary, CSV and contact sheet"
    )
    @app_commands.describe(campaign="The campaign")
    @app_commands.guild_only()
    async def imagine_report(interaction: Interaction, campaign: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        key = bot.request_key(interaction)
        bundle = await bot.service.report(bot.actor(interaction), campaign, key=key)
        await bot.post_report(interaction, bundle)
        await bot.finish_private(interaction)

    @imagine_report.autocomplete("campaign")
    async def report_campaign(interaction: Interaction, current: str) -> Choices:
        return await campaign_choices(bot, current)

    return imagine_report


class AdminCommands(
    app_commands.Group,
    name="imagine-admin",
    description="Bind channels to campaigns, list campaigns (Manage Server or onbrand admins)",
    guild_only=True,
):
    """``/imagine-admin bind|unbind|campaigns``; the service checks who may."""

    def __init__(self, bot: OnbrandBot) -> None:
        super().__init__()
        self.bot = bot

    @app_commands.command(
        name="bind", description="Bind this channel to a campaign and/or a preset"
    )
    @app_commands.describe(
        campaign="Campaign for images made here",
        preset="Preset for images made here (default: the campaign's)",
        locked="Stop people overriding the campaign and preset with flags",
    )
    async def bind(
        self,
        interaction: Interaction,
        campaign: str | None = None,
        preset: str | None = None,
        locked: bool = False,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = self.bot
        binding = await bot.service.bind(
            bot.actor(interaction),
            bot.reply_target(interaction),
            campaign=campaign,
            preset=preset,
            locked=locked,
            key=bot.request_key(interaction),
        )
        await bot.reply(interaction, replies.bound(binding))

    @bind.autocomplete("campaign")
    async def bind_campaign(self, interaction: Interaction, current: str) -> Choices:
        return await campaign_choices(self.bot, current)

    @bind.autocomplete("preset")
    async def bind_preset(self, interaction: Interaction, current: str) -> Choices:
        return preset_choices(self.bot, current)

    @app_commands.command(name="unbind", description="Remove this channel's binding")
    async def unbind(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = self.bot
        removed = await bot.service.unbind(
            bot.actor(interaction), bot.reply_target(interaction), key=bot.request_key(interaction)
        )
        await bot.reply(interaction, replies.unbound(removed))

    @app_commands.command(name="campaigns", description="List the campaigns")
    async def campaigns(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        self.bot.actor(interaction)  # refuses outside a server
        found = await self.bot.service.campaigns()
        await self.bot.reply(interaction, replies.campaigns(found))


def preset_choices(bot: OnbrandBot, current: str) -> Choices:
    return _choices(sorted(bot.service.presets), current)


async def campaign_choices(bot: OnbrandBot, current: str) -> Choices:
    try:
        campaigns = await bot.service.campaigns()
    except Exception:  # autocomplete is a task boundary: no choices, never an error
        log.exception("campaign autocomplete failed")
        return []
    return _choices(sorted(c.name for c in campaigns), current)


def _choices(names: list[str], current: str) -> Choices:
    wanted = current.strip().lower()
    found = [n for n in names if wanted in n.lower()]
    return [app_commands.Choice(name=n, value=n) for n in found[:MAX_CHOICES]]


def _aspect_order(aspect: str) -> tuple[float, str]:
    width, _, height = aspect.partition(":")
    try:
        return int(width) / int(height), aspect
    except (ValueError, ZeroDivisionError):
        return 0.0, aspect
