"""The Slack adapter end to end: real slack-bolt and slack_sdk against the fake Slack on
127.0.0.1, real PostgreSQL, the real worker with the fake engine, the real store and Delivery.

Sockets are limited to 127.0.0.1 (and the database host) by pytest-socket's ``allow_hosts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text

from bots.slack import SlackBot, SlackSink, render, slack_client
from bots.slack.sink import TokenBucket
from core.bootstrap import App, load_brand_presets, service_config
from core.cards import status_card
from core.db import Database
from core.db.uow import sql_uow_factory
from core.delivery.sweep import Delivery
from core.domain import (
    Action,
    ActionKind,
    Actor,
    CardImage,
    MessageRef,
    Platform,
    ReplyTarget,
    ResultCard,
)
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.jobs.worker import Worker, WorkerConfig
from core.service import Service
from core.service.reports import ReportBundle
from core.settings import Settings
from core.storage.local import LocalImageStore
from tests.fakes.slack import (
    ADMIN_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    CHANNEL_ID,
    SIGNING_SECRET,
    TEAM_ID,
    USER_ID,
    FakeSlack,
    Message,
    SlackSender,
    reaction_event,
    running_fake_slack,
    serve_aiohttp,
)
from tests.network import allowed_hosts

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(allowed_hosts())]

REVIEWER_ID = "U0REVIEW01"
OTHER_ID = "U0OTHER001"
PRESET = "test-brand"
T = TypeVar("T")
JPEG = b"\xff\xd8\xff"
PRESET_YAML = f"""
name: {PRESET}
brand: Test Brand
prompt: "{{prompt}}, test brand style"
negative_prompt: "blurry"
banned_terms: [rivalcorp]
aspect_ratios:
  "1:1": [64, 64]
  "16:9": [112, 64]
default_aspect: "1:1"
engine: {{kind: fake, model: fake-v1, steps: 4, guidance: 5.0}}
limits: {{images_per_user_per_day: 5000, queued_per_user: 1000}}
"""


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeSlack]:
    with running_fake_slack() as fake:
        fake.add_user(REVIEWER_ID, "rita.reviewer")
        fake.add_user(OTHER_ID, "otto.other")
        yield fake


@pytest.fixture
def fake(running_fake: FakeSlack) -> Iterator[FakeSlack]:
    running_fake.reset()
    yield running_fake
    assert running_fake.bugs == []


async def _reports(
    campaign: str, since: Any, until: Any, pseudonymise: bool
) -> ReportBundle:  # the report issue provides the real content
    return ReportBundle(
        campaign,
        f"# Campaign report: {campaign}\n\n- **3** requests\n\n"
        "| user | images |\n|---|---|\n| a | 4 |",
        "generation,image\n1,1\n",
        "<html><body>contact sheet</body></html>",
    )


@dataclass
class Harness:
    fake: FakeSlack
    app: App
    db: Database
    store: LocalImageStore
    engine: FakeEngine
    sender: SlackSender = field(init=False)
    sink: SlackSink = field(init=False)
    bot: SlackBot = field(init=False)
    delivery: Delivery = field(init=False)
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _worker: tuple[Worker, asyncio.Task[None]] | None = None

    async def start_bot(self) -> None:
        """A bolt app over HTTP and a Delivery, as ``serve_slack`` runs them."""
        client = slack_client(self.app.settings)
        self.sink = SlackSink(client, service=self.app.service, min_interval_s=0.3)
        self.delivery = Delivery(
            self.db, self.app.service, self.store, self.sink, sweep_interval_s=0.2
        )
        stack = contextlib.AsyncExitStack()
        self.bot = SlackBot(self.app, client=client, sink=self.sink)
        url = await stack.enter_async_context(serve_aiohttp(self.bot.web_app("/slack/events")))
        delivering = asyncio.create_task(self.delivery.run())

        async def stop_delivery() -> None:
            delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivering
            await self.sink.flush()

        stack.push_async_callback(stop_delivery)
        self.sender = SlackSender(url, SIGNING_SECRET, self.fake)
        await self._stack.enter_async_context(stack)
        self._bot = stack
        await asyncio.sleep(0.05)  # the Delivery's LISTEN connection is up

    async def stop_bot(self) -> None:
        await self._bot.aclose()

    async def start_worker(self) -> None:
        worker = Worker(
            self.db,
            _engines(self.engine),
            self.store,
            self.app.service.presets,
            WorkerConfig(max_batch=4, batch_window_s=0.0, progress_interval_s=0.1),
        )
        task = asyncio.create_task(worker.run())
        self._worker = (worker, task)

    async def stop_worker(self) -> None:
        if self._worker is not None:
            worker, task = self._worker
            worker.stop()
            await asyncio.wait_for(task, timeout=10)
            self._worker = None

    async def close(self) -> None:
        await self.stop_worker()
        await self._stack.aclose()

    # --- helpers -----------------------------------------------------------------------------

    async def sql(self, query: str, **params: Any) -> list[Any]:
        async with self.db.engine.connect() as conn:
            return list(await conn.execute(text(query), params))

    async def generation_ids(self) -> list[uuid.UUID]:
        rows = await self.sql("SELECT id FROM generations ORDER BY queued_at")
        return [row.id for row in rows]

    async def status(self, generation_id: uuid.UUID) -> str:
        [row] = await self.sql("SELECT status FROM generations WHERE id = :id", id=generation_id)
        return str(row.status.value if hasattr(row.status, "value") else row.status)

    async def wait_status(self, generation_id: uuid.UUID, wanted: str) -> None:
        async def reached() -> bool:
            return await self.status(generation_id) == wanted

        await eventually(reached, f"{generation_id} becomes {wanted}", within=10)

    def bot_messages(self) -> list[Message]:
        return [m for m in self.fake.messages(CHANNEL_ID) if m.bot_id]

    def buttons_messages(self) -> list[Message]:
        """Result messages with buttons (not the status messages' ✖)."""
        return [m for m in self.bot_messages() if _has_buttons(m) and not _is_status(m)]

    async def queued(self, prompt: str, **sender: Any) -> tuple[uuid.UUID, Message]:
        """Send /imagine; the new generation and its Queued message."""
        before = set(await self.generation_ids())
        count = len(self.bot_messages())
        sent = await self.sender.slash_command(prompt, **sender)
        assert (sent.status, sent.body) == (200, ""), sent.body
        [new] = [g for g in await self.generation_ids() if g not in before]
        message = (await self.fake.wait_for(lambda f: self.bot_messages()[count:]))[0]
        query = "SELECT 1 FROM messages WHERE generation_id = :g AND role = 'status'"
        await eventually(lambda: self.sql(query, g=new), "the status message is recorded")
        return new, message

    async def finished(self, prompt: str = "a sneaker on a beach") -> tuple[uuid.UUID, Message]:
        """Send /imagine, run it and wait for the result; the generation and buttons message."""
        generation_id, _ = await self.queued(prompt)
        if self._worker is None:
            await self.start_worker()
        buttons = await self.result_message(generation_id)
        return generation_id, buttons

    async def result_message(self, generation_id: uuid.UUID) -> Message:
        marker = str(generation_id)

        def find(fake: FakeSlack) -> list[Message]:
            return [
                m
                for m in fake.messages(CHANNEL_ID)
                if m.blocks
                and marker in str(m.blocks)
                and not any("Queued" in str(b) or "Generating" in str(b) for b in m.blocks)
                and m.ts not in self._status_ts()
            ]

        message = (await self.fake.wait_for(find, timeout=10))[0]
        query = "SELECT 1 FROM generations WHERE id = :g AND delivered_at IS NOT NULL"
        await eventually(lambda: self.sql(query, g=generation_id), "the result is delivered")
        return message

    def _status_ts(self) -> set[str]:
        return {m.ts for m in self.fake.messages(CHANNEL_ID) if _is_status(m)}

    async def settled(self) -> None:
        """Wait until the listeners that events and clicks started have finished."""
        await asyncio.sleep(0)  # a listener starts right after its ack
        await self.bot.drain()

    async def feedback(self) -> set[tuple[str, str, int | None]]:
        rows = await self.sql(
            "SELECT u.external_id AS user, f.kind, i.index FROM feedback f "
            "JOIN users u ON u.id = f.user_id LEFT JOIN images i ON i.id = f.image_id"
        )
        return {(r.user, str(getattr(r.kind, "value", r.kind)), r.index) for r in rows}


async def eventually(
    check: Callable[[], Awaitable[T | None]], what: str, *, within: float = 5.0
) -> T:
    """Poll ``check`` until it returns something truthy (work after an ack is asynchronous)."""
    deadline = time.monotonic() + within
    while True:
        if value := await check():
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)


