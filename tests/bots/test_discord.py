"""The Discord adapter end to end: real discord.py against the fake Discord on 127.0.0.1, real
PostgreSQL, the real worker with the fake engine, the real image store and ``Delivery``.

Sockets are limited to 127.0.0.1 (and the database server) by pytest-socket's ``allow_hosts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import discord
import discord.http
import pytest
from PIL import Image
from sqlalchemy import text

from bots.discord import OnbrandBot, serve_discord
from bots.discord.render import DOWNSIZED_NOTE, render_card
from bots.discord.sink import MIN_EDIT_INTERVAL_S
from core.bootstrap import App
from core.brand.preset_files import load_presets
from core.db import Database
from core.db.uow import sql_uow_factory
from core.delivery.sweep import Delivery
from core.domain import (
    Action,
    ActionKind,
    Actor,
    CardImage,
    GenerationKind,
    GenerationStatus,
    MessageRef,
    Platform,
    ReplyTarget,
    ResultCard,
    Role,
)
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.jobs.worker import Worker, WorkerConfig
from core.replies import GENERIC_ERROR
from core.reports.build import build_report
from core.reports.html import to_html
from core.reports.text import to_csv, to_markdown
from core.service import Service
from core.service.base import ServiceConfig
from core.service.reports import ReportBundle
from core.settings import Settings
from core.storage.local import LocalImageStore
from tests.fakes.discord import (
    CB_DEFERRED_MESSAGE,
    CB_DEFERRED_UPDATE,
    FLAG_EPHEMERAL,
    FakeDiscord,
    FakeUser,
    InteractionRecord,
    StoredMessage,
    run_client,
)
from tests.network import allowed_hosts

T = TypeVar("T")


pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(allowed_hosts())]

PRESET = "brand"
JPEG = b"\xff\xd8\xff"
EDIT_INTERVAL = 0.2  # the sink's 3 s, shortened for tests
PRESETS = {
    "brand.yaml": f"""
name: {PRESET}
brand: Test Brand
prompt: "{{prompt}}, test brand style"
negative_prompt: "blurry"
banned_terms: [rivalcorp]
aspect_ratios:
  "1:1": [64, 64]
  "2:1": [128, 64]
default_aspect: "1:1"
engine: {{kind: fake, model: fake-v1, steps: 6, guidance: 5.0}}
limits: {{images_per_user_per_day: 5000, queued_per_user: 1000}}
""",
    "bold.yaml": """
name: bold
brand: Test Brand
prompt: "{prompt}, bold"
aspect_ratios:
  "1:1": [64, 64]
  "1:2": [64, 128]
