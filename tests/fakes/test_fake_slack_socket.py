"""The fake Slack's Socket Mode, driven by the real slack_sdk aiohttp Socket Mode client through
bolt's ``AsyncSocketModeHandler`` (what ``bots.slack`` runs in production)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import BOT_TOKEN, FakeSlack, running_fake_slack
from tests.fakes.slack_socket import APP_TOKEN, SocketSender
from tests.network import allowed_hosts

pytestmark = [pytest.mark.allow_hosts(allowed_hosts())]
PING = 0.05  # the client's ping interval here: a dead connection is noticed within ~this


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeSlack]:
    with running_fake_slack() as fake:
        yield fake


@pytest.fixture
def fake(running_fake: FakeSlack) -> Iterator[FakeSlack]:
    running_fake.reset()
    yield running_fake
    assert running_fake.bugs == []


@contextlib.asynccontextmanager
async def connected(fake: FakeSlack, bolt: AsyncApp) -> AsyncIterator[AsyncSocketModeHandler]:
    handler = AsyncSocketModeHandler(bolt, APP_TOKEN, ping_interval=PING)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    try:
        await fake.socket.wait_connected()
        yield handler
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]


def echo_app(fake: FakeSlack, seen: list[dict[str, Any]], *, slow: float = 0.0) -> AsyncApp:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url)
    bolt = AsyncApp(client=client, request_verification_enabled=False)

    @bolt.command("/echo")
    async def echo(ack: AsyncAck, command: dict[str, Any]) -> None:
        seen.append(command)
        await asyncio.sleep(slow)
        await ack(text=f"echo: {command['text']}", response_type="ephemeral")

    @bolt.action("press")
    async def press(ack: AsyncAck, body: dict[str, Any]) -> None:
        seen.append(body)
        await ack()

    @bolt.event("reaction_added")
    async def reacted(event: dict[str, Any]) -> None:
        seen.append(event)

    return bolt


async def test_the_real_client_connects_with_the_app_token_and_acks_with_a_payload(
    fake: FakeSlack,
) -> None:
    seen: list[dict[str, Any]] = []
    async with connected(fake, echo_app(fake, seen)):
        [opened] = fake.calls_to("apps.connections.open")
        assert opened.token == APP_TOKEN
        sender = SocketSender(fake)

        answer = await sender.slash_command("hello", command="/echo")

        assert answer.status == 200
        assert answer.json() == {"text": "echo: hello", "response_type": "ephemeral"}
        assert answer.elapsed < 0.5
        [ack] = fake.socket.acks
        assert ack.payload == answer.json()
        assert ack.delay is not None
        assert not ack.late
        assert [c["text"] for c in seen] == ["hello"]
        [envelope] = fake.socket.envelopes
        assert (envelope.type, envelope.accepts_response_payload) == ("slash_commands", True)


async def test_a_bot_token_cannot_open_a_socket_and_an_app_token_cannot_post(
    fake: FakeSlack,
) -> None:
    with pytest.raises(SlackApiError) as refused:
        await AsyncWebClient(base_url=fake.api_url).apps_connections_open(app_token=BOT_TOKEN)
    assert refused.value.response["error"] == "not_allowed_token_type"
    app_client = AsyncWebClient(token=APP_TOKEN, base_url=fake.api_url)
    with pytest.raises(SlackApiError) as refused:
        await app_client.chat_postMessage(channel="C0CAMPAIGN", text="hi")
    assert refused.value.response["error"] == "not_allowed_token_type"


async def test_a_late_ack_is_recorded_as_missed_and_late(fake: FakeSlack) -> None:
    fake.socket.ack_timeout = 0.1  # Slack's 3 s, scaled down
    seen: list[dict[str, Any]] = []
    async with connected(fake, echo_app(fake, seen, slow=0.2)):
        answer = await SocketSender(fake).slash_command("slow", command="/echo")

        assert answer.status == 504
        missed = (await fake.wait_for(lambda f: f.socket.missed))[0]  # the fake's own clock
        ack = await fake.socket.wait_for_ack(missed, timeout=2)
        assert ack is not None
        assert ack.late


@pytest.mark.parametrize("reason", ["refresh_requested", "warning", "link_disabled"])
async def test_after_a_disconnect_message_the_client_reconnects_and_gets_envelopes(
    fake: FakeSlack, reason: str
) -> None:
    seen: list[dict[str, Any]] = []
    async with connected(fake, echo_app(fake, seen)):
        await fake.socket.disconnect(reason)
        second = await fake.socket.wait_connected(2)
        assert len(fake.calls_to("apps.connections.open")) == 2

        answer = await SocketSender(fake).slash_command("again", command="/echo")

        assert answer.status == 200
        assert fake.socket.acks[-1].connection == second.number
        await asyncio.sleep(0.05)
        assert len(fake.socket.connections(open_only=True)) == 1  # the old one was closed


async def test_after_a_drop_what_was_sent_meanwhile_arrives_on_the_new_connection(
    fake: FakeSlack,
) -> None:
    seen: list[dict[str, Any]] = []
    async with connected(fake, echo_app(fake, seen)):
        await fake.socket.drop()
        assert not fake.socket.connected
        envelope = await fake.socket.deliver("interactive", {"type": "block_actions",
            "actions": [{"action_id": "press", "block_id": "b", "type": "button"}],
            "user": {"id": "U1"}, "team": {"id": "T1"}})  # fmt: skip

        ack = await fake.socket.wait_for_ack(envelope, timeout=3)

        assert ack is not None
        assert ack.connection == (await fake.socket.wait_connected(2)).number
        assert len(seen) == 1


async def test_an_envelope_not_acked_before_a_drop_is_delivered_again(fake: FakeSlack) -> None:
    fake.socket.ack_timeout = 0.5  # Slack's 3 s, scaled down
    seen: list[dict[str, Any]] = []
    async with connected(fake, echo_app(fake, seen, slow=0.2)):
        sending = asyncio.create_task(SocketSender(fake).slash_command("x", command="/echo"))
        await fake.wait_for(lambda f: seen)  # the listener runs, its ack is not sent yet
        fake.socket.refuse_connections()  # down for longer than Slack waits for the ack
        await fake.socket.drop()
        await asyncio.sleep(0.7)
        fake.socket.refuse_connections(False)

        await fake.socket.wait_connected(2)
        first, retry = await fake.wait_for(
            lambda f: e if len(e := f.socket.envelopes) == 2 else None, timeout=3
        )
        assert retry.payload == first.payload
        assert (retry.retry_attempt, retry.retry_reason) == (1, "timeout")
        assert retry.envelope_id != first.envelope_id
        assert await fake.socket.wait_for_ack(retry, timeout=3) is not None
        late = fake.socket.ack_for(first)  # slack_sdk held it until it was connected again
        assert late is not None
        assert late.late
        assert [e.envelope_id for e in fake.socket.missed] == [first.envelope_id]
        assert len(seen) == 2  # the app handled it twice: deduplicating is the app's job
        await sending


async def test_an_ack_sent_on_the_new_connection_counts(fake: FakeSlack) -> None:
    fake.socket.ack_timeout = 1.0
    seen: list[dict[str, Any]] = []
    async with connected(fake, echo_app(fake, seen, slow=0.2)):
        sending = asyncio.create_task(SocketSender(fake).slash_command("x", command="/echo"))
        await fake.wait_for(lambda f: seen)
        await fake.socket.drop()  # the client reconnects before it acks

        answer = await sending

        assert answer.status == 200
        [envelope] = fake.socket.envelopes
        ack = fake.socket.ack_for(envelope)
        assert ack is not None
        assert ack.connection == (await fake.socket.wait_connected(2)).number
        assert envelope.sent_at is not None
        await asyncio.sleep(max(0.0, envelope.sent_at + 1.1 - time.monotonic()))
        assert len(fake.socket.envelopes) == 1  # nothing delivered again
        assert fake.socket.missed == []