def _engines(engine: FakeEngine) -> EngineRegistry:
    registry = EngineRegistry()
    registry.put("fake", engine)
    return registry


def _text(message: Message) -> str:
    return message.text or ""


def _has_buttons(message: Message) -> bool:
    return any(b.get("type") == "actions" for b in message.blocks or [])


def _is_status(message: Message) -> bool:
    history = [message.text or "", *(v.text or "" for v in message.edits)]
    return any(t.startswith(("🕒 Queued", "⏳ Generating")) for t in history)


def _image_files(message: Message) -> list[str]:
    """The file ids a message's image blocks show."""
    return [
        b["slack_file"]["id"]
        for b in message.blocks or []
        if b.get("type") == "image" and "slack_file" in b
    ]


def _button_ids(message: Message) -> list[list[str]]:
    return [
        [e["action_id"] for e in b["elements"]]
        for b in message.blocks or []
        if b.get("type") == "actions"
    ]


def _labels(message: Message) -> list[list[str]]:
    return [
        [(e.get("text") or e["placeholder"])["text"] for e in b["elements"]]
        for b in message.blocks or []
        if b.get("type") == "actions"
    ]


@pytest.fixture
async def slack(db: Database, fake: FakeSlack, tmp_path: Path) -> AsyncIterator[Harness]:
    presets_dir = tmp_path / "presets"
    presets_dir.mkdir()
    (presets_dir / f"{PRESET}.yaml").write_text(PRESET_YAML)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=SecretStr(BOT_TOKEN),
        SLACK_SIGNING_SECRET=SecretStr(SIGNING_SECRET),
        SLACK_API_URL=fake.api_url,
        ONBRAND_PRESETS_DIR=presets_dir,
        ONBRAND_DATA_DIR=tmp_path / "data",
        ONBRAND_DEFAULT_PRESET=PRESET,
        ONBRAND_REVIEWERS=[f"slack:{REVIEWER_ID}"],
    )
    service = Service(
        sql_uow_factory(db),
        load_brand_presets(settings),
        service_config(settings),
        reports=_reports,
    )
    store = LocalImageStore(tmp_path / "images")
    harness = Harness(
        fake, App(settings, db, service, store), db, store, FakeEngine(step_delay=0.05)
    )
    await harness.start_bot()
    try:
        yield harness
    finally:
        await harness.close()