default_aspect: "1:1"
engine: {kind: fake, model: fake-v1, steps: 2, guidance: 5.0}
""",
}


# --- the harness ---------------------------------------------------------------------------------


@dataclass
class Harness:
    fake: FakeDiscord
    db: Database
    service: Service
    store: LocalImageStore
    engine: FakeEngine
    bot: OnbrandBot = field(init=False)
    delivery: Delivery = field(init=False)
    _bot_stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _worker: tuple[Worker, asyncio.Task[None]] | None = None

    @property
    def channel_id(self) -> int:
        return self.fake.guild.channel("campaign-spring").id

    def user(self, name: str) -> FakeUser:
        return self.fake.guild.member(name)

    async def start_bot(self) -> None:
        """A fresh client and Delivery, as ``serve_discord`` runs them."""
        self.bot = OnbrandBot(
            self.service,
            guild_ids=[self.fake.guild.id],
            guild_ready_timeout=0.05,
            min_edit_interval_s=EDIT_INTERVAL,
        )
        await self._bot_stack.enter_async_context(run_client(self.bot, self.fake))
        self.delivery = Delivery(
            self.db, self.service, self.store, self.bot.sink, sweep_interval_s=0.2
        )
        task = asyncio.create_task(self.delivery.run())
        self._bot_stack.push_async_callback(_cancel, task)

    async def stop_bot(self) -> None:
        await self._bot_stack.aclose()

    def start_worker(self) -> None:
        engines = EngineRegistry(builtins=False)
        engines.put("fake", self.engine)
        config = WorkerConfig(
            max_batch=4, batch_window_s=0.0, progress_interval_s=0.05, retry_delay_s=0.1
        )
        worker = Worker(self.db, engines, self.store, self.service.presets, config)
        self._worker = (worker, asyncio.create_task(worker.run()))

    async def stop_worker(self) -> None:
        if self._worker is not None:
            worker, task = self._worker
            worker.stop()
            try:
                await asyncio.wait_for(asyncio.shield(task), 2)
            except TimeoutError:
                await _cancel(task)
            self._worker = None

    # --- driving it -----------------------------------------------------------------------

    async def imagine(
        self, prompt: str, user: str = "ben", **options: Any
    ) -> tuple[InteractionRecord, uuid.UUID]:
        """/imagine, its acknowledgement and its public Queued message; returns the generation."""
        before = {m.id for m in self.status_messages()}
        record = await self.fake.dispatch_slash_command(
            "imagine", {"prompt": prompt, **options}, user=self.user(user)
        )
        await self.fake.wait_for(lambda _: finished(self.fake, record))
        fresh = [m for m in self.status_messages() if m.id not in before]
        assert fresh, f"no Queued message; private answer: {record.followups}"
        return record, status_generation(fresh[0])

    def status_messages(self) -> list[StoredMessage]:
        """Public messages carrying a ✖ button: the Queued messages."""
        return [
            m
            for m in self.fake.messages_in(self.channel_id)
            if any(c.startswith("ob:x:") for c in m.custom_ids)
        ]

    async def click(
        self, custom_id: str, message_id: int | None, user: str = "ben"
    ) -> InteractionRecord:
        record = await self.fake.dispatch_component(custom_id, message_id, user=self.user(user))
        await self.fake.wait_for(lambda _: record.callback)
        return record

    async def result(self, generation_id: uuid.UUID, timeout: float = 10.0) -> StoredMessage:  # noqa: ASYNC109
        """The posted result message of a generation (waits for the delivery)."""
        message_id = await eventually(
            lambda: self.message_id(generation_id, "result"), timeout=timeout
        )
        return self.fake.messages[int(message_id)]

    async def message_id(self, generation_id: uuid.UUID, role: str) -> str | None:
        async with self.db.sessions() as session:
            found = await session.scalar(
                text(
                    "SELECT message_id FROM messages WHERE generation_id = :g AND role = :r "
                    "ORDER BY id DESC LIMIT 1"
                ),
                {"g": generation_id, "r": role},
            )
        return str(found) if found is not None else None

    async def react(self, message_id: int, emoji: str, user: str, *, added: bool = True) -> None:
        seen = self.bot.reactions_handled
        user_id = self.fake.bot.id if user == "bot" else self.user(user).id
        if added:
            await self.fake.dispatch_reaction_add(message_id, emoji, user_id)
        else:
            await self.fake.dispatch_reaction_remove(message_id, emoji, user_id)
        if user != "bot":
            await self.fake.wait_for(lambda _: self.bot.reactions_handled > seen)

    async def feedback(self, generation_id: uuid.UUID) -> set[tuple[str, int | None, str]]:
        """(kind, image index or None, user external id) for the generation's feedback."""
        async with self.db.sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT f.kind::text, i.index, u.external_id FROM feedback f "
                    "JOIN users u ON u.id = f.user_id "
                    "LEFT JOIN images i ON i.id = f.image_id WHERE f.generation_id = :g"
                ),
                {"g": generation_id},
            )
            return {(r[0], r[1], r[2]) for r in rows}


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    timeout: float = 10.0,  # noqa: ASYNC109
) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"not true within {timeout} s")
        await asyncio.sleep(0.02)


def finished(fake: FakeDiscord, record: InteractionRecord) -> bool:
    """The handler is done: it answered privately, or removed its private "thinking…"."""
    original = record.original
    return bool(record.followups) or (original is not None and original.id not in fake.messages)


def status_generation(message: StoredMessage) -> uuid.UUID:
    cancel = next(c for c in message.custom_ids if c.startswith("ob:x:"))
    return Action.parse(cancel).generation_id


def private_text(record: InteractionRecord) -> str:
    """The one private answer an interaction got (its followup), checked to be ephemeral."""
    [answer] = record.followups
    assert answer.flags & FLAG_EPHEMERAL, answer.payload
    return answer.content


