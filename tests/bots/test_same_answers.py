"""Slack and Discord give the same answers: one scenario, both adapters, the same neutral result.

Each scenario runs through the real discord.py client against the fake Discord and through the
real slack-bolt app against the fake Slack, over one service on the real database (emptied
between the two runs, so queue positions and quotas start alike). What a person sees is read
back from each fake and made platform-neutral (Slack's escaping undone, bold markers and
generation ids set aside); the two must be equal:

imagine (the "Queued" card and its button), cancel (the private answer and the closed status
message), a blocked prompt, a quota error, an unexpected error (the same text with its own
reference), bind / bind a preset alone / campaigns / unbind, and a report (refusal, title, files).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import re
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from bots.discord import OnbrandBot
from bots.slack import SlackBot, SlackSink, slack_client
from core.bootstrap import App, load_brand_presets, service_config
from core.db import Database
from core.db.uow import sql_uow_factory
from core.domain import Actor, Platform, ReplyTarget, Role
from core.service import Service
from core.service.reports import ReportBundle
from core.settings import Settings
from core.storage.local import LocalImageStore
from tests.fakes.discord import FLAG_EPHEMERAL, FakeDiscord, InteractionRecord, run_client
from tests.fakes.slack import (
    ADMIN_ID,
    BOT_TOKEN,
    CHANNEL_ID,
    SIGNING_SECRET,
    USER_ID,
    FakeSlack,
    SlackSender,
    running_fake_slack,
    serve_aiohttp,
)
from tests.network import allowed_hosts

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(allowed_hosts())]

PRESET = "brand"
PRESETS = {
    "brand.yaml": f"""
name: {PRESET}
brand: Test Brand
prompt: "{{prompt}}, test brand style"
banned_terms: [rivalcorp]
aspect_ratios:
  "1:1": [64, 64]
default_aspect: "1:1"
engine: {{kind: fake, model: fake-v1, steps: 2, guidance: 5.0}}
""",
    "bold.yaml": """
name: bold
brand: Test Brand
prompt: "{prompt}, bold"
aspect_ratios:
  "1:1": [64, 64]