# --- render (pure) --------------------------------------------------------------------------------


def _grid_card() -> ResultCard:
    gid = uuid.UUID(int=7)
    return ResultCard(
        text="✅ “a <!channel> shoe & sock”",
        images=(CardImage("grid.jpg", b"x", "image/jpeg"),),
        actions=(
            *(Action(ActionKind.UPSCALE, gid, i) for i in range(1, 5)),
            *(Action(ActionKind.VARY, gid, i) for i in range(1, 5)),
            Action(ActionKind.REROLL, gid),
        ),
        fields=(("seed", "42"), ("preset", "acme (abc123)"), ("campaign", "spring")),
    )


def test_buttons_split_into_rows_of_their_kind() -> None:
    card = _grid_card()
    rows = render.action_rows(card.actions)
    assert [[e["text"]["text"] for e in row["elements"]] for row in rows] == [
        ["U1", "U2", "U3", "U4"],
        ["V1", "V2", "V3", "V4"],
        ["🔄"],
    ]
    assert rows[0]["elements"][0]["action_id"] == f"ob:u:{uuid.UUID(int=7)}:1"
    assert len({row["block_id"] for row in rows}) == 3
    many = tuple(Action(ActionKind.UPSCALE, uuid.UUID(int=1), 1) for _ in range(7))
    assert [len(r["elements"]) for r in render.action_rows(many)] == [5, 2]


def test_card_text_is_escaped_and_fields_form_the_context_line() -> None:
    blocks = render.card_blocks(_grid_card())
    assert blocks[0]["text"]["text"] == "✅ “a &lt;!channel&gt; shoe &amp; sock”"
    context = blocks[1]["elements"][0]["text"]
    assert context == "*seed* 42 · *preset* acme (abc123) · *campaign* spring"
    assert render.fallback_text(_grid_card()).count("&lt;") == 1


def test_result_blocks_leave_the_text_to_the_upload_and_closing_cards_drop_buttons() -> None:
    blocks = render.result_blocks(_grid_card(), image_posted=True)
    assert [b["type"] for b in blocks] == ["context", "actions", "actions", "actions"]
    assert render.REACTION_HINT in blocks[0]["elements"][0]["text"]
    closing = render.status_blocks(ResultCard(text="✅ Done — the images are below."))
    assert closing == [render.section("✅ Done — the images are below.")]
    cancel = status_card_actions()
    assert cancel[0]["elements"][0]["style"] == "danger"


def test_result_blocks_show_the_uploaded_grid_between_the_text_and_the_buttons() -> None:
    card = _grid_card()
    image = render.image_block("F0000000042", "x" * 3000)
    blocks = render.result_blocks(card, images=[image], mention="<@U1>")
    assert [b["type"] for b in blocks] == [
        "section",
        "section",
        "image",
        "context",
        "actions",
        "actions",
        "actions",
    ]
    assert blocks[0]["text"]["text"] == "✅ “a &lt;!channel&gt; shoe &amp; sock”"
    assert blocks[1]["text"]["text"] == "for <@U1>"
    assert blocks[2] == {
        "type": "image",
        "slack_file": {"id": "F0000000042"},
        "alt_text": "x" * render.MAX_ALT_TEXT,
    }


def status_card_actions() -> list[dict[str, Any]]:
    return render.action_rows((Action(ActionKind.CANCEL, uuid.UUID(int=3)),))


def test_report_markdown_becomes_block_kit() -> None:
    blocks = render.markdown_blocks(
        "# Campaign report: spring\n\nPreset acme · **3** requests\n\n## Totals\n\n"
        "- **12** images\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    assert [b["type"] for b in blocks] == ["header", "section", "header", "section", "section"]
    assert blocks[1]["text"]["text"] == "Preset acme · *3* requests"
    assert blocks[3]["text"]["text"] == "• *12* images"
    assert blocks[4]["text"]["text"].startswith("```\n| a | b |")
    long = "\n".join(f"line {i} " + "x" * 80 for i in range(200))
    assert all(len(b["text"]["text"]) <= 3000 for b in render.markdown_blocks(long))
    assert len(render.markdown_blocks("\n\n".join(f"# h{i}" for i in range(80)))) == 50


def test_requester_mention() -> None:
    assert render.requester_mention("slack:T1:U1") == "<@U1>"
    assert render.requester_mention("discord:1:2") == ""


async def test_token_bucket_spaces_takes_after_the_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(600.0, 2, clock=lambda: now[0])
    await bucket.take()
    await bucket.take()
    task = asyncio.create_task(bucket.take())
    await asyncio.sleep(0.05)
    assert not task.done()  # the clock stands still: no token yet
    now[0] += 0.1
    await asyncio.wait_for(task, timeout=2)


# --- the sink's throttling ------------------------------------------------------------------------


async def test_status_edits_are_throttled_per_message_and_the_last_one_wins(
    fake: FakeSlack,
) -> None:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url)
    sink = SlackSink(client, min_interval_s=0.4, updates_per_minute=600, burst=10)
    ts = (await client.chat_postMessage(channel=CHANNEL_ID, text="🕒 Queued"))["ts"]
    ref = MessageRef(Platform.SLACK, CHANNEL_ID, ts)
    gid = uuid.uuid4()
    started = time.monotonic()
    slowest = 0.0
    for percent in range(0, 100, 10):
        card = ResultCard(f"⏳ Generating… {percent}%", actions=(Action(ActionKind.CANCEL, gid),))
        before = time.monotonic()
        await sink.update_status(ref, card)
        slowest = max(slowest, time.monotonic() - before)
        await asyncio.sleep(0.05)
    assert slowest < 0.2  # update_status never waits for the pacing (0.4 s)
    await sink.update_status(ref, ResultCard("✅ Done — the images are below."))
    await fake.wait_for(lambda f: _text(f.message(CHANNEL_ID, ts)).startswith("✅"), timeout=3)
    elapsed = time.monotonic() - started
    updates = fake.calls_to("chat.update")
    # The first edit at once, then at most one per 0.4 s (however slow a loaded machine made the
    # loop), and the closing one: 11 cards coalesced into far fewer edits.
    assert len(updates) <= 2 + int(elapsed / 0.4)
    assert len(updates) < 11
    gaps = [b.at - a.at for a, b in itertools.pairwise(updates)]
    assert all(gap >= 0.35 for gap in gaps)
    assert fake.message(CHANNEL_ID, ts).blocks == render.status_blocks(
        ResultCard("✅ Done — the images are below.")
    )


