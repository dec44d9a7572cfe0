"""The fake Discord server, driven by the real discord.py client (no network beyond 127.0.0.1)."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from re import Match
from typing import Any, cast

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from PIL import Image

from tests.fakes.discord import (
    CB_AUTOCOMPLETE_RESULT,
    CB_DEFERRED_MESSAGE,
    CB_DEFERRED_UPDATE,
    FLAG_LOADING,
    FakeDiscord,
    point_discord_at,
    run_client,
)

TEMPLATE = r"ob:(?P<action>[a-z]):(?P<gid>[0-9a-f-]+):(?P<index>[0-9])"
PRESETS = ["acme-bold", "acme-calm", "acme-night"]


@dataclass
class Seen:
    """What the bot's handlers observed."""

    clicks: list[tuple[str, str, int, int]] = field(default_factory=list)  # action, gid, index, msg
    reactions: list[discord.RawReactionActionEvent] = field(default_factory=list)
    removed: list[discord.RawReactionActionEvent] = field(default_factory=list)
    late_errors: list[discord.NotFound] = field(default_factory=list)
    followup_ids: list[int] = field(default_factory=list)


class ActionButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """A button whose state lives in its custom_id, as the bot's U/V/reroll buttons will."""

    def __init__(self, action: str, gid: str, index: int) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=f"{action.upper()}{index}", custom_id=f"ob:{action}:{gid}:{index}"
        )
        super().__init__(button)
        self.action, self.gid, self.index = action, gid, index

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[discord.Client],
        item: discord.ui.Item[Any],
        match: Match[str],
    ) -> ActionButton:
        return cls(match["action"], match["gid"], int(match["index"]))

    async def callback(self, interaction: discord.Interaction[discord.Client]) -> None:
        message_id = interaction.message.id if interaction.message else 0
        cast(Bot, interaction.client).seen.clicks.append(
            (self.action, self.gid, self.index, message_id)
        )
        await interaction.response.defer()  # type 6: deferred update


class Bot(discord.Client):
    """A minimal bot: /imagine (defer + followup, preset autocomplete), /slow (answers late)."""

    def __init__(self, guild_id: int) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.guild_id = guild_id
        self.seen = seen = Seen()
        self.tree = tree = app_commands.CommandTree(self)

        @tree.command(description="Make images")
        @app_commands.describe(prompt="What to draw", preset="Brand preset")
        async def imagine(
            interaction: discord.Interaction[discord.Client], prompt: str, preset: str = ""
        ) -> None:
            await interaction.response.defer(thinking=True)
            text = f"queued: {prompt} ({preset or 'default'})"
            message = await interaction.followup.send(text, wait=True)
            seen.followup_ids.append(message.id)

        @imagine.autocomplete("preset")
        async def preset_choices(
            interaction: discord.Interaction[discord.Client], current: str
        ) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=p, value=p) for p in PRESETS if current in p]

        @tree.command(description="Answers after the deadline")
        async def slow(interaction: discord.Interaction[discord.Client]) -> None:
            await asyncio.sleep(3.2)
            try:
                await interaction.response.send_message("too late")
            except discord.NotFound as exc:
                seen.late_errors.append(exc)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(ActionButton)
        guild = discord.Object(self.guild_id)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.seen.reactions.append(payload)

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        self.seen.removed.append(payload)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server
    assert server.bugs == []


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[Bot]:
    async with run_client(Bot(fake.guild.id), fake) as client:
        yield cast(Bot, client)