async def _reports(db: Database) -> Any:
    async def source(campaign: str, since: Any, until: Any, pseudonymise: bool) -> ReportBundle:
        report = await build_report(db, campaign, since=since, until=until)
        return ReportBundle(campaign, to_markdown(report), to_csv(report), to_html(report, {}))

    return source


@pytest.fixture(scope="module")
def presets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("presets")
    for name, body in PRESETS.items():
        (folder / name).write_text(body)
    return folder


@contextlib.asynccontextmanager
async def harness(
    db: Database, presets_dir: Path, images: Path, *, worker: bool
) -> AsyncIterator[Harness]:
    presets = load_presets(presets_dir)
    service = Service(
        sql_uow_factory(db),
        presets,
        ServiceConfig(default_preset=PRESET),
        reports=await _reports(db),
    )
    async with FakeDiscord() as fake:
        h = Harness(fake, db, service, LocalImageStore(images), FakeEngine(step_delay=0.05))
        try:
            await h.start_bot()
            if worker:
                h.start_worker()
            yield h
        finally:
            await h.stop_worker()
            await h.stop_bot()
    assert fake.bugs == []


@pytest.fixture
async def h(db: Database, presets_dir: Path, tmp_path: Path) -> AsyncIterator[Harness]:
    """Bot, Delivery and a running worker."""
    async with harness(db, presets_dir, tmp_path / "images", worker=True) as running:
        yield running


@pytest.fixture
async def idle(db: Database, presets_dir: Path, tmp_path: Path) -> AsyncIterator[Harness]:
    """Bot and Delivery, no worker yet: jobs stay queued until the test starts one."""
    async with harness(db, presets_dir, tmp_path / "images", worker=False) as running:
        yield running


# --- the main flow -------------------------------------------------------------------------------


async def test_imagine_defers_queues_shows_progress_and_posts_the_result(idle: Harness) -> None:
    h = idle
    ben = h.user("ben")
    record, gid = await h.imagine("a sneaker on a beach", aspect="2:1", seed=42, n=4)

    callback = record.callback
    assert callback is not None
    assert callback.type == CB_DEFERRED_MESSAGE
    assert callback.data["flags"] & FLAG_EPHEMERAL  # "thinking…" is private
    assert record.ack_latency is not None
    assert record.ack_latency < 1.0
    [queued] = h.status_messages()
    assert not queued.flags & FLAG_EPHEMERAL
    assert queued.source == "channel"  # an ordinary bot message, not the interaction's
    assert queued.content == f"<@{ben.id}>"
    assert queued.embeds[0]["description"].startswith("🕒 Queued (#1")
    assert queued.custom_ids == [f"ob:x:{gid}:0"]
    assert await h.message_id(gid, "status") == str(queued.id)

    generation = await h.service.generation(gid)
    assert (generation.params.seed, generation.params.width, generation.params.n) == (42, 128, 4)
    assert generation.requester == f"discord:{h.fake.guild.id}:{ben.id}"

    h.start_worker()
    result = await h.result(gid)
    assert result.source == "channel"
    assert result.content == f"<@{ben.id}>"
    [upload] = result.files
    assert upload.data.startswith(JPEG)
    assert upload.filename == f"onbrand-{gid}-grid.jpg"
    with Image.open(io.BytesIO(upload.data)) as grid:
        assert grid.format == "JPEG"
    [embed] = result.embeds
    assert embed["image"]["url"] == f"attachment://{upload.filename}"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["seed"] == "42"
    assert fields["preset"].startswith(PRESET)
    expected = [f"ob:u:{gid}:{i}" for i in range(1, 5)] + [f"ob:v:{gid}:{i}" for i in range(1, 5)]
    assert result.custom_ids == [*expected, f"ob:r:{gid}:0", f"ob:rm:{gid}:0"]
    assert [len(row["components"]) for row in result.components] == [4, 4, 2]

    # Progress edited the Queued message through the channel API; the last edit closed it.
    def descriptions() -> list[str]:
        return [e["embeds"][0]["description"] for e in queued.edits if e.get("embeds")]

    await h.fake.wait_for(lambda _: descriptions()[-1:] == ["✅ Done — the images are below."])
    assert any(d.startswith("⏳ Generating") for d in descriptions()), descriptions()
    assert queued.components == []  # ✖ is gone once the job is over
    assert not h.fake.requests_matching("PATCH /webhooks/*/*/messages/*")
    assert record.followups == []  # the private "thinking…" was removed
    assert record.original is not None
    assert record.original.id not in h.fake.messages


