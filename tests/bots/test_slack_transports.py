"""The Slack adapter over both of Slack's transports: HTTP (signed POSTs to ``/slack/events``)
and Socket Mode (envelopes over a websocket, acked on it), with the same scenario tests.

Socket Mode runs as in production: ``bots.slack.socket_mode.SocketMode`` (bolt's
``AsyncSocketModeHandler``, slack_sdk's aiohttp Socket Mode client) against the fake Slack's
Socket Mode on 127.0.0.1. ``SocketSender`` has ``SlackSender``'s interface, so each scenario is
written once; what the app acked comes back as the "response" either way. Below the scenarios,
what only Socket Mode has: reconnects (``disconnect`` and a dropped connection) lose no envelope,
readiness follows the connection, a redelivered envelope is handled once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bots.slack import SlackBot, SlackSink, slack_client
from bots.slack.socket_mode import SocketMode
from core.bootstrap import App, load_brand_presets, service_config
from core.db import Database
from core.db.uow import sql_uow_factory
from core.delivery.sweep import Delivery
from core.domain import Actor, Platform
from core.engines.fake import FakeEngine
from core.service import Service
from core.settings import Settings
from core.storage.local import LocalImageStore
from tests.bots.test_slack import (
    OTHER_ID,
    PRESET,
    PRESET_YAML,
    REVIEWER_ID,
    Harness,
    _button_ids,
    _has_buttons,
    _image_files,
    _is_status,
    _labels,
    _reports,
    _text,
    eventually,
)
from tests.fakes.slack import (
    ADMIN_ID,
    BOT_TOKEN,
    CHANNEL_ID,
    SIGNING_SECRET,
    TEAM_ID,
    USER_ID,
    FakeSlack,
    SlackSender,
    running_fake_slack,
    serve_aiohttp,
)
from tests.fakes.slack_socket import APP_TOKEN, SocketSender
from tests.network import allowed_hosts

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(allowed_hosts())]

PING_S = 0.05  # the Socket Mode client's ping interval here (production: 10 s)


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


@dataclass(kw_only=True)
class Transported(Harness):
    """The harness of ``test_slack`` with the bolt app served over ``transport``."""

    transport: str = "http"
    socket: SocketMode | None = None

    async def start_bot(self) -> None:
        client = slack_client(self.app.settings)
        self.sink = SlackSink(  # Slack's edit rate would make flushing at the end take seconds
            client, service=self.app.service, min_interval_s=0.3, updates_per_minute=600, burst=20
        )
        self.delivery = Delivery(
            self.db, self.app.service, self.store, self.sink, sweep_interval_s=0.2
        )
        stack = contextlib.AsyncExitStack()
        self.bot = SlackBot(self.app, client=client, sink=self.sink)
        delivering = asyncio.create_task(self.delivery.run())

        async def stop_delivery() -> None:
            delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivering
            await self.sink.flush()

        stack.push_async_callback(stop_delivery)
        if self.transport == "http":
            url = await stack.enter_async_context(serve_aiohttp(self.bot.web_app("/slack/events")))
            self.sender = SlackSender(url, SIGNING_SECRET, self.fake)
        else:
            connections = len(self.fake.socket.connections())
            socket = SocketMode(self.bot.bolt, APP_TOKEN, ping_interval=PING_S)
            await socket.connect()
            stack.push_async_callback(socket.close)
            self.socket = socket
            await self.fake.socket.wait_connected(connections + 1)
            self.sender = SocketSender(self.fake)
        await self._stack.enter_async_context(stack)
        self._bot = stack
        await asyncio.sleep(0.05)  # the Delivery's LISTEN connection is up


def _settings(fake: FakeSlack, tmp_path: Path, transport: str) -> Settings:
    presets_dir = tmp_path / "presets"
    presets_dir.mkdir(exist_ok=True)
    (presets_dir / f"{PRESET}.yaml").write_text(PRESET_YAML)
    socket = {"SLACK_APP_TOKEN": SecretStr(APP_TOKEN)} if transport == "socket" else {}
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=SecretStr(BOT_TOKEN),
        SLACK_SIGNING_SECRET=SecretStr(SIGNING_SECRET),
        SLACK_API_URL=fake.api_url,
        ONBRAND_PRESETS_DIR=presets_dir,
        ONBRAND_DATA_DIR=tmp_path / "data",
        ONBRAND_DEFAULT_PRESET=PRESET,
        ONBRAND_REVIEWERS=[f"slack:{REVIEWER_ID}"],
        **socket,
    )


@contextlib.asynccontextmanager
async def harness(
    db: Database, fake: FakeSlack, tmp_path: Path, transport: str
) -> AsyncIterator[Transported]:
    settings = _settings(fake, tmp_path, transport)
    service = Service(
        sql_uow_factory(db),
        load_brand_presets(settings),
        service_config(settings),
        reports=_reports,
    )
    store = LocalImageStore(tmp_path / "images")
    app = App(settings, db, service, store)
    running = Transported(fake, app, db, store, FakeEngine(step_delay=0.05), transport=transport)
    await running.start_bot()
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture(params=["http", "socket"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def slack(
    db: Database, fake: FakeSlack, tmp_path: Path, transport: str
) -> AsyncIterator[Transported]:
    async with harness(db, fake, tmp_path, transport) as running:
        yield running
    if transport == "socket":  # every envelope was acked in time, once
        assert fake.socket.missed == []
        assert all(not a.late for a in fake.socket.acks)


@pytest.fixture
async def socket_slack(db: Database, fake: FakeSlack, tmp_path: Path) -> AsyncIterator[Transported]:
    async with harness(db, fake, tmp_path, "socket") as running:
        yield running


def _admin(slack: Harness) -> Actor:
    roles = slack.app.service.roles_for(Platform.SLACK, ADMIN_ID, platform_admin=True)
    return Actor(Platform.SLACK, TEAM_ID, ADMIN_ID, roles=roles)


# --- the same scenarios over both transports ------------------------------------------------------


async def test_imagine_is_acked_queued_and_delivered_with_buttons(slack: Transported) -> None:
    generation_id, status = await slack.queued("a sneaker on a beach --ar 16:9")  # acked, empty
    assert _text(status).startswith("🕒 Queued (#1")
    assert _button_ids(status) == [[f"ob:x:{generation_id}:0"]]

    await slack.start_worker()
    buttons = await slack.result_message(generation_id)

    [upload] = slack.fake.files
    assert _image_files(buttons) == [upload.id]
    assert _labels(buttons) == [["U1", "U2", "U3", "U4"], ["V1", "V2", "V3", "V4"], ["🔄", "Remix"]]
    closed = await slack.fake.wait_for(
        lambda f: m if _text(m := f.message(CHANNEL_ID, status.ts)).startswith("✅") else None
    )
    assert not _has_buttons(closed)
    assert len(slack.buttons_messages()) == 1


async def test_cancel_upscale_vary_and_reroll_buttons(slack: Transported) -> None:
    cancelled, status = await slack.queued("a boot")  # no worker yet: it stays queued
    [[cancel]] = _button_ids(status)
    sent = await slack.sender.block_action(cancel, message_ts=status.ts)
    assert (sent.status, sent.body) == (200, "")
    await slack.wait_status(cancelled, "cancelled")
    [note] = await slack.fake.wait_for(lambda f: f.ephemerals)
    assert (note.user, note.text) == (USER_ID, "✖ Cancelled.")

    parent, buttons = await slack.finished()
    ids = _button_ids(buttons)
    for action_id in (ids[0][0], ids[1][1], ids[2][0]):  # U1, V2, 🔄
        sent = await slack.sender.block_action(action_id, message_ts=buttons.ts, user_id=OTHER_ID)
        assert (sent.status, sent.body) == (200, "")
    query = "SELECT id, kind, source_index FROM generations WHERE parent_id = :p"

    async def three() -> list[Any] | None:
        children = await slack.sql(query, p=parent)
        return children if len(children) == 3 else None

    children = await eventually(three, "three children are queued")
    kinds = sorted((str(getattr(c.kind, "value", c.kind)), c.source_index or 0) for c in children)
    assert kinds == [("reroll", 0), ("upscale", 1), ("variation", 2)]
    for child in children:
        await slack.result_message(child.id)


async def test_reactions_become_feedback(slack: Transported) -> None:
    _, buttons = await slack.finished()

    for name, user in [("one", USER_ID), ("+1", OTHER_ID), ("white_check_mark", REVIEWER_ID)]:
        assert (await slack.sender.reaction(name, ts=buttons.ts, user=user)).status == 200
    removal = await slack.sender.reaction("+1", ts=buttons.ts, user=OTHER_ID, added=False)
    assert removal.status == 200

    expected = {(USER_ID, "favourite", 1), (REVIEWER_ID, "approve", None)}

    async def recorded() -> bool:
        return await slack.feedback() == expected

    await slack.settled()
    with contextlib.suppress(TimeoutError):
        await eventually(recorded, "the feedback is recorded", within=10)
    assert await slack.feedback() == expected


async def test_a_report_for_a_reviewer_and_a_private_refusal_for_a_member(
    slack: Transported,
) -> None:
    await slack.app.service.create_campaign(_admin(slack), "spring", PRESET)

    refused = await slack.sender.slash_command(
        "spring", command="/imagine-report", user_id=OTHER_ID
    )
    assert refused.status == 200
    [refusal] = await slack.fake.wait_for(lambda f: f.ephemerals)
    assert refusal.user == OTHER_ID
    assert "reviewers" in (refusal.text or "")

    sent = await slack.sender.slash_command(
        "spring", command="/imagine-report", user_id=REVIEWER_ID
    )
    assert sent.json()["response_type"] == "ephemeral"
    assert "Building the report" in sent.json()["text"]
    files = await slack.fake.wait_for(lambda f: f.files if len(f.files) == 2 else None)
    summary = slack.bot_messages()[0]
    assert {f.thread_ts for f in files} == {summary.ts}
    assert sorted(f.name for f in files) == [
        "onbrand-report-spring.csv",
        "onbrand-report-spring.html",
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a rivalcorp sneaker", "banned term"),
        ("a sneaker --seed banana", "--seed “banana” is not a whole number"),
        ("a red\x00 sneaker", "control character (U+0000) at character 6"),
    ],
    ids=["banned-term", "bad-flag", "nul"],
)
async def test_bad_input_is_answered_privately_in_the_ack(
    slack: Transported, text: str, says: str
) -> None:
    sent = await slack.sender.slash_command(text)

    assert sent.status == 200
    answer = sent.json()
    assert answer["response_type"] == "ephemeral"
    assert says in answer["text"]
    await asyncio.sleep(0.1)
    assert slack.fake.calls_to("chat.postMessage") == []
    assert await slack.generation_ids() == []


async def test_an_unexpected_error_gets_a_reference_privately(
    slack: Transported, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(slack.app.service, "imagine", broken)
    with caplog.at_level(logging.ERROR, logger="bots.slack.app"):
        sent = await slack.sender.slash_command("a sneaker")

    answer = sent.json()
    assert answer["response_type"] == "ephemeral"
    assert "database on fire" not in answer["text"]
    assert "reference `" in answer["text"]
    assert APP_TOKEN not in caplog.text


async def test_admin_binds_the_channel(slack: Transported) -> None:
    await slack.app.service.create_campaign(_admin(slack), "spring", PRESET)

    refused = await slack.sender.slash_command("bind spring", command="/imagine-admin")
    assert "Only admins" in refused.json()["text"]
    sent = await slack.sender.slash_command(
        "bind spring locked", command="/imagine-admin", user_id=ADMIN_ID
    )
    assert "campaign *spring*" in sent.json()["text"]
    assert sent.json()["response_type"] == "ephemeral"


# --- Socket Mode only: reconnects lose nothing --------------------------------------------------


async def _generations(slack: Harness, count: int) -> list[Any]:
    async def enough() -> list[Any] | None:
        ids = await slack.generation_ids()
        return ids if len(ids) >= count else None

    return await eventually(enough, f"{count} generations are queued")


async def test_a_disconnect_refresh_requested_loses_no_envelope(
    socket_slack: Transported,
) -> None:
    slack, socket = socket_slack, socket_slack.fake.socket
    assert (await slack.sender.slash_command("a sneaker")).status == 200

    await socket.disconnect("refresh_requested")
    during = asyncio.create_task(slack.sender.slash_command("a boot"))  # while it reconnects
    await socket.wait_connected(2)
    after = await slack.sender.slash_command("a hat")

    assert ((await during).status, after.status) == (200, 200)
    assert len(await _generations(slack, 3)) == 3
    await slack.fake.wait_for(lambda f: len(slack.bot_messages()) == 3)
    assert socket.missed == []
    assert len(socket.connections(open_only=True)) == 1  # the old connection was closed
    assert await slack.socket.connected() if slack.socket else False


async def test_an_envelope_sent_while_the_connection_is_down_is_handled_after_the_reconnect(
    socket_slack: Transported,
) -> None:
    slack, socket = socket_slack, socket_slack.fake.socket
    await socket.drop()  # no close frame: the client notices by its pings
    assert not socket.connected

    sent = await slack.sender.slash_command("a sneaker")

    assert sent.status == 200
    assert socket.acks[-1].connection == (await socket.wait_connected(2)).number
    [generation_id] = await _generations(slack, 1)
    await slack.fake.wait_for(lambda f: slack.bot_messages())
    await slack.start_worker()
    await slack.result_message(generation_id)


async def test_an_envelope_not_acked_before_a_drop_is_delivered_again_and_answered(
    socket_slack: Transported,
) -> None:
    slack, socket = socket_slack, socket_slack.fake.socket
    socket.ack_timeout = 0.5  # Slack's 3 s, scaled down: it redelivers sooner
    await slack.app.service.create_campaign(_admin(slack), "spring", PRESET)
    slack.fake.delay_next("users.info", 0.3)  # /imagine-admin looks the user up before its ack

    sending = asyncio.create_task(
        slack.sender.slash_command("campaigns", command="/imagine-admin", user_id=ADMIN_ID)
    )
    await slack.fake.wait_for(lambda f: f.socket.envelopes)
    socket.refuse_connections()  # down for longer than Slack waits for the ack
    await socket.drop()  # before the ack
    await asyncio.sleep(0.7)
    socket.refuse_connections(False)

    first, retry = await slack.fake.wait_for(
        lambda f: e if len(e := f.socket.envelopes) == 2 else None, timeout=3
    )
    ack = await socket.wait_for_ack(retry, timeout=3)
    assert ack is not None
    assert ack.payload is not None
    assert "*spring*" in ack.payload["text"]
    late = socket.ack_for(first)  # slack_sdk sends it once it is connected again: too late
    assert late is not None
    assert late.late
    assert (retry.payload, retry.retry_attempt) == (first.payload, 1)
    await sending


# --- Socket Mode only: a redelivered envelope is handled once -----------------------------------


async def test_a_redelivered_imagine_makes_one_generation(socket_slack: Transported) -> None:
    slack, socket = socket_slack, socket_slack.fake.socket
    await slack.sender.slash_command("a sneaker")
    [envelope] = socket.envelopes

    retry = await socket.redeliver(envelope)  # same payload, same trigger_id
    await socket.wait_for_ack(retry)
    await slack.settled()
    await asyncio.sleep(0.2)

    assert len(await slack.generation_ids()) == 1
    assert len([m for m in slack.bot_messages() if _is_status(m)]) == 1


async def test_a_redelivered_button_click_makes_one_variation(socket_slack: Transported) -> None:
    slack, socket = socket_slack, socket_slack.fake.socket
    parent, buttons = await slack.finished()
    await slack.sender.block_action(_button_ids(buttons)[1][1], message_ts=buttons.ts)  # V2
    click = socket.envelopes[-1]

    await socket.wait_for_ack(await socket.redeliver(click))  # same action_ts, same trigger_id
    await slack.settled()
    await asyncio.sleep(0.2)

    rows = await slack.sql("SELECT id FROM generations WHERE parent_id = :p", p=parent)
    assert len(rows) == 1


async def test_an_imagine_whose_ack_was_lost_in_a_drop_makes_one_generation(
    socket_slack: Transported,
) -> None:
    """The realistic case: the app handled it, the ack died with the connection, Slack sent it
    again on the next one."""
    slack, socket = socket_slack, socket_slack.fake.socket
    socket.ack_timeout = 0.5
    async with slack.db.engine.connect() as blocker:  # /imagine waits on the table lock
        transaction = await blocker.begin()
        await blocker.exec_driver_sql("LOCK TABLE generations IN EXCLUSIVE MODE")
        sending = asyncio.create_task(slack.sender.slash_command("a sneaker"))
        await slack.fake.wait_for(lambda f: f.socket.envelopes)
        await asyncio.sleep(0.1)  # the listener is inside service.imagine
        socket.refuse_connections()  # down for longer than Slack waits for the ack
        await socket.drop()
        await transaction.rollback()
        await asyncio.sleep(0.7)
        socket.refuse_connections(False)
    await sending
    _, retry = await slack.fake.wait_for(
        lambda f: e if len(e := f.socket.envelopes) == 2 else None, timeout=3
    )
    await socket.wait_for_ack(retry, timeout=3)
    await slack.settled()
    await asyncio.sleep(0.2)

    assert len(await slack.generation_ids()) == 1


# --- serve_slack in Socket Mode: readiness follows the socket, disconnects are ridden out ---------


async def _slack_ready(app: App) -> tuple[bool, str]:
    return (await app.readiness.evaluate())["slack"]


async def test_serve_slack_in_socket_mode_is_ready_only_while_connected(
    socket_slack: Transported,
) -> None:
    from bots.slack import serve_slack

    slack, socket = socket_slack, socket_slack.fake.socket
    await slack.stop_bot()
    app = App(slack.app.settings, slack.db, slack.app.service, slack.store)
    stop = asyncio.Event()
    connections = len(socket.connections())
    serving = asyncio.create_task(serve_slack(app, stop, socket_ping_interval_s=PING_S))
    await socket.wait_connected(connections + 1)

    async def ready(wanted: bool) -> tuple[bool, str] | None:
        state = await _slack_ready(app)
        return state if state[0] is wanted else None

    assert await eventually(lambda: ready(True), "ready once connected")
    assert (await SocketSender(slack.fake).slash_command("a sneaker")).status == 200

    socket.refuse_connections()  # Slack is unreachable for a while
    await socket.drop()
    _, detail = await eventually(lambda: ready(False), "not ready while disconnected")
    assert "disconnected" in detail
    assert not serving.done()

    socket.refuse_connections(False)
    await eventually(lambda: ready(True), "ready again after the reconnect")
    assert (await SocketSender(slack.fake).slash_command("a boot")).status == 200

    await socket.disconnect("refresh_requested")
    await socket.wait_connected(len(socket.connections()) + 1)
    await eventually(lambda: ready(True), "ready after a refresh")
    assert (await SocketSender(slack.fake).slash_command("a hat")).status == 200
    assert not serving.done()
    assert len(await slack.generation_ids()) == 3

    stop.set()
    await asyncio.wait_for(serving, timeout=10)
    assert (await _slack_ready(app))[0] is False
    assert not socket.connected


async def test_serve_slack_stops_with_a_clear_error_when_slack_refuses_the_app_token(
    socket_slack: Transported,
) -> None:
    from bots.slack import serve_slack
    from core.errors import ConfigError

    slack = socket_slack
    await slack.stop_bot()
    settings = slack.app.settings.model_copy(update={"slack_app_token": SecretStr(BOT_TOKEN)})
    app = App(settings, slack.db, slack.app.service, slack.store)

    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN") as refused:
        await asyncio.wait_for(
            serve_slack(app, asyncio.Event(), socket_ping_interval_s=PING_S), timeout=5
        )

    assert "not_allowed_token_type" in str(refused.value)
    assert BOT_TOKEN not in str(refused.value)


async def test_serve_slack_in_socket_mode_acks_what_it_is_handling_before_it_stops(
    socket_slack: Transported,
) -> None:
    from bots.slack import serve_slack

    slack, socket = socket_slack, socket_slack.fake.socket
    await slack.stop_bot()
    app = App(slack.app.settings, slack.db, slack.app.service, slack.store)
    stop = asyncio.Event()
    connections = len(socket.connections())
    serving = asyncio.create_task(serve_slack(app, stop, socket_ping_interval_s=PING_S))
    await socket.wait_connected(connections + 1)
    async with slack.db.engine.connect() as blocker:  # /imagine waits on the table lock
        transaction = await blocker.begin()
        await blocker.exec_driver_sql("LOCK TABLE generations IN EXCLUSIVE MODE")
        sending = asyncio.create_task(SocketSender(slack.fake).slash_command("a sneaker"))
        await slack.fake.wait_for(lambda f: f.socket.envelopes)
        await asyncio.sleep(0.1)  # the listener is inside service.imagine
        stop.set()  # SIGTERM, say
        await asyncio.sleep(0.1)
        await transaction.rollback()

    sent = await sending
    await asyncio.wait_for(serving, timeout=10)

    assert (sent.status, sent.body) == (200, "")  # acked before the socket closed
    assert len(await slack.generation_ids()) == 1
    assert len(slack.bot_messages()) == 1  # its Queued message
    assert not socket.connected


async def test_serve_slack_rides_out_slack_failing_at_start_up(socket_slack: Transported) -> None:
    from bots.slack import serve_slack

    slack, socket = socket_slack, socket_slack.fake.socket
    await slack.stop_bot()
    app = App(slack.app.settings, slack.db, slack.app.service, slack.store)
    stop = asyncio.Event()
    slack.fake.fail_next("apps.connections.open", status=503, times=3)  # past the client's retry
    connections = len(socket.connections())
    serving = asyncio.create_task(serve_slack(app, stop, socket_ping_interval_s=PING_S))

    try:
        await socket.wait_connected(connections + 1)

        assert _statuses_of(slack.fake, "apps.connections.open")[-4:] == [503, 503, 503, 200]
        assert not serving.done()
        assert (await SocketSender(slack.fake).slash_command("a sneaker")).status == 200
    finally:
        stop.set()
        await asyncio.wait_for(serving, timeout=10)


def _statuses_of(fake: FakeSlack, method: str) -> list[int]:
    return [c.status for c in fake.calls_to(method)]


async def test_serve_slack_waits_for_an_unreachable_slack_and_says_it_is_not_ready(
    socket_slack: Transported,
) -> None:
    import socket as sockets

    from bots.slack import serve_slack

    slack = socket_slack
    await slack.stop_bot()
    with sockets.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = f"http://127.0.0.1:{port}/api/"
    settings = slack.app.settings.model_copy(update={"slack_api_url": unreachable})
    app = App(settings, slack.db, slack.app.service, slack.store)
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_slack(app, stop, socket_ping_interval_s=PING_S))
    try:
        await asyncio.sleep(0.5)  # the client's connection retries (and then its own)

        assert not serving.done()
        ok, detail = await _slack_ready(app)
        assert (ok, detail) == (False, "socket disconnected; reconnecting")
    finally:
        stop.set()
        await asyncio.wait_for(serving, timeout=10)


async def test_serve_slack_names_a_scope_the_token_lacks_as_it_starts(
    socket_slack: Transported, caplog: pytest.LogCaptureFixture
) -> None:
    from bots.slack import serve_slack

    slack = socket_slack
    await slack.stop_bot()
    slack.fake.scopes.remove("groups:history")  # installed before this version's manifest
    app = App(slack.app.settings, slack.db, slack.app.service, slack.store)
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="bots.slack.scopes"):
        serving = asyncio.create_task(serve_slack(app, stop, socket_ping_interval_s=PING_S))
        try:

            async def warned() -> list[str]:
                return [m for r in caplog.records if "groups:history" in (m := r.getMessage())]

            [line] = await eventually(warned, "the missing scope is logged")
        finally:
            stop.set()
            await asyncio.wait_for(serving, timeout=10)
    assert "private channels" in line


async def test_onbrand_run_reports_the_socket_s_readiness(socket_slack: Transported) -> None:
    """``run_all`` (what ``onbrand run`` runs) registers its own "slack" check as the adapter
    starts; the Socket Mode adapter's check of the connection must be what ``/readyz`` reads."""
    from bots.processes import StopSignals, run_all

    slack, socket = socket_slack, socket_slack.fake.socket
    await slack.stop_bot()
    settings = slack.app.settings.model_copy(update={"run_worker": False})
    app = App(settings, slack.db, slack.app.service, slack.store)
    signals = StopSignals()
    connections = len(socket.connections())
    running = asyncio.create_task(run_all(app, lambda line: None, signals=signals))
    try:
        await socket.wait_connected(connections + 1)

        async def ready(wanted: bool) -> tuple[bool, str] | None:
            state = await _slack_ready(app)
            return state if state[0] is wanted else None

        assert await eventually(lambda: ready(True), "ready once connected")
        socket.refuse_connections()
        await socket.drop()
        _, detail = await eventually(lambda: ready(False), "not ready while disconnected")
        assert "disconnected" in detail
        assert not running.done()
    finally:
        socket.refuse_connections(False)
        signals._signalled()  # SIGTERM, without sending one to the test process
        await asyncio.wait_for(running, timeout=20)