async def test_flush_sends_a_pending_closing_edit_at_once(fake: FakeSlack) -> None:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url)
    sink = SlackSink(client, min_interval_s=30)
    ts = (await client.chat_postMessage(channel=CHANNEL_ID, text="🕒 Queued"))["ts"]
    ref = MessageRef(Platform.SLACK, CHANNEL_ID, ts)
    running = (Action(ActionKind.CANCEL, uuid.uuid4()),)
    await sink.update_status(ref, ResultCard("⏳ Generating… 10%", actions=running))
    await fake.wait_for_calls("chat.update")
    await sink.update_status(ref, ResultCard("✖ Cancelled."))
    assert sink.pending_edits == 1  # held back: the last edit was just sent
    await sink.flush()
    assert fake.message(CHANNEL_ID, ts).text == "✖ Cancelled."
    assert sink.pending_edits == 0


# --- /imagine -------------------------------------------------------------------------------------


async def test_ack_is_fast_with_200_jobs_queued(slack: Harness) -> None:
    service = slack.app.service
    for n in range(20):
        someone = Actor(Platform.SLACK, TEAM_ID, f"U0QUEUE{n:03d}", f"person {n}")
        where = ReplyTarget(Platform.SLACK, TEAM_ID, "C0ELSEWHERE")
        for _ in range(5):
            await service.imagine("{a,b} poster", someone, where)
    assert len(await slack.generation_ids()) == 200

    sent = await slack.sender.slash_command("a sneaker on a beach --ar 16:9")

    assert (sent.status, sent.body) == (200, "")
    assert sent.elapsed < 3.0
    assert sent.elapsed < 1.0  # in practice: tens of milliseconds
    [queued] = await slack.fake.wait_for(lambda f: slack.bot_messages())
    assert queued.text is not None
    # round-robin fairness: behind the first job of each of the 20 others, not behind all 200
    assert queued.text.startswith("🕒 Queued (#21")