default_aspect: "1:1"
engine: {kind: fake, model: fake-v1, steps: 2, guidance: 5.0}
limits: {images_per_user_per_day: 5000, queued_per_user: 1}
""",
}
EDIT_INTERVAL = 0.2
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
REFERENCE = re.compile(r"reference `[0-9a-f]{10}`")


def neutral(text: str | None) -> str:
    """What a person reads, whichever platform: Slack's escaping undone, bold markers (Discord
    ``**``, Slack ``*``) and generation ids set aside."""
    plain = html.unescape(text or "").replace("**", "").replace("*", "")
    return UUID.sub("<id>", plain)


@dataclass
class Seen:
    """A public message as a person sees it: its text and its buttons."""

    text: str
    buttons: list[str]


@dataclass
class Answer:
    """What one action got: a private answer and the public messages it posted."""

    private: str | None
    public: list[Seen]


async def _reports(campaign: str, since: Any, until: Any, pseudonymise: bool) -> ReportBundle:
    return ReportBundle(
        campaign,
        f"# Campaign report: {campaign}\n\n- **3** requests",
        "generation,image\n1,1\n",
        "<html><body>contact sheet</body></html>",
    )


# --- Discord ----------------------------------------------------------------------------------


class DiscordSide:
    name = "discord"

    def __init__(self, fake: FakeDiscord, bot: OnbrandBot) -> None:
        self.fake = fake
        self.bot = bot
        self.channel_id = fake.guild.channel("campaign-spring").id
        self.member, self.admin = fake.guild.member("ben"), fake.guild.member("ava")

    def _user(self, admin: bool) -> Any:
        return self.admin if admin else self.member

    def _public(self) -> list[Any]:
        return [m for m in self.fake.messages_in(self.channel_id) if not m.flags & FLAG_EPHEMERAL]

    async def _answer(self, record: InteractionRecord, before: set[int]) -> Answer:
        def finished(_: Any) -> bool:
            original = record.original
            gone = original is not None and original.id not in self.fake.messages
            return bool(record.followups) or gone

        await self.fake.wait_for(finished)
        await asyncio.sleep(0.05)
        private = None
        if record.followups:
            [answer] = record.followups
            assert answer.flags & FLAG_EPHEMERAL
            private = neutral(answer.content)
        fresh = [m for m in self._public() if m.id not in before]
        return Answer(private, [self._seen(m) for m in fresh])

    def _seen(self, message: Any) -> Seen:
        text = message.embeds[0].get("description", "") if message.embeds else message.content
        return Seen(neutral(text), [UUID.sub("<id>", c) for c in message.custom_ids])

    async def command(self, name: str, options: Any, *, admin: bool = False) -> Answer:
        before = {m.id for m in self._public()}
        record = await self.fake.dispatch_slash_command(name, options, user=self._user(admin))
        return await self._answer(record, before)

    async def imagine(self, prompt: str, *, admin: bool = False) -> Answer:
        return await self.command("imagine", {"prompt": prompt}, admin=admin)

    async def admin_command(self, sub: str, *, admin: bool = True, **options: Any) -> Answer:
        values = [
            {"type": 5 if isinstance(v, bool) else 3, "name": k, "value": v}
            for k, v in options.items()
        ]
        payload = [{"type": 1, "name": sub, "options": values}]
        return await self.command("imagine-admin", payload, admin=admin)

    async def cancel_last(self, *, admin: bool = False) -> tuple[Answer, Seen]:
        [status] = [m for m in self._public() if any(c.startswith("ob:x:") for c in m.custom_ids)]
        before = {m.id for m in self._public()}
        [cancel] = status.custom_ids
        record = await self.fake.dispatch_component(cancel, status.id, user=self._user(admin))
        answer = await self._answer(record, before)
        await self.bot.sink.flush()
        return answer, self._seen(self.fake.messages[status.id])

    async def report(self, campaign: str, *, admin: bool) -> tuple[Answer, dict[str, bytes]]:
        before = {m.id for m in self._public()}
        record = await self.fake.dispatch_slash_command(
            "imagine-report", {"campaign": campaign}, user=self._user(admin)
        )
        answer = await self._answer(record, before)
        fresh = [m for m in self._public() if m.id not in before]
        files = {f.filename: bytes(f.data) for m in fresh for f in m.files}
        titles = [Seen(neutral(m.embeds[0]["title"]), []) for m in fresh if m.embeds]
        return Answer(answer.private, titles), files


# --- Slack ------------------------------------------------------------------------------------


class SlackSide:
    name = "slack"

    def __init__(self, fake: FakeSlack, sender: SlackSender, bot: SlackBot) -> None:
        self.fake = fake
        self.sender = sender
        self.bot = bot

    @staticmethod
    def _user(admin: bool) -> str:
        return ADMIN_ID if admin else USER_ID

    def _public(self) -> list[Any]:
        return [m for m in self.fake.messages(CHANNEL_ID) if m.bot_id]

    def _seen(self, message: Any) -> Seen:
        buttons = [
            UUID.sub("<id>", e["action_id"])
            for b in message.blocks or []
            if b.get("type") == "actions"
            for e in b["elements"]
        ]
        return Seen(neutral(message.text), buttons)

    async def _answer(self, ack_text: str | None, before: set[str], ephemerals: int) -> Answer:
        await asyncio.sleep(0.05)
        await self.bot.drain()
        notes = [e.text for e in self.fake.ephemerals[ephemerals:]]
        private = ack_text or (notes[0] if notes else None)
        fresh = [m for m in self._public() if m.ts not in before]
        return Answer(neutral(private) if private else None, [self._seen(m) for m in fresh])

    async def command(self, command: str, text: str, *, admin: bool = False) -> Answer:
        before = {m.ts for m in self._public()}
        ephemerals = len(self.fake.ephemerals)
        sent = await self.sender.slash_command(text, command=command, user_id=self._user(admin))
        assert sent.status == 200
        ack = sent.json().get("text") if sent.body else None
        return await self._answer(ack, before, ephemerals)

    async def imagine(self, prompt: str, *, admin: bool = False) -> Answer:
        return await self.command("/imagine", prompt, admin=admin)

    async def admin_command(self, sub: str, *, admin: bool = True, **options: Any) -> Answer:
        words = [sub]
        if "campaign" in options:
            words.append(options["campaign"])
        if "preset" in options:
            words += ["--preset", options["preset"]]
        if options.get("locked"):
            words.append("locked")
        return await self.command("/imagine-admin", " ".join(words), admin=admin)

    async def cancel_last(self, *, admin: bool = False) -> tuple[Answer, Seen]:
        [status] = [m for m in self._public() if "ob:x:" in str(m.blocks)]
        before = {m.ts for m in self._public()}
        ephemerals = len(self.fake.ephemerals)
        [cancel] = self._seen(status).buttons
        real = next(
            e["action_id"]
            for b in status.blocks or []
            if b.get("type") == "actions"
            for e in b["elements"]
        )
        assert UUID.sub("<id>", real) == cancel
        sent = await self.sender.block_action(real, message_ts=status.ts, user_id=self._user(admin))
        assert sent.status == 200
        answer = await self._answer(None, before, ephemerals)
        await self.bot.sink.flush()
        return answer, self._seen(self.fake.message(CHANNEL_ID, status.ts))

    async def report(self, campaign: str, *, admin: bool) -> tuple[Answer, dict[str, bytes]]:
        before = {m.ts for m in self._public()}
        ephemerals = len(self.fake.ephemerals)
        sent = await self.sender.slash_command(
            campaign, command="/imagine-report", user_id=self._user(admin)
        )
        assert sent.status == 200  # the ack says "Building the report…": Slack's own "thinking"
        answer = await self._answer(None, before, ephemerals)
        # The files come in a reply in the summary's thread (Slack attaches no files to a
        # posted message): that reply is how Slack carries them, not a message of its own.
        fresh = [m for m in self._public() if m.ts not in before and not m.is_reply]
        files = {f.name: bytes(f.data or b"") for f in self.fake.files if f.thread_ts}
        titles = [Seen(neutral(m.text), []) for m in fresh]
        return Answer(answer.private, titles), files


# --- both -------------------------------------------------------------------------------------


@dataclass
class Both:
    db: Database
    service: Service
    discord: DiscordSide
    slack: SlackSide

    async def each(self, scenario: Any) -> tuple[Any, Any]:
        """Run ``scenario(side)`` on Discord, empty the database, then on Slack."""
        on_discord = await scenario(self.discord)
        await self.empty()
        on_slack = await scenario(self.slack)
        return on_discord, on_slack

    async def empty(self) -> None:
        """Every table as the ``db`` fixture leaves it (the queue's included)."""
        async with self.db.engine.begin() as conn:
            tables = await conn.exec_driver_sql(
                "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
            await conn.exec_driver_sql(f"TRUNCATE {tables.scalar()} RESTART IDENTITY CASCADE")
        await self.make_campaign()

    async def seed_history(self, seconds: float) -> None:
        """One finished generation of the model that took ``seconds``: the ETA's history."""
        operator = Actor(Platform.CLI, "local", "op", "op", frozenset({Role.MEMBER}))
        where = ReplyTarget(Platform.CLI, "local", "terminal")
        [done] = (await self.service.imagine("history", operator, where)).generation_ids
        async with self.db.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE generations SET status = 'done', finished_at = now(), "
                    "started_at = now() - make_interval(secs => :s) WHERE id = :g"
                ),
                {"s": seconds, "g": done},
            )
            await conn.exec_driver_sql("DELETE FROM pgqueuer")  # pgqueuer's queue table

    async def make_campaign(self) -> None:
        admin = Actor(Platform.CLI, "local", "op", "op", frozenset({Role.ADMIN}))
        await self.service.create_campaign(admin, "spring", PRESET, gpu_budget_seconds=3600)


