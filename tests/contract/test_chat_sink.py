"""The ``ChatSink`` contract and the renderers' contract, one suite over every implementation.

Sinks: the Slack sink (real slack_sdk against the fake Slack), the Discord sink (real discord.py
against the fake Discord) and ``core.testing.RecordingSink``. Each harness reads back what the
platform shows (text, images, button ids), so the same assertions hold for all three:

- a posted result shows the card's text, its images and every action, with ids
  ``ob:<action>:<uuid>:<index>``, in the target channel;
- status edits never block the caller, the newest card wins, and after ``flush`` the message
  shows the last card; a closing card (no actions) removes the buttons.

The renderers (Discord embed + buttons, Slack Block Kit) get the same card and must both show
its text, one attachment or image block per image, and every action id, in order.
"""

from __future__ import annotations

import asyncio
import html
import io
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import discord
import pytest
from PIL import Image
from slack_sdk.web.async_client import AsyncWebClient

from bots.discord.render import render_card
from bots.discord.sink import DiscordSink
from bots.slack import render as slack_render
from bots.slack.sink import SlackSink
from core.domain import (
    Action,
    ActionKind,
    CardImage,
    Generation,
    GenerationKind,
    GenerationStatus,
    MessageRef,
    Params,
    Platform,
    ReplyTarget,
    ResultCard,
)
from core.ports import ChatSink, Undeliverable
from core.testing.chat import RecordingSink
from tests.fakes.discord import FakeDiscord, run_client
from tests.fakes.slack import BOT_TOKEN, CHANNEL_ID, TEAM_ID, USER_ID, FakeSlack, running_fake_slack
from tests.network import allowed_hosts

pytestmark = [pytest.mark.allow_hosts(allowed_hosts())]

INTERVAL = 0.2  # the sinks' status-edit interval, shortened for tests
ACTION_ID = r"^ob:[urvx]:[0-9a-f-]{36}:[0-4]$"


@dataclass(frozen=True)
class Seen:
    """What a chat message shows: its text, how many images, its buttons' ids in order."""

    text: str
    images: int
    actions: tuple[str, ...]


def seen(card: ResultCard) -> Seen:
    return Seen(card.text, len(card.images), tuple(a.custom_id for a in card.actions))


class Harness(Protocol):
    sink: ChatSink
    target: ReplyTarget

    async def status_message(self) -> MessageRef:
        """A message the bot posted, for status edits."""
        ...

    async def seen(self, ref: MessageRef) -> Seen: ...

    def gone(self) -> ReplyTarget:
        """A channel that was deleted on the platform."""
        ...


# --- cards ------------------------------------------------------------------------------------