async def test_command_to_queued_to_progress_to_grid_with_buttons(slack: Harness) -> None:
    generation_id, status = await slack.queued("a sneaker on a beach --ar 16:9")
    assert status.text is not None
    assert status.text.startswith("🕒 Queued (#1")
    assert _labels(status) == [["✖"]]
    assert _button_ids(status) == [[f"ob:x:{generation_id}:0"]]
    [context] = [b for b in status.blocks or [] if b["type"] == "context"]
    assert f"*preset* {PRESET}" in context["elements"][0]["text"]
    [recorded] = await slack.sql(
        "SELECT message_id, role FROM messages WHERE generation_id = :g", g=generation_id
    )
    assert (recorded.message_id, recorded.role) == (status.ts, "status")

    slack.engine.step_delay = 0.15  # slow enough for progress events
    await slack.start_worker()
    buttons = await slack.result_message(generation_id)

    # the grid: a JPEG uploaded privately (shared nowhere, no message of its own) ...
    [upload] = slack.fake.files
    assert upload.data is not None
    assert upload.data[:3] == JPEG
    assert upload.name == f"onbrand-{generation_id}-grid.jpg"
    assert (upload.channels, upload.message_ts) == ([], None)
    [complete] = slack.fake.calls_to("files.completeUploadExternal")
    assert "channel_id" not in complete.params
    assert "channels" not in complete.params
    # ... shown in ONE result message: the text, who asked, the image, the context, the buttons
    [result] = [m for m in slack.bot_messages() if not _is_status(m)]
    assert result.ts == buttons.ts
    assert result.subtype is None
    assert result.files == []
    assert [b["type"] for b in buttons.blocks or []] == [
        "section",
        "section",
        "image",
        "context",
        "actions",
        "actions",
        "actions",
    ]
    assert _text(buttons).startswith("✅ “a sneaker on a beach")
    assert _image_files(buttons) == [upload.id]
    assert _labels(buttons) == [["U1", "U2", "U3", "U4"], ["V1", "V2", "V3", "V4"], ["🔄", "Remix"]]
    assert _button_ids(buttons)[0][0] == f"ob:u:{generation_id}:1"
    context_text = " ".join(
        e["text"] for b in buttons.blocks or [] if b["type"] == "context" for e in b["elements"]
    )
    assert "*seed* " in context_text
    assert f"*preset* {PRESET}" in context_text
    assert f"<@{USER_ID}>" in str(buttons.blocks)
    # the status message: edited with progress, then closed without its ✖
    final = await slack.fake.wait_for(
        lambda f: m if _text(m := f.message(CHANNEL_ID, status.ts)).startswith("✅") else None
    )
    assert any((v.text or "").startswith("⏳ Generating") for v in final.edits)
    assert not _has_buttons(final)
    # the one message is recorded for reactions
    rows = await slack.sql(
        "SELECT message_id FROM messages WHERE generation_id = :g AND role = 'result'",
        g=generation_id,
    )
    assert [r.message_id for r in rows] == [buttons.ts]
    assert await slack.status(generation_id) == "done"
    [delivered] = await slack.sql(
        "SELECT delivered_at FROM generations WHERE id = :g", g=generation_id
    )
    assert delivered.delivered_at is not None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a rivalcorp sneaker", "banned term"),
        ("a sneaker --seed banana", "--seed “banana” is not a whole number"),
        ("a sneaker --ar 7:3", "Aspect ratio 7:3 is not available"),
        ("a red\x00 sneaker", "control character (U+0000) at character 6"),
    ],
    ids=["banned-term", "bad-flag", "not-in-preset", "nul"],
)
async def test_user_errors_are_ephemeral_only(slack: Harness, text: str, says: str) -> None:
    sent = await slack.sender.slash_command(text)

    assert sent.status == 200
    answer = sent.json()
    assert answer["response_type"] == "ephemeral"
    assert says in answer["text"]
    await asyncio.sleep(0.2)
    assert slack.fake.calls_to("chat.postMessage") == []
    assert await slack.generation_ids() == []