async def test_flags_in_the_prompt_and_permutations(h: Harness) -> None:
    record = await h.fake.dispatch_slash_command(
        "imagine", {"prompt": "a {red, blue} kite --ar 2:1 --n 1", "preset": PRESET}
    )
    # both permutations are queued (read from the database: under load the first may finish
    # and lose its "Queued" message before the second one is posted)
    gids = await eventually(lambda: _queued(h, 2))
    generations = [await h.service.generation(g) for g in gids]
    assert sorted(g.raw_prompt for g in generations) == ["a blue kite", "a red kite"]
    assert {(g.params.width, g.params.n) for g in generations} == {(128, 1)}
    assert record.callback is not None
    for gid in gids:
        await h.result(gid)


async def _queued(h: Harness, wanted: int) -> list[uuid.UUID] | None:
    async with h.db.engine.connect() as conn:
        rows = await conn.exec_driver_sql("SELECT id FROM generations")
        found = [row[0] for row in rows]
    return found if len(found) == wanted else None


# --- buttons -------------------------------------------------------------------------------------


async def test_upscale_vary_and_reroll_buttons(h: Harness) -> None:
    _, gid = await h.imagine("a lighthouse")
    grid = await h.result(gid)

    kinds = {}
    for custom_id in (f"ob:u:{gid}:2", f"ob:v:{gid}:3", f"ob:r:{gid}:0"):
        before = {m.id for m in h.status_messages()}
        record = await h.click(custom_id, grid.id, user="ava")
        assert record.callback is not None
        assert record.callback.type == CB_DEFERRED_UPDATE
        fresh = await h.fake.wait_for(
            lambda _, before=before: [m for m in h.status_messages() if m.id not in before]
        )
        child_id = status_generation(fresh[0])
        child = await h.service.generation(child_id)
        assert child.parent_id == gid
        assert child.requester.endswith(f":{h.user('ava').id}")  # others act as themselves
        kinds[child.kind] = (child, await h.result(child_id))
        assert record.followups == []  # nothing private to say

    upscale, upscaled = kinds[GenerationKind.UPSCALE]
    assert upscale.source_index == 2
    edits = ("z2", "zh", "pl", "pr", "pu", "pd", "vr")  # a single image: vary, remix, edits
    ids = ("v", "pk", "rm", *edits, "ps")  # V1, 📦 Pack and Remix in a row, the menus last
    assert upscaled.custom_ids == [f"ob:{a}:{upscale.id}:1" for a in ids]
    with Image.open(io.BytesIO(upscaled.files[0].data)) as image:
        assert image.format == "JPEG"
    variation, _ = kinds[GenerationKind.VARIATION]
    assert (variation.source_index, variation.params.n) == (3, 4)
    reroll, rerolled = kinds[GenerationKind.REROLL]
    assert reroll.params.seed != (await h.service.generation(gid)).params.seed
    assert len(rerolled.custom_ids) == 10  # U1–U4, V1–V4, 🔄, Remix


async def test_a_button_on_a_message_from_before_a_restart(h: Harness) -> None:
    _, gid = await h.imagine("a windmill")
    await h.result(gid)
    await h.stop_bot()
    await h.start_bot()  # a new client: no cached message, no stored view

    unseen = 1_111_111_111_111_111_111  # neither the fake nor the client knows this message
    before = {m.id for m in h.status_messages()}
    record = await h.click(f"ob:u:{gid}:1", unseen)
    assert record.callback is not None
    assert record.callback.type == CB_DEFERRED_UPDATE
    [queued] = await h.fake.wait_for(
        lambda _: [m for m in h.status_messages() if m.id not in before]
    )
    child = await h.service.generation(status_generation(queued))
    assert (child.kind, child.parent_id, child.source_index) == (GenerationKind.UPSCALE, gid, 1)
    await h.result(child.id)