def _png(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_start_sync_defer_and_followup(fake: FakeDiscord, bot: Bot) -> None:
    assert fake.connections[0].query["compress"] == "zlib-stream"
    identify = next(f for f in fake.gateway_frames if f.op == 2)
    assert identify.d["token"] == fake.token
    assert any(f.op == 1 for f in fake.gateway_frames)  # a heartbeat right after HELLO
    assert bot.get_guild(fake.guild.id) is not None
    synced = fake.command("imagine")
    assert synced["guild_id"] == str(fake.guild.id)
    assert [o["name"] for o in synced["options"]] == ["prompt", "preset"]

    record = await fake.dispatch_slash_command("imagine", {"prompt": "a sneaker on a beach"})
    await fake.wait_for(lambda _: record.followups)

    callback = record.callback
    assert callback is not None
    assert callback.type == CB_DEFERRED_MESSAGE
    assert record.ack_latency is not None
    assert record.ack_latency < 3.0
    # Discord: the first followup after a defer edits the "thinking" message.
    original = record.original
    assert original is not None
    assert record.followups == [original]
    assert original.content == "queued: a sneaker on a beach (default)"
    assert not original.flags & FLAG_LOADING
    await fake.wait_for(lambda _: bot.seen.followup_ids)
    assert bot.seen.followup_ids == [original.id]


async def test_late_callback_is_unknown_interaction(fake: FakeDiscord, bot: Bot) -> None:
    record = await fake.dispatch_slash_command("slow")
    await fake.wait_for(lambda _: bot.seen.late_errors, timeout=6)
    assert bot.seen.late_errors[0].code == 10062
    [refused] = record.callbacks
    assert refused.status == 404
    assert refused.elapsed > 3.0
    assert record.callback is None


async def test_second_callback_is_refused(fake: FakeDiscord, bot: Bot) -> None:
    record = await fake.dispatch_slash_command("imagine", {"prompt": "x"})
    await fake.wait_for(lambda _: record.callback)
    url = f"{fake.api_url}/interactions/{record.id}/{record.token}/callback"
    async with aiohttp.ClientSession() as session, session.post(url, json={"type": 5}) as resp:
        assert resp.status == 400
        assert resp.headers["Content-Type"] == "application/json"
        assert (await resp.json())["code"] == 40060


async def test_dynamic_button_on_a_message_the_bot_never_saw(fake: FakeDiscord, bot: Bot) -> None:
    gid = str(uuid.uuid4())
    message_id = 1_234_567_890_123_456_789  # not in the fake's store, not in discord.py's cache
    record = await fake.dispatch_component(f"ob:u:{gid}:2", message_id)
    await fake.wait_for(lambda _: record.callback)
    assert bot.seen.clicks == [("u", gid, 2, message_id)]
    assert record.callback is not None
    assert record.callback.type == CB_DEFERRED_UPDATE


async def test_raw_reaction_add(fake: FakeDiscord, bot: Bot) -> None:
    ben = fake.guild.member("ben")
    message = fake.seed_message(fake.guild.channel("campaign-spring").id, "grid")
    await fake.dispatch_reaction_add(message.id, "⭐", ben.id)
    await fake.wait_for(lambda _: bot.seen.reactions)
    [event] = bot.seen.reactions
    assert (event.message_id, event.user_id, event.emoji.name) == (message.id, ben.id, "⭐")
    assert event.type is discord.ReactionType.normal
    assert event.member is not None
    assert event.member.name == "ben"
    await fake.dispatch_reaction_remove(message.id, "⭐", ben.id)
    await fake.wait_for(lambda _: bot.seen.removed)
    assert bot.seen.removed[0].event_type == "REACTION_REMOVE"


async def test_png_attachment_is_stored_with_its_bytes(fake: FakeDiscord, bot: Bot) -> None:
    channel = bot.get_channel(fake.guild.channel("campaign-spring").id)
    assert isinstance(channel, discord.TextChannel)
    png = _png()
    embed = discord.Embed(title="Spring grid").set_image(url="attachment://grid.png")
    sent = await channel.send("here", embed=embed, file=discord.File(io.BytesIO(png), "grid.png"))

    [stored] = fake.messages_in(channel.id)
    assert stored.files[0].data == png
    assert stored.files[0].filename == "grid.png"
    assert stored.embeds[0]["title"] == "Spring grid"
    [attachment] = sent.attachments
    assert (attachment.size, attachment.width, attachment.height) == (len(png), 64, 48)
    assert await attachment.read() == png  # served back by the fake's CDN route
    await sent.add_reaction("✅")
    assert stored.reactions["✅"] == {fake.bot.id}


async def test_rate_limited_post_is_retried(fake: FakeDiscord, bot: Bot) -> None:
    channel = bot.get_channel(fake.guild.channel("general").id)
    assert isinstance(channel, discord.TextChannel)
    fake.rate_limit_next("POST /channels/*/messages", retry_after=0.2)
    await channel.send("hello")
    first, second = fake.requests_matching("POST /channels/*/messages")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.2
    assert len(fake.messages_in(channel.id)) == 1


async def test_failure_surfaces_as_discord_error(fake: FakeDiscord, bot: Bot) -> None:
    channel = bot.get_channel(fake.guild.channel("general").id)
    assert isinstance(channel, discord.TextChannel)
    fake.fail_next("POST /channels/*/messages", status=403, body={"message": "no", "code": 50013})
    with pytest.raises(discord.Forbidden) as caught:
        await channel.send("hello")
    assert caught.value.code == 50013


async def test_reconnect_resumes_and_replays(fake: FakeDiscord, bot: Bot) -> None:
    message = fake.seed_message(fake.guild.channel("campaign-spring").id, "grid")
    session = fake.session_id
    await fake.reconnect(wait=False)
    await fake.dispatch_reaction_add(message.id, "1️⃣")  # sent while the client reconnects
    await fake.wait_for(lambda _: fake.resumes == 1)
    await fake.dispatch_reaction_add(message.id, "2️⃣")
    await fake.wait_for(lambda _: len(bot.seen.reactions) >= 2)
    await asyncio.sleep(0.05)  # a duplicate would arrive right behind
    assert [r.emoji.name for r in bot.seen.reactions] == ["1️⃣", "2️⃣"]
    assert fake.connections[-1].path == "/resume"
    resume = next(f for f in fake.gateway_frames if f.op == 6)
    assert resume.d["session_id"] == session
    assert fake.session_id == session


async def test_autocomplete_answers_with_choices(fake: FakeDiscord, bot: Bot) -> None:
    record = await fake.dispatch_autocomplete(
        "imagine", {"prompt": "a sneaker", "preset": "acme-"}, focused="preset"
    )
    await fake.wait_for(lambda _: record.callback)
    callback = record.callback
    assert callback is not None
    assert callback.type == CB_AUTOCOMPLETE_RESULT
    assert [c["value"] for c in callback.data["choices"]] == PRESETS


async def test_point_discord_at_restores_and_keeps_types(fake: FakeDiscord) -> None:
    before = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    with point_discord_at(fake):
        assert fake.api_url == discord.http.Route.BASE
        gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        assert isinstance(gateway, yarl.URL)
        assert str(gateway) == fake.gateway_url
    assert discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY is before
    assert discord.http.Route.BASE == "https://discord.com/api/v10"


async def test_rest_needs_the_bot_token(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.api_url}/users/@me") as resp:
            assert resp.status == 401
        headers = {"Authorization": f"Bot {fake.token}"}
        async with session.get(f"{fake.api_url}/users/@me", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"
    started = time.monotonic()
    assert [r.status for r in fake.requests] == [401, 200]
    assert all(r.at <= started for r in fake.requests)
