"""The Discord bot: slash commands, buttons and reactions in, ``core.Service`` calls out.

Every handler acknowledges first (a private "thinking…" for commands, a silent deferred update for
buttons), then calls the service, then speaks:

- success is public and lives in the channel as an ordinary bot message (the "Queued" status
  message that progress edits, a report), posted with the bot token, never the interaction token;
- a ``UserError`` becomes the private answer to the interaction (its text, nothing else);
- anything else gets a private generic answer with a reference id, and the traceback goes to the
  log with the same id.

The command is deferred *ephemerally*: after a deferred reply Discord's first followup edits the
"thinking" message and keeps the defer's visibility, so a public defer could not answer an error
privately. Hence the public "Queued" message is a channel message of its own.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands

from bots.discord.buttons import ActionButton
from bots.discord.sink import DEFAULT_MAX_UPLOAD_BYTES, MIN_EDIT_INTERVAL_S, DiscordSink
from core.cards import closing_card, status_card
from core.domain import (
    Action,
    ActionKind,
    Actor,
    Binding,
    Campaign,
    MessageRef,
    Platform,
    ReplyTarget,
    Ticket,
)
from core.errors import UserError
from core.ops import metrics
from core.service import Service
from core.service.reports import ReportBundle

log = logging.getLogger(__name__)

SEED_MAX = 2**32 - 1
MAX_CHOICES = 25  # Discord's limit for choices and autocomplete answers
MESSAGE_MAX = 2000
ADMIN_HINTS_MAX = 4096

NOT_IN_A_SERVER = "onbrand works in server channels: use this command in a channel of your server."
MISSING_PERMISSIONS = (
    "I can't post in this channel. Ask an admin to give onbrand Send Messages, Embed Links, "
    "Attach Files and Read Message History here."
)
GENERIC_ERROR = (
    "Something went wrong on our side (reference {ref}). Please try again; "
    "if it keeps happening, give an admin this reference."
)
QUIET = discord.AllowedMentions.none()

Interaction = discord.Interaction["OnbrandBot"]


def compose_text(
    prompt: str,
    *,
    aspect: str | None = None,
    seed: int | None = None,
    n: int | None = None,
    preset: str | None = None,
    campaign: str | None = None,
) -> str:
    """The typed options as ``--flags`` after the prompt: one ``/imagine`` text for the grammar."""
    parts = [prompt.strip()]
    for flag, value in (
        ("ar", aspect),
        ("seed", seed),
        ("n", n),
        ("preset", preset),
        ("campaign", campaign),
    ):
        if value is not None and str(value).strip():
            parts.append(f"--{flag} {str(value).strip()}")
    return " ".join(parts)


def new_reference() -> str:
    return uuid.uuid4().hex[:10]


async def report_error(interaction: discord.Interaction[Any], error: BaseException) -> None:
    """The one error policy: user errors privately as they are, everything else generically."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, UserError):
        text = error.user_message
    elif isinstance(error, discord.Forbidden):
        log.warning("missing permissions in channel %s: %s", interaction.channel_id, error)
        text = MISSING_PERMISSIONS
    elif isinstance(error, app_commands.NoPrivateMessage):
        text = NOT_IN_A_SERVER
    else:
        reference = new_reference()
        what = interaction.command.qualified_name if interaction.command else "a component"
        log.error("error in %s [reference %s]", what, reference, exc_info=error)
        text = GENERIC_ERROR.format(ref=reference)
    await send_private(interaction, text)