async def test_cancel_refused_for_others_allowed_for_the_requester_and_admins(
    idle: Harness,
) -> None:
    _, avas = await idle.imagine("ava's poster", user="ava")
    _, bens = await idle.imagine("ben's poster", user="ben")
    _, bens_other = await idle.imagine("ben's other poster", user="ben")
    queued = {status_generation(m): m for m in idle.status_messages()}

    refused = await idle.click(f"ob:x:{avas}:0", queued[avas].id, user="ben")
    await idle.fake.wait_for(lambda _: refused.followups)
    assert private_text(refused) == (
        "Only the person who asked for these images or an admin can cancel."
    )
    assert (await idle.service.generation(avas)).status is GenerationStatus.QUEUED
    public = [m for m in idle.fake.messages_in(idle.channel_id) if not m.flags & FLAG_EPHEMERAL]
    assert all("Only the person" not in str(m.payload) for m in public)

    own = await idle.click(f"ob:x:{bens}:0", queued[bens].id, user="ben")
    by_admin = await idle.click(f"ob:x:{bens_other}:0", queued[bens_other].id, user="ava")
    for record in (own, by_admin):
        await idle.fake.wait_for(lambda _, record=record: record.followups)
        assert private_text(record) == "✖ Cancelled."
    for gid in (bens, bens_other):
        assert (await idle.service.generation(gid)).status is GenerationStatus.CANCELLED

    # The status message is closed at once; the sweep posts the cancellation as the result.
    cancelled = await idle.result(bens)
    assert cancelled.embeds[0]["description"].startswith("✖ Cancelled")
    assert cancelled.custom_ids == []
    await idle.bot.sink.flush()
    assert queued[bens].embeds[0]["description"] == "✖ Cancelled."
    assert queued[bens].components == []
    assert queued[avas].custom_ids == [f"ob:x:{avas}:0"]


# --- reactions -----------------------------------------------------------------------------------


async def test_reactions_record_and_retract_feedback(h: Harness) -> None:
    ben, ava = str(h.user("ben").id), str(h.user("ava").id)
    _, gid = await h.imagine("a red bicycle")
    result = await h.result(gid)

    for emoji in ("1️⃣", "4️⃣", "⭐", "👍", "👎"):
        await h.react(result.id, emoji, "ben")
    await h.react(result.id, "❤️", "ava")
    await h.react(result.id, "✅", "ben")  # a member: approvals don't count
    await h.react(result.id, "✅", "ava")  # Administrator → Manage Server → admin
    await h.react(result.id, "⭐", "bot")  # our own reaction, echoed back: ignored
    await h.react(result.id, "🎉", "ben")  # not one of ours: ignored
    await asyncio.sleep(0.05)
    assert await h.feedback(gid) == {
        ("favourite", 1, ben),
        ("favourite", 4, ben),
        ("favourite", None, ben),
        ("like", None, ben),
        ("dislike", None, ben),
        ("favourite", None, ava),
        ("approve", None, ava),
    }

    await h.react(result.id, "4️⃣", "ben", added=False)
    await h.react(result.id, "👎", "ben", added=False)
    await h.react(result.id, "✅", "ava", added=False)  # no member in a removal: still an admin
    feedback = await h.feedback(gid)
    assert ("favourite", 4, ben) not in feedback
    assert ("dislike", None, ben) not in feedback
    assert ("approve", None, ava) not in feedback
    assert ("favourite", 1, ben) in feedback

    # A reviewer by configuration (ONBRAND_REVIEWERS) approves too.
    h.service.config = dataclasses.replace(
        h.service.config, reviewers=frozenset({f"discord:{ben}"})
    )
    await h.react(result.id, "✅", "ben")
    assert ("approve", None, ben) in await h.feedback(gid)
    # Reactions on the Queued message or any other message are not feedback.
    queued = await h.message_id(gid, "status")
    assert queued is not None
    other = h.fake.seed_message(h.channel_id, "chatter")
    for message_id in (int(queued), other.id):
        await h.react(message_id, "⭐", "ava")
    assert len(await h.feedback(gid)) == len(feedback) + 1


# --- deadlines, rate limits, reconnects ----------------------------------------------------------