def _png(side: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


GID = uuid.UUID(int=0xA11CE)


def grid_card(gid: uuid.UUID = GID) -> ResultCard:
    return ResultCard(
        text="✅ “a sneaker <on> a beach & more”",
        images=(CardImage(f"onbrand-{gid}-grid.png", _png()),),
        actions=(
            *(Action(ActionKind.UPSCALE, gid, i) for i in range(1, 5)),
            *(Action(ActionKind.VARY, gid, i) for i in range(1, 5)),
            Action(ActionKind.REROLL, gid),
        ),
        fields=(("seed", "42"), ("preset", "acme (v1)")),
    )


def status(text: str, gid: uuid.UUID = GID) -> ResultCard:
    return ResultCard(text=text, actions=(Action(ActionKind.CANCEL, gid),))


CARDS = {
    "grid": grid_card(),
    "single": ResultCard(
        text="✅ upscale of image 2 of “a kite”",
        images=(CardImage("one.png", _png()),),
        actions=(Action(ActionKind.VARY, GID, 1),),
    ),
    "status": status("🕒 Queued (#3, about 40 s): “a sneaker”"),
    "closing": ResultCard(text="✅ Done — the images are below."),
    "failed": ResultCard(text="⚠️ the image service refused: “a sneaker”"),
}


def generation(target: ReplyTarget, requester: str) -> Generation:
    params = Params("p", "", 64, 64, 4, 5.0, 42, 4, "fake", "m", "acme", "v1")
    return Generation(
        GID, GenerationKind.IMAGINE, GenerationStatus.DONE, 1, requester, "a", params, target
    )


# --- harnesses --------------------------------------------------------------------------------


class RecordingHarness:
    def __init__(self) -> None:
        self.sink = RecordingSink(Platform.CLI)
        self.target = ReplyTarget(Platform.CLI, "local", "terminal")
        self._messages = 0
        self.sink.gone.add("deleted")

    def gone(self) -> ReplyTarget:
        return ReplyTarget(Platform.CLI, "local", "deleted")

    async def status_message(self) -> MessageRef:
        self._messages += 1
        return MessageRef(Platform.CLI, "terminal", f"status-{self._messages}")

    async def seen(self, ref: MessageRef) -> Seen:
        shown = self.sink.shown(ref)
        if shown is not None:
            return seen(shown)
        [card] = [card for _, card, posted in self.sink.results if posted == ref]
        return seen(card)


class SlackHarness:
    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        self.client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url)
        self.sink = SlackSink(
            self.client, min_interval_s=INTERVAL, updates_per_minute=600, burst=10
        )
        self.target = ReplyTarget(Platform.SLACK, TEAM_ID, CHANNEL_ID)

    def gone(self) -> ReplyTarget:
        return ReplyTarget(Platform.SLACK, TEAM_ID, "C0DELETED")

    async def status_message(self) -> MessageRef:
        posted = await self.client.chat_postMessage(channel=CHANNEL_ID, text="status")
        return MessageRef(Platform.SLACK, CHANNEL_ID, str(posted["ts"]))

    async def seen(self, ref: MessageRef) -> Seen:
        message = self.fake.message(ref.channel_id, ref.message_id)
        blocks = message.blocks or []
        return Seen(
            html.unescape(message.text or ""),
            sum(1 for b in blocks if b.get("type") == "image") + len(message.files),
            tuple(
                e["action_id"] for b in blocks if b.get("type") == "actions" for e in b["elements"]
            ),
        )


class DiscordHarness:
    def __init__(self, fake: FakeDiscord, client: discord.Client) -> None:
        self.fake = fake
        self.client = client
        self.sink = DiscordSink(client, min_edit_interval_s=INTERVAL)
        channel = fake.guild.channel("campaign-spring")
        self.target = ReplyTarget(Platform.DISCORD, str(fake.guild.id), str(channel.id))

    def gone(self) -> ReplyTarget:
        return ReplyTarget(Platform.DISCORD, self.target.workspace_id, str(10**17 + 123))

    async def status_message(self) -> MessageRef:
        sent = await self.client.get_partial_messageable(int(self.target.channel_id)).send("s")
        return MessageRef(Platform.DISCORD, self.target.channel_id, str(sent.id))

    async def seen(self, ref: MessageRef) -> Seen:
        message = self.fake.messages[int(ref.message_id)]
        text = message.embeds[0].get("description", "") if message.embeds else message.content
        return Seen(text, len(message.files), tuple(message.custom_ids))


@pytest.fixture(scope="module")
def slack_fake() -> Iterator[FakeSlack]:
    with running_fake_slack() as fake:
        yield fake