async def send_private(interaction: discord.Interaction[Any], text: str) -> None:
    """Answer only the person who interacted (the first answer, or a followup)."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text[:MESSAGE_MAX], ephemeral=True)
        else:
            await interaction.response.send_message(text[:MESSAGE_MAX], ephemeral=True)
    except discord.HTTPException as exc:
        log.warning("could not answer interaction %s: %s", interaction.id, exc)


class OnbrandTree(app_commands.CommandTree["OnbrandBot"]):
    async def on_error(self, interaction: Interaction, error: app_commands.AppCommandError) -> None:
        await report_error(interaction, error)


class OnbrandBot(discord.Client):
    """discord.py client: default intents only; commands, buttons and reactions → ``Service``."""

    def __init__(
        self,
        service: Service,
        *,
        guild_ids: Sequence[int] = (),
        guild_ready_timeout: float = 0.5,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        min_edit_interval_s: float = MIN_EDIT_INTERVAL_S,
    ) -> None:
        super().__init__(
            intents=discord.Intents.default(),
            guild_ready_timeout=guild_ready_timeout,
            allowed_mentions=QUIET,
            http_trace=metrics.http_trace("discord"),  # 4xx/5xx and 429s → metrics
        )
        self.service = service
        self.guild_ids = tuple(guild_ids)
        self.sink = DiscordSink(
            self, max_upload_bytes=max_upload_bytes, min_edit_interval_s=min_edit_interval_s
        )
        self.tree = OnbrandTree(self)
        self.reactions_handled = 0  # reactions that reached the service (for tests and metrics)
        # Manage Server, as last seen per (guild, user): a reaction removal carries no member.
        self._managers: OrderedDict[tuple[int, int], bool] = OrderedDict()
        install_commands(self)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(ActionButton)
        if self.guild_ids:
            for guild_id in self.guild_ids:
                guild = discord.Object(guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d commands to guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands (they can take a while to appear)", len(synced))

    async def close(self) -> None:
        await self.sink.flush(timeout=5.0)
        await super().close()

    # --- who and where ---------------------------------------------------------------------

    def actor(self, interaction: discord.Interaction[Any]) -> Actor:
        """The person who interacted, with roles from settings and Manage Server."""
        if interaction.guild_id is None:
            raise UserError(NOT_IN_A_SERVER)
        user = interaction.user
        manager = bool(interaction.permissions.manage_guild) or (
            isinstance(user, discord.Member) and user.guild_permissions.manage_guild
        )
        return self._actor(interaction.guild_id, user.id, user.display_name, manager)

    def _actor(self, guild_id: int, user_id: int, name: str, manager: bool) -> Actor:
        self._managers[(guild_id, user_id)] = manager
        self._managers.move_to_end((guild_id, user_id))
        while len(self._managers) > ADMIN_HINTS_MAX:
            self._managers.popitem(last=False)
        roles = self.service.roles_for(Platform.DISCORD, str(user_id), platform_admin=manager)
        return Actor(Platform.DISCORD, str(guild_id), str(user_id), name, roles)

    @staticmethod
    def reply_target(interaction: discord.Interaction[Any]) -> ReplyTarget:
        if interaction.guild_id is None or interaction.channel_id is None:
            raise UserError(NOT_IN_A_SERVER)
        return ReplyTarget(Platform.DISCORD, str(interaction.guild_id), str(interaction.channel_id))

    # --- queued messages -------------------------------------------------------------------

    async def announce_queued(
        self, interaction: discord.Interaction[Any], ticket: Ticket, actor: Actor
    ) -> list[MessageRef]:
        """One public "Queued (#n, ETA)" message per new generation, recorded as its status."""
        target = self.reply_target(interaction)
        channel = self.sink.channel(target.channel_id, target.workspace_id)
        refs = []
        for offset, generation_id in enumerate(ticket.generation_ids):
            generation = await self.service.generation(generation_id)
            card = status_card(
                generation,
                position=ticket.position + offset if ticket.position else None,
                eta_seconds=ticket.eta_seconds,
            )
            rendered = self.sink.render(card, target.workspace_id)
            sent = await channel.send(
                content=f"<@{actor.user_id}>",
                embed=rendered.embed,
                view=rendered.view or discord.utils.MISSING,
                allowed_mentions=QUIET,
            )
            ref = MessageRef(Platform.DISCORD, str(channel.id), str(sent.id))
            refs.append(ref)
            if closing := await self.service.record_status_message(generation_id, ref):
                await self.sink.update_status(ref, closing)
        return refs

    async def finish_private(
        self, interaction: discord.Interaction[Any], notes: Sequence[str] = ()
    ) -> None:
        """Replace the private "thinking…" with the notes, or remove it when there are none."""
        try:
            if notes:
                await interaction.followup.send("\n".join(notes)[:MESSAGE_MAX], ephemeral=True)
            else:
                await interaction.delete_original_response()
        except discord.HTTPException as exc:
            log.debug("could not finish interaction %s: %s", interaction.id, exc)

    # --- buttons ---------------------------------------------------------------------------

    async def on_action(self, interaction: discord.Interaction[Any], custom_id: str) -> None:
        """A click on U1–U4, V1–V4, 🔄 or ✖ (on any message, however old)."""
        try:
            await interaction.response.defer()
            actor = self.actor(interaction)
            ticket = await self.service.act(custom_id, actor, self.reply_target(interaction))
            if Action.parse(custom_id).kind is ActionKind.CANCEL:
                if (message := interaction.message) is not None:
                    ref = MessageRef(Platform.DISCORD, str(message.channel.id), str(message.id))
                    cancelled = await self.service.generation(ticket.generation_ids[0])
                    await self.sink.update_status(ref, closing_card(cancelled))
                await send_private(interaction, "✖ Cancelled.")
                return
            await self.announce_queued(interaction, ticket, actor)
            if ticket.warnings:
                await send_private(interaction, "\n".join(ticket.warnings))
        except Exception as exc:
            await report_error(interaction, exc)

    # --- reactions -------------------------------------------------------------------------

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self._reaction(payload, added=True)

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self._reaction(payload, added=False)

    async def _reaction(self, payload: discord.RawReactionActionEvent, *, added: bool) -> None:
        if payload.guild_id is None or (self.user is not None and payload.user_id == self.user.id):
            return  # a DM, or our own reaction coming back over the gateway
        if payload.member is not None and payload.member.bot:
            return
        try:
            actor = await self._reaction_actor(payload)
            ref = MessageRef(Platform.DISCORD, str(payload.channel_id), str(payload.message_id))
            await self.service.react(ref, str(payload.emoji), actor, added=added)
        except Exception:
            log.exception(
                "reaction %s on message %s failed [reference %s]",
                payload.emoji,
                payload.message_id,
                new_reference(),
            )
        finally:
            self.reactions_handled += 1

    async def _reaction_actor(self, payload: discord.RawReactionActionEvent) -> Actor:
        assert payload.guild_id is not None
        member = payload.member
        if member is not None:
            manager = member.guild_permissions.manage_guild
            return self._actor(payload.guild_id, payload.user_id, member.display_name, manager)
        known = self._managers.get((payload.guild_id, payload.user_id))
        if known is not None:
            return self._actor(payload.guild_id, payload.user_id, "", known)
        manager, name = False, ""
        guild = self.get_guild(payload.guild_id)
        if guild is not None:
            try:
                fetched = guild.get_member(payload.user_id) or await guild.fetch_member(
                    payload.user_id
                )
                manager, name = fetched.guild_permissions.manage_guild, fetched.display_name
            except discord.HTTPException as exc:
                log.debug("member %s not fetched: %s", payload.user_id, exc)
        return self._actor(payload.guild_id, payload.user_id, name, manager)

    # --- autocomplete ----------------------------------------------------------------------

    def preset_choices(self, current: str) -> list[app_commands.Choice[str]]:
        return _choices(sorted(self.service.presets), current)

    async def campaign_choices(self, current: str) -> list[app_commands.Choice[str]]:
        try:
            campaigns = await self.service.campaigns()
        except Exception:
            log.exception("campaign autocomplete failed")
            return []
        return _choices(sorted(c.name for c in campaigns), current)

    # --- reports ---------------------------------------------------------------------------

    async def post_report(
        self, interaction: discord.Interaction[Any], bundle: ReportBundle
    ) -> None:
        """The summary as an embed, with the CSV and the HTML contact sheet attached."""
        target = self.reply_target(interaction)
        limit = self.sink.upload_limit(target.workspace_id)
        embed = discord.Embed(
            title=f"Campaign report: {bundle.campaign}",
            description=_clip(bundle.summary_markdown, 4096),
            colour=discord.Colour(0x00A6A6),
        )
        files, used = [], 0
        for suffix, text in (("csv", bundle.csv), ("html", bundle.html)):
            data = text.encode("utf-8")
            if used + len(data) > limit:
                embed.add_field(
                    name=f"{suffix.upper()} not attached",
                    value=f"It is larger than this server's upload limit; run "
                    f"`onbrand report {bundle.campaign}` to get it.",
                    inline=False,
                )
                continue
            used += len(data)
            files.append(discord.File(io.BytesIO(data), f"{bundle.campaign}-report.{suffix}"))
        channel = self.sink.channel(target.channel_id, target.workspace_id)
        await channel.send(
            content=f"Requested by <@{interaction.user.id}>",
            embed=embed,
            files=files,
            allowed_mentions=QUIET,
        )


def install_commands(bot: OnbrandBot) -> None:
    """``/imagine``, ``/imagine-report`` and ``/imagine-admin`` on the bot's tree."""
    service = bot.service
    aspects = sorted(
        {a for preset in service.presets.values() for a in preset.aspect_ratios},
        key=_aspect_order,
    )[:MAX_CHOICES]

    @app_commands.command(name="imagine", description="Make on-brand images from a prompt")
    @app_commands.describe(
        prompt="What to draw. --ar, --seed, --n, --no, --preset and --campaign work here too.",
        aspect="Aspect ratio (the preset decides which are allowed)",
        seed="Seed, for repeatable images",
        n="How many images (1-4)",
        preset="Brand preset",
        campaign="Campaign to count these images towards",
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
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        actor = bot.actor(interaction)
        text = compose_text(prompt, aspect=aspect, seed=seed, n=n, preset=preset, campaign=campaign)
        ticket = await service.imagine(text, actor, bot.reply_target(interaction))
        await bot.announce_queued(interaction, ticket, actor)
        await bot.finish_private(interaction, ticket.warnings)

    if aspects:
        app_commands.choices(aspect=[app_commands.Choice(name=a, value=a) for a in aspects])(
            imagine
        )

    @imagine.autocomplete("preset")
    async def imagine_preset(
        interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return bot.preset_choices(current)

    @imagine.autocomplete("campaign")
    async def imagine_campaign(
        interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await bot.campaign_choices(current)

    @app_commands.command(
        name="imagine-report", description="A campaign's report: summary, CSV and contact sheet"
    )
    @app_commands.describe(campaign="The campaign")
    @app_commands.guild_only()
    async def imagine_report(interaction: Interaction, campaign: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bundle = await service.report(bot.actor(interaction), campaign)
        await bot.post_report(interaction, bundle)
        await bot.finish_private(interaction)

    @imagine_report.autocomplete("campaign")
    async def report_campaign(
        interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await bot.campaign_choices(current)

    admin = app_commands.Group(
        name="imagine-admin",
        description="Bind channels to campaigns, list campaigns (Manage Server or onbrand admins)",
        guild_only=True,
    )

    @admin.command(name="bind", description="Bind this channel to a campaign and/or a preset")
    @app_commands.describe(
        campaign="Campaign for images made here",
        preset="Preset for images made here (default: the campaign's)",
        locked="Stop people overriding the campaign and preset with flags",
    )
    async def bind(
        interaction: Interaction,
        campaign: str | None = None,
        preset: str | None = None,
        locked: bool = False,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        binding = await service.bind(
            bot.actor(interaction),
            bot.reply_target(interaction),
            campaign=campaign,
            preset=preset,
            locked=locked,
        )
        await send_private(interaction, describe_binding(binding))

    @bind.autocomplete("campaign")
    async def bind_campaign(
        interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await bot.campaign_choices(current)

    @bind.autocomplete("preset")
    async def bind_preset(interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        return bot.preset_choices(current)

    @admin.command(name="unbind", description="Remove this channel's binding")
    async def unbind(interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        removed = await service.unbind(bot.actor(interaction), bot.reply_target(interaction))
        await send_private(
            interaction,
            "This channel is no longer bound." if removed else "This channel wasn't bound.",
        )

    @admin.command(name="campaigns", description="List the campaigns")
    async def campaigns(interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot.actor(interaction)  # refuses outside a server
        await send_private(interaction, describe_campaigns(await service.campaigns()))

    bot.tree.add_command(imagine)
    bot.tree.add_command(imagine_report)
    bot.tree.add_command(admin)


def describe_binding(binding: Binding) -> str:
    what = f"campaign **{binding.campaign}** with preset **{binding.preset}**"
    if binding.campaign is None:
        what = f"preset **{binding.preset}**"
    lock = " (locked: flags can't override it)" if binding.locked else ""
    return f"This channel is now bound to {what}{lock}."


def describe_campaigns(campaigns: Sequence[Campaign]) -> str:
    if not campaigns:
        return "There are no campaigns yet; create one with `onbrand campaign create`."
    lines = []
    for c in campaigns:
        dates = ""
        if c.starts_on or c.ends_on:
            dates = f", {c.starts_on or '…'} → {c.ends_on or '…'}"
        budget = f", GPU budget {c.gpu_budget_seconds:.0f} s" if c.gpu_budget_seconds else ""
        rush = ", rush" if c.rush else ""
        lines.append(f"• **{c.name}** — preset {c.preset}{dates}{budget}{rush}")
    return _clip("\n".join(lines), MESSAGE_MAX)


def _choices(names: Sequence[str], current: str) -> list[app_commands.Choice[str]]:
    wanted = current.strip().lower()
    found = [n for n in names if wanted in n.lower()]
    return [app_commands.Choice(name=n, value=n) for n in found[:MAX_CHOICES]]


def _aspect_order(aspect: str) -> tuple[float, str]:
    width, _, height = aspect.partition(":")
    try:
        return int(width) / int(height), aspect
    except (ValueError, ZeroDivisionError):
        return 0.0, aspect


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