async def test_unexpected_errors_get_a_reference_and_the_traceback_is_logged(
    slack: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(slack.app.service, "imagine", broken)
    with caplog.at_level(logging.ERROR, logger="bots.slack.app"):
        sent = await slack.sender.slash_command("a sneaker")

    answer = sent.json()
    assert answer["response_type"] == "ephemeral"
    assert "database on fire" not in answer["text"]
    reference = answer["text"].split("reference `", 1)[1].split("`", 1)[0]
    assert len(reference) == 10
    [record] = [r for r in caplog.records if reference in r.getMessage()]
    assert record.exc_info is not None
    assert "database on fire" in str(record.exc_info[1])
    assert BOT_TOKEN not in caplog.text
    assert SIGNING_SECRET not in caplog.text


@pytest.mark.parametrize(
    "tamper",
    [{"bad_signature": True}, {"alter_body": True}, {"age": 301}],
    ids=["bad-signature", "altered-body", "stale-timestamp"],
)
async def test_unsigned_or_stale_requests_are_refused(
    slack: Harness, tamper: dict[str, Any]
) -> None:
    sent = await slack.sender.slash_command("a sneaker on a beach", **tamper)

    assert sent.status == 401
    await asyncio.sleep(0.1)
    assert await slack.generation_ids() == []
    assert slack.fake.calls_to("chat.postMessage") == []


# --- buttons --------------------------------------------------------------------------------------


async def test_upscale_vary_and_reroll_buttons_queue_children(slack: Harness) -> None:
    parent, buttons = await slack.finished()
    ids = _button_ids(buttons)

    for action_id in (ids[0][0], ids[1][1], ids[2][0]):  # U1, V2, 🔄
        sent = await slack.sender.block_action(action_id, message_ts=buttons.ts, user_id=OTHER_ID)
        assert sent.status == 200
    query = (
        "SELECT g.id, g.kind, g.source_index, u.external_id FROM generations g "
        "JOIN users u ON u.id = g.user_id WHERE g.parent_id = :p ORDER BY g.queued_at"
    )

    async def three() -> list[Any] | None:  # acked first, then queued
        children = await slack.sql(query, p=parent)
        return children if len(children) == 3 else None

    children = await eventually(three, "three children are queued")
    kinds = [(str(getattr(c.kind, "value", c.kind)), c.source_index) for c in children]
    assert sorted(kinds) == sorted([("upscale", 1), ("variation", 2), ("reroll", None)])
    assert {c.external_id for c in children} == {OTHER_ID}  # anyone may, as themselves
    for child in children:
        await slack.result_message(child.id)
    upscale = next(c.id for c in children if c.source_index == 1)
    assert _labels(await slack.result_message(upscale)) == [  # a single image: vary, edits
        ["V1"],
        ["Remix"],  # this image alone
        ["Zoom out 2×", "Zoom out 1.5×"],
        ["⬅", "➡", "⬆", "⬇"],
        ["Vary (Region)"],  # a menu of the regions
        ["📦 Pack", "📦 Pack only…"],  # the pack button and its placements menu
    ]
    statuses = [m for m in slack.bot_messages() if _is_status(m)]
    assert len(statuses) == 4  # the parent's and one per child


async def test_cancel_by_the_requester(slack: Harness) -> None:
    generation_id, status = await slack.queued("a sneaker")
    [[cancel]] = _button_ids(status)

    sent = await slack.sender.block_action(cancel, message_ts=status.ts)

    assert sent.status == 200
    await slack.wait_status(generation_id, "cancelled")
    [note] = await slack.fake.wait_for(lambda f: f.ephemerals)
    assert (note.user, note.text) == (USER_ID, "✖ Cancelled.")
    closed = await slack.fake.wait_for(
        lambda f: m if _text(m := f.message(CHANNEL_ID, status.ts)) == "✖ Cancelled." else None
    )
    assert not _has_buttons(closed)
    await slack.fake.wait_for(
        lambda f: [
            m for m in f.messages(CHANNEL_ID) if (m.text or "").startswith("✖ Cancelled by ")
        ]
    )


async def test_cancel_by_someone_else_is_refused_privately_but_an_admin_may(
    slack: Harness,
) -> None:
    generation_id, status = await slack.queued("a sneaker")
    [[cancel]] = _button_ids(status)

    sent = await slack.sender.block_action(cancel, message_ts=status.ts, user_id=OTHER_ID)

    assert sent.status == 200
    [refusal] = await slack.fake.wait_for(lambda f: f.ephemerals)
    assert refusal.user == OTHER_ID
    assert refusal.text is not None
    assert "Only the person who asked" in refusal.text
    assert await slack.status(generation_id) == "queued"
    assert len(slack.bot_messages()) == 1  # nothing in the channel

    await slack.sender.block_action(cancel, message_ts=status.ts, user_id=ADMIN_ID)
    await slack.wait_status(generation_id, "cancelled")  # users.info says is_admin


# --- reactions ------------------------------------------------------------------------------------


async def test_reactions_become_feedback_and_removal_retracts(slack: Harness) -> None:
    _, buttons = await slack.finished()
    react = slack.sender.reaction

    for name, user in [
        ("one", USER_ID),
        ("three", USER_ID),
        ("star", USER_ID),
        ("heart", OTHER_ID),
        ("+1", USER_ID),
        ("-1", OTHER_ID),
        ("white_check_mark", USER_ID),  # not a reviewer: not counted
        ("white_check_mark", REVIEWER_ID),  # counted
        ("tada", USER_ID),  # means nothing
    ]:
        assert (await react(name, ts=buttons.ts, user=user)).status == 200

    # a removal right behind its addition (no waiting: reaction events are ordered per key)
    assert (await react("three", ts=buttons.ts, user=USER_ID, added=False)).status == 200
    # the bot's own reaction and a reaction on someone else's message are ignored
    await react("star", ts=buttons.ts, user=BOT_USER_ID)
    await react("one", ts=slack.fake.post_as_user(CHANNEL_ID, "lunch?"), user=USER_ID)
    await react("two", ts=buttons.ts, user=OTHER_ID)

    expected = {
        (USER_ID, "favourite", 1),
        (USER_ID, "favourite", None),
        (OTHER_ID, "favourite", None),
        (USER_ID, "like", None),
        (OTHER_ID, "dislike", None),
        (REVIEWER_ID, "approve", None),
        (OTHER_ID, "favourite", 2),
    }

    async def recorded() -> bool:  # events are acked first, then handled
        return await slack.feedback() == expected

    with contextlib.suppress(TimeoutError):
        await eventually(recorded, "the feedback is recorded")
    assert await slack.feedback() == expected


async def test_an_addition_and_its_removal_back_to_back_leave_no_favourite(
    slack: Harness,
) -> None:
    """Each event is acked before it is handled, so without ordering the removal can be applied
    before the addition it retracts, and the favourite would stay."""
    _, result = await slack.finished()
    slack.fake.delay_next("users.info", 0.3)  # the addition's handler looks its user up slowly
    names = ["one", "two", "three", "four", "star", "heart", "+1", "-1"]
    for name in names:  # no waiting between an addition and its removal
        assert (await slack.sender.reaction(name, ts=result.ts)).status == 200
        assert (await slack.sender.reaction(name, ts=result.ts, added=False)).status == 200

    await slack.settled()
    assert await slack.feedback() == set()


async def test_a_removal_delivered_before_its_addition_wins(slack: Harness) -> None:
    """Slack may deliver events out of order: the older event (by ``event_ts``) is dropped."""
    _, result = await slack.finished()
    added_at, removed_at = f"{time.time():.6f}", f"{time.time() + 0.001:.6f}"
    slack.fake.react(CHANNEL_ID, result.ts, "two", USER_ID)  # the user adds 2️⃣ ...
    slack.fake.unreact(CHANNEL_ID, result.ts, "two", USER_ID)  # ... and takes it back

    removed = reaction_event(
        "reaction_removed", "two", channel=CHANNEL_ID, ts=result.ts, event_ts=removed_at
    )
    added = reaction_event(
        "reaction_added", "two", channel=CHANNEL_ID, ts=result.ts, event_ts=added_at
    )
    assert (await slack.sender.event(removed)).status == 200
    await slack.settled()
    assert (await slack.sender.event(added)).status == 200  # late: dropped
    await slack.settled()
    assert await slack.feedback() == set()

    assert (await slack.sender.reaction("two", ts=result.ts)).status == 200  # a new addition
    await slack.settled()
    assert await slack.feedback() == {(USER_ID, "favourite", 2)}
    assert slack.bot.reactions.locks == 0  # no lock outlives its events


# --- reports and admin ----------------------------------------------------------------------------


async def test_report_for_a_reviewer_and_refusal_for_a_member(slack: Harness) -> None:
    admin = Actor(Platform.SLACK, TEAM_ID, ADMIN_ID, roles=slack.app.service.roles_for(
        Platform.SLACK, ADMIN_ID, platform_admin=True))  # fmt: skip
    await slack.app.service.create_campaign(admin, "spring", PRESET)

    sent = await slack.sender.slash_command("spring", command="/imagine-report", user_id=OTHER_ID)
    assert sent.status == 200
    [refusal] = await slack.fake.wait_for(lambda f: f.ephemerals)
    assert refusal.text is not None
    assert "reviewers" in refusal.text
    assert slack.bot_messages() == []

    sent = await slack.sender.slash_command(
        "spring", command="/imagine-report", user_id=REVIEWER_ID
    )
    assert sent.status == 200
    assert "Building the report" in sent.body
    files = await slack.fake.wait_for(lambda f: f.files if len(f.files) == 2 else None)
    summary = slack.bot_messages()[0]
    assert summary.blocks is not None
    assert summary.blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Campaign report: spring"},
    }
    assert {f.name: f.data for f in files} == {
        "onbrand-report-spring.csv": b"generation,image\n1,1\n",
        "onbrand-report-spring.html": b"<html><body>contact sheet</body></html>",
    }
    assert {f.thread_ts for f in files} == {summary.ts}