@pytest.fixture(params=["recording", "slack", "discord"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "recording":
        yield RecordingHarness()
    elif request.param == "slack":
        fake: FakeSlack = request.getfixturevalue("slack_fake")
        fake.reset()
        slack = SlackHarness(fake)
        try:
            yield slack
        finally:
            await slack.sink.flush()
        assert fake.bugs == []
    else:
        async with FakeDiscord() as discord_fake:
            client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
            async with run_client(client, discord_fake):
                harness = DiscordHarness(discord_fake, client)
                try:
                    yield harness
                finally:
                    await harness.sink.flush()
        assert discord_fake.bugs == []


# --- the sink contract ------------------------------------------------------------------------


async def test_a_posted_result_shows_its_text_images_and_every_action(harness: Harness) -> None:
    card = grid_card()
    requester = f"{harness.target.platform.value}:{harness.target.workspace_id}:{USER_ID}"
    ref = await harness.sink.post_result(
        harness.target, card, generation(harness.target, requester)
    )

    assert ref.platform is harness.sink.platform
    assert ref.channel_id == harness.target.channel_id
    shown = await harness.seen(ref)
    assert shown == seen(card)
    assert all(_is_action_id(a) for a in shown.actions)
    assert harness.sink.max_upload_bytes > 0


async def test_a_post_to_a_channel_that_is_gone_is_undeliverable(harness: Harness) -> None:
    """A refusal no retry cures is told apart from a failure worth retrying."""
    gone = harness.gone()
    requester = f"{gone.platform.value}:{gone.workspace_id}:{USER_ID}"
    with pytest.raises(Undeliverable) as refused:
        await harness.sink.post_result(gone, grid_card(), generation(gone, requester))
    assert refused.value.reason


async def test_status_edits_never_block_and_the_newest_card_wins(harness: Harness) -> None:
    ref = await harness.status_message()
    started = time.monotonic()
    for percent in range(0, 100, 10):
        await harness.sink.update_status(ref, status(f"⏳ Generating… {percent}%"))
    assert time.monotonic() - started < INTERVAL  # update_status never waits for the platform
    await harness.sink.flush()
    assert await harness.seen(ref) == seen(status("⏳ Generating… 90%"))


async def test_a_closing_card_removes_the_buttons(harness: Harness) -> None:
    ref = await harness.status_message()
    await harness.sink.update_status(ref, status("⏳ Generating… 50%"))
    await asyncio.sleep(0.05)
    await harness.sink.update_status(ref, ResultCard(text="✖ Cancelled."))
    await harness.sink.flush()
    assert await harness.seen(ref) == Seen("✖ Cancelled.", 0, ())


# --- the renderers' contract ------------------------------------------------------------------


def discord_seen(card: ResultCard) -> Seen:
    rendered = render_card(card, max_upload_bytes=8 * 1024 * 1024)
    ids: list[str] = []
    if rendered.view is not None:
        for row in rendered.view.to_components():
            ids += [c["custom_id"] for c in row["components"]]
    return Seen(rendered.embed.description or "", len(rendered.files), tuple(ids))


def slack_seen(card: ResultCard) -> Seen:
    images = [slack_render.image_block(f"F{i:010d}", card.text) for i in range(len(card.images))]
    blocks = (
        slack_render.result_blocks(card, images=images)
        if card.images
        else slack_render.status_blocks(card)
    )
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    ids = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    return Seen(
        html.unescape(texts[0]) if texts else "",
        sum(1 for b in blocks if b["type"] == "image"),
        tuple(ids),
    )


@pytest.mark.parametrize("name", sorted(CARDS))
@pytest.mark.parametrize("render", [discord_seen, slack_seen], ids=["discord", "slack"])
def test_every_renderer_shows_the_text_the_images_and_every_action(name: str, render: Any) -> None:
    card = CARDS[name]
    shown = render(card)
    assert shown == seen(card)
    assert all(_is_action_id(a) for a in shown.actions)


def test_the_renderers_escape_nothing_away() -> None:
    """Slack escapes the three control characters; what people read is still the card's text."""
    card = ResultCard(text="<!channel> & <@U1> are not pinged")
    assert slack_render.fallback_text(card) == "&lt;!channel&gt; &amp; &lt;@U1&gt; are not pinged"
    assert slack_seen(card).text == discord_seen(card).text == card.text


def _is_action_id(custom_id: str) -> bool:
    import re

    if re.match(ACTION_ID, custom_id) is None:
        return False
    return Action.parse(custom_id).custom_id == custom_id