async def test_deferral_with_200_jobs_queued_is_inside_the_deadline(idle: Harness) -> None:
    ben = idle.user("ben")
    actor = Actor(Platform.DISCORD, str(idle.fake.guild.id), str(ben.id), "Ben")
    where = ReplyTarget(Platform.DISCORD, str(idle.fake.guild.id), str(idle.channel_id))
    for batch in range(25):
        await idle.service.imagine(f"filler {batch} {{a,b,c,d,e,f,g,h}} --n 1", actor, where)

    record, gid = await idle.imagine("one more", user="ben")
    assert record.ack_latency is not None
    assert record.ack_latency < 1.0, record.ack_latency
    [queued] = [m for m in idle.status_messages() if status_generation(m) == gid]
    assert queued.embeds[0]["description"].startswith("🕒 Queued (#201")


async def test_a_rate_limited_result_post_is_retried_and_delivered_once(idle: Harness) -> None:
    _, gid = await idle.imagine("rate limited")
    idle.fake.rate_limit_next("POST /channels/*/messages", retry_after=0.3)
    idle.start_worker()
    result = await idle.result(gid)
    posts = idle.fake.requests_matching("POST /channels/*/messages")
    assert [p.status for p in posts] == [200, 429, 200]  # Queued, refused, retried
    assert posts[2].at - posts[1].at >= 0.3
    await asyncio.sleep(0.5)  # two sweeps
    results = [m for m in idle.fake.messages_in(idle.channel_id) if m.files]
    assert results == [result]
    assert idle.delivery.delivered == 1


async def test_a_failed_post_is_left_for_the_sweep(idle: Harness) -> None:
    _, gid = await idle.imagine("flaky channel")
    idle.fake.fail_next(
        "POST /channels/*/messages", 403, body={"message": "Missing Permissions", "code": 50013}
    )
    idle.start_worker()
    result = await idle.result(gid)
    posts = idle.fake.requests_matching("POST /channels/*/messages")
    assert [p.status for p in posts] == [200, 403, 200]
    assert result.files


async def test_a_result_posted_whose_answer_was_lost_is_shown_once(idle: Harness) -> None:
    """Discord posted the result, then answered 503 (which discord.py does not retry): the
    sweep's next try sends it again with the same nonce (discord.py's own would be new), and
    Discord, enforcing it, answers with the message made the first time."""
    _, gid = await idle.imagine("a lost answer")
    [queued] = idle.status_messages()
    idle.fake.fail_next("POST /channels/*/messages", 503, after=True)
    idle.start_worker()
    result = await idle.result(gid)
    posts = idle.fake.requests_matching("POST /channels/*/messages")
    assert [p.status for p in posts] == [200, 503, 200]  # Queued, posted but lost, found
    assert posts[1].json["nonce"] == posts[2].json["nonce"]
    await asyncio.sleep(0.5)  # two sweeps
    shown = [m.id for m in idle.fake.messages_in(idle.channel_id)]
    assert shown == [queued.id, result.id]


async def test_gateway_reconnect_in_the_middle_of_a_job(idle: Harness) -> None:
    idle.engine.step_delay = 0.15
    _, gid = await idle.imagine("through a reconnect")
    [queued] = idle.status_messages()
    idle.start_worker()
    await idle.fake.wait_for(
        lambda _: any("Generating" in str(e.get("embeds")) for e in queued.edits)
    )
    assert (await idle.service.generation(gid)).status is GenerationStatus.RUNNING
    await idle.fake.reconnect(wait=False)  # op 7 while the job runs
    result = await idle.result(gid)
    await idle.fake.wait_for(lambda fake: fake.resumes == 1)
    assert idle.fake.connections[-1].path == "/resume"

    await idle.react(result.id, "👍", "ben")
    assert ("like", None, str(idle.user("ben").id)) in await idle.feedback(gid)


# --- autocomplete, errors, reports, admin --------------------------------------------------------