@pytest.fixture(scope="module")
def slack_fake() -> Iterator[FakeSlack]:
    with running_fake_slack() as fake:
        yield fake


@pytest.fixture
async def both(db: Database, slack_fake: FakeSlack, tmp_path: Path) -> AsyncIterator[Both]:
    slack_fake.reset()
    presets_dir = tmp_path / "presets"
    presets_dir.mkdir()
    for name, body in PRESETS.items():
        (presets_dir / name).write_text(body)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=SecretStr(BOT_TOKEN),
        SLACK_SIGNING_SECRET=SecretStr(SIGNING_SECRET),
        SLACK_API_URL=slack_fake.api_url,
        ONBRAND_PRESETS_DIR=presets_dir,
        ONBRAND_DATA_DIR=tmp_path / "data",
        ONBRAND_DEFAULT_PRESET=PRESET,
    )
    service = Service(
        sql_uow_factory(db),
        load_brand_presets(settings),
        service_config(settings),
        reports=_reports,
    )
    app = App(settings, db, service, LocalImageStore(tmp_path / "images"))
    client = slack_client(settings)
    sink = SlackSink(client, service=service, min_interval_s=EDIT_INTERVAL)
    slack_bot = SlackBot(app, client=client, sink=sink)
    async with contextlib.AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeDiscord())
        bot = OnbrandBot(
            service,
            guild_ids=[fake.guild.id],
            guild_ready_timeout=0.05,
            min_edit_interval_s=EDIT_INTERVAL,
        )
        await stack.enter_async_context(run_client(bot, fake))
        url = await stack.enter_async_context(serve_aiohttp(slack_bot.web_app("/slack/events")))
        stack.push_async_callback(sink.flush)
        discord_side = DiscordSide(fake, bot)
        service.config = dataclasses.replace(
            service.config,
            reviewers=frozenset({f"discord:{discord_side.admin.id}", f"slack:{ADMIN_ID}"}),
        )
        sides = Both(
            db,
            service,
            discord_side,
            SlackSide(slack_fake, SlackSender(url, SIGNING_SECRET, slack_fake), slack_bot),
        )
        await sides.make_campaign()
        yield sides
        assert fake.bugs == []
    assert slack_fake.bugs == []