async def test_admin_binds_lists_and_unbinds(slack: Harness) -> None:
    admin = Actor(Platform.SLACK, TEAM_ID, ADMIN_ID, roles=slack.app.service.roles_for(
        Platform.SLACK, ADMIN_ID, platform_admin=True))  # fmt: skip
    await slack.app.service.create_campaign(admin, "spring", PRESET)

    async def admin_command(words: str, user: str = ADMIN_ID) -> str:
        sent = await slack.sender.slash_command(words, command="/imagine-admin", user_id=user)
        assert sent.status == 200
        return str(sent.json()["text"])

    assert "Only admins" in await admin_command("bind spring", user=USER_ID)
    assert "campaign *spring*" in await admin_command("bind spring locked")
    assert "*spring* — preset test-brand" in await admin_command("campaigns")
    generation_id, _ = await slack.queued("a sneaker")
    [row] = await slack.sql(
        "SELECT c.name FROM generations g JOIN campaigns c ON c.id = g.campaign_id WHERE g.id = :g",
        g=generation_id,
    )
    assert row.name == "spring"
    assert "no longer bound" in await admin_command("unbind")
    assert "Usage" in await admin_command("frobnicate")


# --- failures, restarts ---------------------------------------------------------------------------


async def test_a_429_on_post_message_is_retried_and_delivered_once(slack: Harness) -> None:
    slack.fake.fail_next("chat.postMessage", status=429, retry_after=0)
    generation_id, _ = await slack.queued("a sneaker")  # the Queued post waited and retried

    slack.fake.fail_next("chat.postMessage", status=429, retry_after=0)
    await slack.start_worker()
    await slack.result_message(generation_id)

    posts = slack.fake.calls_to("chat.postMessage")
    assert [c.status for c in posts] == [429, 200, 429, 200]
    await asyncio.sleep(0.5)  # a few sweeps
    assert len(slack.buttons_messages()) == 1
    assert len(slack.fake.files) == 1