async def test_autocomplete_presets_and_campaigns(h: Harness) -> None:
    admin = Actor(Platform.DISCORD, "g", "u", "Admin", frozenset({Role.ADMIN}))
    await h.service.create_campaign(admin, "spring-launch", PRESET)
    await h.service.create_campaign(admin, "autumn", "bold")

    async def choices(command: str, options: dict[str, Any], focused: str) -> list[str]:
        record = await h.fake.dispatch_autocomplete(command, options, focused=focused)
        await h.fake.wait_for(lambda _: record.callback)
        assert record.callback is not None
        return [c["value"] for c in record.callback.data["choices"]]

    assert await choices("imagine", {"prompt": "x", "preset": ""}, "preset") == ["bold", PRESET]
    assert await choices("imagine", {"prompt": "x", "preset": "BR"}, "preset") == [PRESET]
    assert await choices("imagine", {"prompt": "x", "campaign": "spr"}, "campaign") == [
        "spring-launch"
    ]
    assert await choices("imagine-report", {"campaign": ""}, "campaign") == [
        "autumn",
        "spring-launch",
    ]
    aspect = next(o for o in h.fake.command("imagine")["options"] if o["name"] == "aspect")
    assert [c["value"] for c in aspect["choices"]] == ["1:2", "1:1", "2:1"]


async def test_a_user_error_is_answered_privately_and_nothing_else(h: Harness) -> None:
    record = await h.fake.dispatch_slash_command(
        "imagine", {"prompt": "a rivalcorp billboard"}, user=h.user("ben")
    )
    await h.fake.wait_for(lambda _: record.followups)
    assert "rivalcorp" in private_text(record)
    assert all(m.flags & FLAG_EPHEMERAL for m in h.fake.messages_in(h.channel_id))

    wrong = await h.fake.dispatch_slash_command(
        "imagine", {"prompt": "x", "aspect": "1:1", "preset": "nope"}
    )
    await h.fake.wait_for(lambda _: wrong.followups)
    assert private_text(wrong).startswith("There is no preset called nope")
    assert h.status_messages() == []