# --- the scenarios ----------------------------------------------------------------------------


async def test_imagine_gets_the_same_queued_cards_each_with_position_and_eta(
    both: Both,
) -> None:
    async def scenario(side: Any) -> Answer:
        await both.seed_history(40.0)
        return await side.imagine("a {red, blue} kite")

    on_discord, on_slack = await both.each(scenario)
    assert on_discord == on_slack
    assert on_discord.private is None
    assert on_discord.public == [
        Seen("🕒 Queued (#1, about 40 s): “a red kite”", ["ob:x:<id>:0"]),
        Seen("🕒 Queued (#2, about 80 s): “a blue kite”", ["ob:x:<id>:0"]),
    ]


async def test_cancel_gets_the_same_answer_and_closes_the_same_way(both: Both) -> None:
    async def scenario(side: Any) -> tuple[Answer, Seen]:
        await side.imagine("a kite")
        return await side.cancel_last()

    on_discord, on_slack = await both.each(scenario)
    assert on_discord == on_slack
    answer, closed = on_discord
    assert answer == Answer("✖ Cancelled.", [])
    assert closed == Seen("✖ Cancelled.", [])


async def test_a_blocked_prompt_and_a_quota_error_get_the_same_private_answers(
    both: Both,
) -> None:
    async def scenario(side: Any) -> list[Answer]:
        return [
            await side.imagine("a rivalcorp billboard"),
            await side.imagine("a first poster --preset bold"),
            await side.imagine("a second poster --preset bold"),  # one queued job per person
        ]

    on_discord, on_slack = await both.each(scenario)
    assert on_discord == on_slack
    blocked, queued, refused = on_discord
    assert blocked.public == []
    assert blocked.private is not None
    assert "rivalcorp" in blocked.private
    assert queued.private is None
    assert len(queued.public) == 1
    assert refused.public == []
    assert refused.private is not None
    assert refused.private.startswith("You have 1 job(s) waiting or running")


