"""The Discord bot: slash commands, buttons and reactions in, ``core.Service`` calls out.

Every handler acknowledges first (a private "thinking…" for commands, a silent deferred update for
buttons), then calls the service, then speaks with what core decides (``core.delivery.announce``
for the public "Queued" messages, ``core.replies`` for private answers):

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
import re
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands

from bots.discord import search
from bots.discord.buttons import TEMPLATE, ActionButton
from bots.discord.commands import install_commands
from bots.discord.edits import TEMPLATES as EDIT_TEMPLATES
from bots.discord.edits import RegionSelect, RemixButton
from bots.discord.packs import PACK_TEMPLATE, PackSelect
from bots.discord.payloads import MALFORMED_COMMAND, option_problem
from bots.discord.render import COLOUR, clip, reply_content
from bots.discord.sink import DEFAULT_MAX_UPLOAD_BYTES, MIN_EDIT_INTERVAL_S, DiscordSink, nonce
from bots.discord.verify import Verifier
from core import replies
from core.delivery import announce
from core.domain import Actor, MessageRef, Platform, ReplyTarget, RequestKey, ResultCard
from core.errors import DuplicateRequest, UserError
from core.ops import metrics
from core.service import Service
from core.service.reports import ReportBundle

log = logging.getLogger(__name__)

ADMIN_HINTS_MAX = 4096

NOT_IN_A_SERVER = "onbrand works in server channels: use this command in a channel of your server."
MISSING_PERMISSIONS = (
    "I can't post in this channel. Ask an admin to give onbrand Send Messages, Embed Links, "
    "Attach Files and Read Message History here."
)
QUIET = discord.AllowedMentions.none()
ALREADY_ACKNOWLEDGED = 40060  # Discord's code: this interaction was answered already

Interaction = discord.Interaction["OnbrandBot"]


async def report_error(interaction: discord.Interaction[Any], error: BaseException) -> None:
    """The one error policy: user errors privately as they are, everything else generically;
    a copy of an interaction handled already (``DuplicateRequest``, or Discord refusing its
    acknowledgement as answered already) says nothing."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, DuplicateRequest) or (
        isinstance(error, discord.HTTPException) and error.code == ALREADY_ACKNOWLEDGED
    ):
        log.info("ignored a copy of interaction %s: %s", interaction.id, error)
        if interaction.type is not discord.InteractionType.component:
            await finish_quietly(interaction)  # the copy's own "thinking…", if it got one
        return
    if isinstance(error, discord.Forbidden):
        log.warning("missing permissions in channel %s: %s", interaction.channel_id, error)
        card = replies.private(MISSING_PERMISSIONS)
    elif isinstance(error, app_commands.CommandSignatureMismatch):  # Discord's copy is stale
        log.warning("interaction %s: %s", interaction.id, error)
        problem = "an option is missing or unknown"
        card = replies.private(MALFORMED_COMMAND.format(problem=problem))
    elif isinstance(error, app_commands.NoPrivateMessage):
        card = replies.private(NOT_IN_A_SERVER)
    else:
        what = interaction.command.qualified_name if interaction.command else "a component"
        card = replies.error_reply(error, what=what, log=log)
    await send_private(interaction, card)


async def send_private(interaction: discord.Interaction[Any], card: ResultCard) -> None:
    """Answer only the person who interacted (the first answer, or a followup)."""
    text = reply_content(card)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as exc:
        log.warning("could not answer interaction %s: %s", interaction.id, exc)


async def finish_quietly(interaction: discord.Interaction[Any]) -> None:
    """Remove the private "thinking…" of a deferred command (nothing when there is none)."""
    if interaction.response.is_done():
        try:
            await interaction.delete_original_response()
        except discord.HTTPException as exc:
            log.debug("could not finish interaction %s: %s", interaction.id, exc)