async def test_an_unexpected_error_gets_a_reference(
    h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(h.service, "imagine", broken)
    with caplog.at_level(logging.ERROR, logger="bots.discord.bot"):
        record = await h.fake.dispatch_slash_command("imagine", {"prompt": "x"})
        await h.fake.wait_for(lambda _: record.followups)
    answer = private_text(record)
    assert "database on fire" not in answer
    [logged] = [r for r in caplog.records if "reference" in r.getMessage()]
    reference = logged.getMessage().rsplit(" ", 1)[-1].strip("]")
    assert answer == GENERIC_ERROR.format(ref=reference)
    assert logged.exc_info is not None


def subcommand(name: str, **options: str) -> list[dict[str, Any]]:
    """The option list of ``/imagine-admin <name> …`` (string options)."""
    values = [{"type": 3, "name": key, "value": value} for key, value in options.items()]
    return [{"type": 1, "name": name, "options": values}]


async def test_report_admin_commands_and_refusals(h: Harness) -> None:
    admin = Actor(Platform.DISCORD, "g", "u", "Admin", frozenset({Role.ADMIN}))
    await h.service.create_campaign(admin, "spring-launch", PRESET)

    async def run(command: str, options: Any, user: str) -> InteractionRecord:
        record = await h.fake.dispatch_slash_command(command, options, user=h.user(user))
        await h.fake.wait_for(lambda fake: finished(fake, record))
        return record

    bind = subcommand("bind", campaign="spring-launch")
    refused = await run("imagine-admin", bind, "ben")
    assert private_text(refused) == "Only admins can bind channels."
    bound = await run("imagine-admin", bind, "ava")
    assert private_text(bound).startswith("This channel is now bound to campaign **spring-launch**")
    listed = await run("imagine-admin", subcommand("campaigns"), "ava")
    assert "**spring-launch** — preset brand" in private_text(listed)

    _, gid = await h.imagine("a bound image")
    assert (await h.service.generation(gid)).campaign == "spring-launch"
    await h.result(gid)

    denied = await run("imagine-report", {"campaign": "spring-launch"}, "ben")
    assert private_text(denied) == "Only reviewers can see campaign reports."
    report = await run("imagine-report", {"campaign": "spring-launch"}, "ava")
    assert report.followups == []  # the private "thinking…" was removed; the report is public
    [posted] = [
        m
        for m in h.fake.messages_in(h.channel_id)
        if m.embeds and m.embeds[0].get("title", "").startswith("Campaign report")
    ]
    assert posted.embeds[0]["title"] == "Campaign report: spring-launch"
    assert "spring-launch" in posted.embeds[0]["description"]
    files = {f.filename: f.data for f in posted.files}
    assert sorted(files) == [
        "onbrand-report-spring-launch.csv",
        "onbrand-report-spring-launch.html",
    ]
    assert b"<html" in files["onbrand-report-spring-launch.html"].lower()

    unbound = await run("imagine-admin", subcommand("unbind"), "ava")
    assert private_text(unbound) == "This channel is no longer bound."


# --- the sink and the renderer -------------------------------------------------------------------


async def test_status_edits_are_throttled_per_message_and_the_last_one_wins(h: Harness) -> None:
    assert MIN_EDIT_INTERVAL_S == 3.0  # production pacing; tests run the same code faster
    sink = h.bot.sink
    message = await h.bot.get_partial_messageable(h.channel_id).send("status")
    ref = MessageRef(Platform.DISCORD, str(h.channel_id), str(message.id))
    await sink.update_status(ref, ResultCard(text="step 0"))
    route = f"PATCH /channels/*/messages/{message.id}"
    await h.fake.wait_for(lambda f: f.requests_matching(route), timeout=2)  # goes out at once
    for step in range(1, 5):
        await sink.update_status(ref, ResultCard(text=f"step {step}"))
    await sink.flush()
    patches = h.fake.requests_matching(route)
    assert [p.json["embeds"][0]["description"] for p in patches] == ["step 0", "step 4"]
    assert patches[1].at - patches[0].at >= EDIT_INTERVAL * 0.95


async def test_render_downsizes_an_image_over_the_limit() -> None:
    noisy = Image.effect_noise((512, 512), 120).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, format="PNG")
    big = buffer.getvalue()
    card = ResultCard(
        text="✅ big",
        images=(CardImage("big.png", big),),
        actions=tuple(Action(ActionKind.UPSCALE, uuid.uuid4(), i) for i in range(1, 5)),
        fields=(("seed", "1"),),
    )
    rendered = render_card(card, max_upload_bytes=len(big) // 4)
    assert rendered.downsized
    [attachment] = rendered.files
    assert attachment.filename == "big.jpg"
    data = attachment.fp.read()
    assert data.startswith(JPEG)
    assert len(data) <= len(big) // 4
    assert rendered.embed.footer.text == DOWNSIZED_NOTE
    assert rendered.embed.image.url == "attachment://big.jpg"
    fits = render_card(card, max_upload_bytes=len(big))
    assert not fits.downsized
    assert fits.files[0].filename == "big.png"
    assert fits.view is not None
    assert [item.row for item in fits.view.children] == [0, 0, 0, 0]


def test_the_adapter_imports_no_torch() -> None:
    code = "import sys, bots.discord; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# --- the production entry point ------------------------------------------------------------------


async def test_serve_discord_runs_bot_and_delivery_until_stopped(
    db: Database, presets_dir: Path, tmp_path: Path
) -> None:
    async with FakeDiscord() as fake:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            DISCORD_TOKEN=fake.token,
            DISCORD_GUILD_IDS=str(fake.guild.id),
            DISCORD_API_BASE=fake.api_url,
            DISCORD_GATEWAY_URL=fake.gateway_url,
            ONBRAND_DATA_DIR=tmp_path,
            ONBRAND_PRESETS_DIR=presets_dir,
            ONBRAND_DEFAULT_PRESET=PRESET,
        )
        presets = load_presets(presets_dir)
        service = Service(sql_uow_factory(db), presets, ServiceConfig(default_preset=PRESET))
        app = App(settings, db, service, LocalImageStore(settings.images_dir))
        stop = asyncio.Event()
        serving = asyncio.create_task(serve_discord(app, stop, sweep_interval_s=0.2))
        await fake.wait_for(lambda f: f.commands.get(f.guild.id), timeout=10)
        await fake.wait_until_identified()

        h = Harness(fake, db, service, LocalImageStore(settings.images_dir), FakeEngine())
        h.start_worker()
        try:
            record = await fake.dispatch_slash_command("imagine", {"prompt": "served"})
            [queued] = await fake.wait_for(lambda _: h.status_messages())
            result = await h.result(status_generation(queued))
            assert result.files[0].data.startswith(JPEG)
            assert record.callback is not None
        finally:
            await h.stop_worker()
            stop.set()
            await asyncio.wait_for(serving, 10)
    assert discord.http.Route.BASE == "https://discord.com/api/v10"
    assert fake.bugs == []