async def test_a_control_character_gets_the_same_private_answer(both: Both) -> None:
    async def scenario(side: Any) -> Answer:
        return await side.imagine("a red\x00 kite")  # PostgreSQL can't store a NUL

    on_discord, on_slack = await both.each(scenario)
    assert on_discord == on_slack
    assert on_discord.public == []
    assert on_discord.private is not None
    assert "control character (U+0000) at character 6" in on_discord.private


async def test_an_unexpected_error_gets_the_same_text_with_its_own_reference(
    both: Both, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(both.service, "imagine", broken)

    async def scenario(side: Any) -> Answer:
        return await side.imagine("a sneaker")

    on_discord, on_slack = await both.each(scenario)
    references = [REFERENCE.findall(a.private or "") for a in (on_discord, on_slack)]
    assert [len(r) for r in references] == [1, 1]
    assert references[0] != references[1]  # each its own
    assert REFERENCE.sub("ref", on_discord.private or "") == REFERENCE.sub(
        "ref", on_slack.private or ""
    )
    assert "database on fire" not in (on_discord.private or "")


async def test_bind_unbind_and_campaigns_get_the_same_answers(both: Both) -> None:
    async def scenario(side: Any) -> list[Answer]:
        return [
            await side.admin_command("bind", campaign="spring", admin=False),
            await side.admin_command("bind", campaign="spring", locked=True),
            await side.admin_command("bind", preset="bold"),
            await side.admin_command("campaigns"),
            await side.admin_command("unbind"),
            await side.admin_command("unbind"),
        ]

    on_discord, on_slack = await both.each(scenario)
    assert on_discord == on_slack
    assert [a.private for a in on_discord] == [
        "Only admins can bind channels.",
        "This channel is now bound to campaign spring with preset brand "
        "(locked: flags can't override it).",
        "This channel is now bound to preset bold.",
        "• spring — preset brand, GPU budget 3600 s",
        "This channel is no longer bound.",
        "This channel wasn't bound.",
    ]
    assert all(a.public == [] for a in on_discord)


async def test_a_report_request_gets_the_same_refusal_title_and_files(both: Both) -> None:
    async def scenario(side: Any) -> list[tuple[Answer, dict[str, bytes]]]:
        return [
            await side.report("spring", admin=False),
            await side.report("spring", admin=True),
        ]

    on_discord, on_slack = await both.each(scenario)
    assert on_discord == on_slack
    (refused, nothing), (posted, files) = on_discord
    assert refused == Answer("Only reviewers can see campaign reports.", [])
    assert nothing == {}
    assert posted == Answer(None, [Seen("Campaign report: spring", [])])
    assert files == {
        "onbrand-report-spring.csv": b"generation,image\n1,1\n",
        "onbrand-report-spring.html": b"<html><body>contact sheet</body></html>",
    }


async def test_a_database_outage_gets_the_same_private_try_again(both: Both) -> None:
    """Issue 12, item 6: a request while PostgreSQL is unreachable (here: a real client
    refused at a closed port) is told to try again in a moment, privately, not "something went
    wrong"."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    gone = Database(f"postgresql://postgres@127.0.0.1:{closed}/onbrand", connect_timeout=1)
    working = both.service._uow

    async def scenario(side: Any) -> Answer:
        both.service._uow = sql_uow_factory(gone)
        try:
            return await side.imagine("a kite")
        finally:
            both.service._uow = working

    on_discord, on_slack = await both.each(scenario)
    await gone.dispose()
    assert on_discord == on_slack
    assert on_discord == Answer(
        "The database is unreachable right now, so nothing was done; try again in a moment.", []
    )