async def test_when_slack_refuses_the_image_block_the_grid_and_buttons_come_apart(
    slack: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fake.refuse_slack_files()
    with caplog.at_level(logging.WARNING, logger="bots.slack.sink"):
        generation_id, buttons = await slack.finished()

    [warning] = [r for r in caplog.records if "refused the grid" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "invalid_blocks" in warning.getMessage()
    assert "invalid slack file" in warning.getMessage()
    # the refused private upload is deleted; the grid is uploaded into the channel instead
    [deleted] = slack.fake.calls_to("files.delete")
    [upload] = slack.fake.files
    assert upload.id != deleted.params["file"]
    assert upload.channels == [CHANNEL_ID]
    assert upload.initial_comment is not None
    assert upload.initial_comment.startswith("✅ “a sneaker on a beach")
    # then the buttons message, without the image block or the text the upload carries
    assert [m.ts for m in slack.bot_messages() if not _is_status(m)] == [
        upload.message_ts,
        buttons.ts,
    ]
    assert _image_files(buttons) == []
    assert _labels(buttons) == [["U1", "U2", "U3", "U4"], ["V1", "V2", "V3", "V4"], ["🔄", "Remix"]]
    assert f"<@{USER_ID}>" in str(buttons.blocks)
    # both messages count for reactions
    rows = await slack.sql(
        "SELECT message_id FROM messages WHERE generation_id = :g AND role = 'result'",
        g=generation_id,
    )
    assert {r.message_id for r in rows} == {buttons.ts, upload.message_ts}
    assert upload.message_ts is not None
    await slack.sender.reaction("two", ts=upload.message_ts, user=OTHER_ID)
    await slack.sender.reaction("+1", ts=buttons.ts)
    await slack.settled()
    assert await slack.feedback() == {(OTHER_ID, "favourite", 2), (USER_ID, "like", None)}


async def test_a_refused_result_message_is_retried_without_uploading_again(
    slack: Harness,
) -> None:
    generation_id, _ = await slack.queued("a sneaker")
    slack.fake.fail_next("chat.postMessage", error="internal_error")  # the result message
    await slack.start_worker()
    result = await slack.result_message(generation_id)

    assert [c.error for c in slack.fake.calls_to("chat.postMessage")][1:] == [
        "internal_error",
        None,
    ]
    [upload] = slack.fake.files
    assert len(slack.fake.calls_to("files.getUploadURLExternal")) == 1  # not repeated
    assert _image_files(result) == [upload.id]
    assert slack.fake.calls_to("files.delete") == []
    await asyncio.sleep(0.5)  # a few sweeps
    assert [m.ts for m in slack.bot_messages() if not _is_status(m)] == [result.ts]


async def test_a_failed_upload_is_left_undelivered_and_the_sweep_posts_it(slack: Harness) -> None:
    from tests.fakes.slack import UPLOAD

    generation_id, _ = await slack.queued("a sneaker")
    slack.fake.fail_next(UPLOAD, status=500, times=2)  # the call and its one retry
    await slack.start_worker()
    await slack.result_message(generation_id)

    assert [c.status for c in slack.fake.calls_to(UPLOAD)][:2] == [500, 500]
    assert len(slack.fake.files) == 1
    assert len(slack.buttons_messages()) == 1


async def test_a_restart_between_command_and_result_delivers_once(slack: Harness) -> None:
    generation_id, status = await slack.queued("a sneaker")
    await slack.stop_bot()  # the bot goes down with the job still queued

    await slack.start_worker()
    await slack.wait_status(generation_id, "done")
    await asyncio.sleep(0.3)
    assert slack.fake.files == []  # nobody was there to post it

    await slack.start_bot()  # a new app and Delivery: the sweep finds it
    buttons = await slack.result_message(generation_id)
    await asyncio.sleep(0.6)  # more sweeps, more events: still once
    assert len(slack.fake.files) == 1
    assert [m.ts for m in slack.buttons_messages()] == [buttons.ts]
    assert slack.fake.message(CHANNEL_ID, status.ts).text == "✅ Done — the images are below."
    # the new app's buttons work on the old result
    sent = await slack.sender.block_action(_button_ids(buttons)[0][0], message_ts=buttons.ts)
    assert sent.status == 200
    await slack.fake.wait_for(
        lambda f: len([m for m in slack.bot_messages() if _is_status(m)]) == 2
    )


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_the_network_beyond_127_0_0_1_is_out_of_reach() -> None:
    from pytest_socket import SocketConnectBlockedError

    with pytest.raises(SocketConnectBlockedError):
        socket.create_connection(("192.0.2.1", 443), timeout=0.1)  # TEST-NET-1: never routed


async def test_serve_slack_answers_over_http_and_stops_gracefully(slack: Harness) -> None:
    from bots.slack import serve_slack

    await slack.stop_bot()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = slack.app.settings.model_copy(update={"http_host": "127.0.0.1", "http_port": port})
    app = App(settings, slack.db, slack.app.service, slack.store)
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_slack(app, stop))
    sender = SlackSender(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET, slack.fake)

    async def answered() -> Any:
        with contextlib.suppress(OSError):
            return await sender.url_verification("ping")
        return None

    assert (await eventually(answered, "serve_slack listens")).json() == {"challenge": "ping"}
    sent = await sender.slash_command("a sneaker")
    assert sent.status == 200
    await slack.fake.wait_for(lambda f: slack.bot_messages())

    stop.set()
    await asyncio.wait_for(serving, timeout=10)
    with pytest.raises(aiohttp.ClientConnectorError):  # no longer taking commands
        await sender.slash_command("a sneaker")


def test_the_adapter_needs_a_signing_secret_in_http_mode(tmp_path: Path) -> None:
    from core.errors import ConfigError

    settings = Settings(_env_file=None, SLACK_BOT_TOKEN=SecretStr("xoxb-1"))  # type: ignore[call-arg]
    service = Service(None, {}, service_config(settings))  # type: ignore[arg-type]
    app = App(settings, None, service, LocalImageStore(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        SlackBot(app)
    socket_mode = settings.model_copy(update={"slack_app_token": settings.slack_bot_token})
    assert SlackBot(App(socket_mode, app.db, app.service, app.store)).bolt is not None


def test_the_slack_adapter_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, bots.slack; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_status_card_renders_for_slack() -> None:
    """The core's status card, as the Queued message shows it."""
    from core.domain import Generation, GenerationKind, GenerationStatus, Params

    params = Params("p", "", 64, 64, 4, 5.0, 42, 4, "fake", "m", PRESET, "v1")
    generation = Generation(
        uuid.UUID(int=9),
        GenerationKind.IMAGINE,
        GenerationStatus.QUEUED,
        1,
        f"slack:{TEAM_ID}:{USER_ID}",
        "a sneaker",
        params,
        ReplyTarget(Platform.SLACK, TEAM_ID, CHANNEL_ID),
    )
    blocks = render.status_blocks(status_card(generation, position=3, eta_seconds=40))
    assert blocks[0]["text"]["text"] == "🕒 Queued (#3, about 40 s): “a sneaker”"
    assert blocks[-1]["elements"][0]["action_id"] == f"ob:x:{uuid.UUID(int=9)}:0"