def _guard_interaction_parser(client: discord.Client) -> None:
    """discord.py parses INTERACTION_CREATE in the gateway's read loop, where an exception ends
    the connection for good, and hands on one that names no user (whose handler then fails
    before it knows whom to answer): a malformed interaction is logged and dropped instead."""
    parsers = client._connection.parsers
    parse = parsers["INTERACTION_CREATE"]

    def guarded(data: Any) -> None:
        ident = data.get("id") if isinstance(data, dict) else None
        member = data.get("member") if isinstance(data, dict) else None
        sender = member.get("user") if isinstance(member, dict) else None
        if not sender and not (isinstance(data, dict) and data.get("user")):
            log.warning("ignored malformed interaction %s: it does not say who sent it", ident)
            return
        try:
            parse(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("ignored malformed interaction %s (%s: %s)", ident, type(exc).__name__, exc)

    parsers["INTERACTION_CREATE"] = guarded


class OnbrandTree(app_commands.CommandTree["OnbrandBot"]):
    async def interaction_check(self, interaction: Interaction, /) -> bool:
        """A command whose options are not of the types they declare is answered privately and
        goes no further (autocomplete sends partial input as text: it is not checked)."""
        if interaction.type is not discord.InteractionType.application_command:
            return True
        data = interaction.data if isinstance(interaction.data, dict) else {}
        problem = option_problem(data.get("options"))
        if problem is None:
            return True
        log.warning("refused malformed command interaction %s: %s", interaction.id, problem)
        await send_private(interaction, replies.private(MALFORMED_COMMAND.format(problem=problem)))
        return False

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
        _guard_interaction_parser(self)
        self.verifier: Verifier | None = None  # "Verify image" (bots.discord.verify)
        self.reactions_handled = 0  # reactions that reached the service (for tests and metrics)
        # Manage Server, as last seen per (guild, user): a reaction removal carries no member.
        self._managers: OrderedDict[tuple[int, int], bool] = OrderedDict()
        install_commands(self)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(
            ActionButton, search.SearchButton, RegionSelect, RemixButton, PackSelect
        )
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
    def request_key(interaction: discord.Interaction[Any]) -> RequestKey:
        """Discord's id for the interaction: the same in every delivery of it (the gateway can
        send an event again around a resume), new for every command and click a person makes."""
        return RequestKey(Platform.DISCORD, "interaction", str(interaction.id))

    @staticmethod
    def reply_target(interaction: discord.Interaction[Any]) -> ReplyTarget:
        if interaction.guild_id is None or interaction.channel_id is None:
            raise UserError(NOT_IN_A_SERVER)
        return ReplyTarget(Platform.DISCORD, str(interaction.guild_id), str(interaction.channel_id))

    # --- the chat flow ---------------------------------------------------------------------

    async def imagine(self, interaction: discord.Interaction[Any], text: str) -> None:
        """``/imagine``: queue, announce publicly, then the private notes (or none)."""
        actor = self.actor(interaction)
        where, key = self.reply_target(interaction), self.request_key(interaction)
        ticket = await self.service.imagine(text, actor, where, key=key)
        await announce.announce(self.service, ticket, self._poster(interaction, actor), self.sink)
        await self.finish_private(interaction, replies.warnings(ticket))

    def _poster(self, interaction: discord.Interaction[Any], actor: Actor) -> announce.PostFn:
        """Posts a status card in the interaction's channel, mentioning (not pinging) ``actor``."""
        target = self.reply_target(interaction)
        channel = self.sink.channel(target.channel_id, target.workspace_id)

        async def post(generation_id: uuid.UUID, card: ResultCard) -> MessageRef:
            rendered = self.sink.render(card, target.workspace_id)
            sent = await channel.send(
                content=f"<@{actor.user_id}>",
                embed=rendered.embed,
                view=rendered.view or discord.utils.MISSING,
                allowed_mentions=QUIET,
                nonce=nonce("s", generation_id),
            )
            return MessageRef(Platform.DISCORD, str(channel.id), str(sent.id))

        return post

    async def reply(self, interaction: discord.Interaction[Any], card: ResultCard) -> None:
        await send_private(interaction, card)

    async def finish_private(
        self, interaction: discord.Interaction[Any], card: ResultCard | None = None
    ) -> None:
        """Replace the private "thinking…" with ``card``, or remove it when there is none."""
        try:
            if card is not None:
                await interaction.followup.send(reply_content(card), ephemeral=True)
            else:
                await interaction.delete_original_response()
        except discord.HTTPException as exc:
            log.debug("could not finish interaction %s: %s", interaction.id, exc)

    # --- buttons ---------------------------------------------------------------------------

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """A click on a component that is not one of onbrand's buttons (an old or forged id):
        ``ActionButton`` never sees it, so it goes the buttons' way here and is answered
        privately (the service refuses the id) instead of "This interaction failed"."""
        data = interaction.data if isinstance(interaction.data, dict) else {}
        custom_id = data.get("custom_id")
        if interaction.type is not discord.InteractionType.component or not isinstance(
            custom_id, str
        ):
            return
        ours = (TEMPLATE, *EDIT_TEMPLATES, search.TEMPLATE, PACK_TEMPLATE)  # DynamicItems
        if not any(re.fullmatch(t, custom_id) for t in ours):
            await self.on_action(interaction, custom_id)

    async def on_action(self, interaction: discord.Interaction[Any], custom_id: str) -> None:
        """A click on U1–U4, V1–V4, 🔄 or ✖ (on any message, however old)."""
        try:
            await interaction.response.defer()
            actor = self.actor(interaction)
            message = interaction.message
            clicked = (
                MessageRef(Platform.DISCORD, str(message.channel.id), str(message.id))
                if message is not None
                else None
            )
            answer = await announce.act(
                self.service,
                custom_id,
                actor,
                self.reply_target(interaction),
                clicked=clicked,
                post=self._poster(interaction, actor),
                sink=self.sink,
                key=self.request_key(interaction),
            )
            if answer is not None:
                await send_private(interaction, answer)
        except Exception as exc:  # a task boundary: the person gets an answer, the log the rest
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
            warning = await self.service.react_reply(ref, str(payload.emoji), actor, added=added)
            await search.warn_privately(self, payload.user_id, warning)
        except Exception:  # a task boundary: nobody to answer, so the log says it all
            log.exception(
                "reaction %s on message %s failed [reference %s]",
                payload.emoji,
                payload.message_id,
                replies.new_reference(),
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

    # --- reports ---------------------------------------------------------------------------

    async def post_report(
        self, interaction: discord.Interaction[Any], bundle: ReportBundle
    ) -> None:
        """The summary as an embed, with the CSV and the HTML contact sheet attached."""
        target = self.reply_target(interaction)
        limit = self.sink.upload_limit(target.workspace_id)
        embed = discord.Embed(
            title=replies.report_title(bundle.campaign),
            description=clip(bundle.summary_markdown, 4096),
            colour=COLOUR,
        )
        files, used = [], 0
        for name, data in replies.report_files(bundle.campaign, bundle.csv, bundle.html):
            if used + len(data) > limit:
                embed.add_field(
                    name=f"{name.rpartition('.')[2].upper()} not attached",
                    value=f"It is larger than this server's upload limit; run "
                    f"`onbrand report {bundle.campaign}` to get it.",
                    inline=False,
                )
                continue
            used += len(data)
            files.append(discord.File(io.BytesIO(data), name))
        channel = self.sink.channel(target.channel_id, target.workspace_id)
        await channel.send(
            content=f"Requested by <@{interaction.user.id}>",
            embed=embed,
            files=files,
            allowed_mentions=QUIET,
        )
