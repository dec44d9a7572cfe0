"""The fake Slack, driven by the real slack_sdk and slack-bolt clients."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    ADMIN_ID,
    BOT_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    CHANNEL_ID,
    SIGNING_SECRET,
    TEAM_ID,
    TINY_PNG,
    UPLOAD,
    USER_ID,
    FakeSlack,
    SlackSender,
    running_fake_slack,
    serve_bolt_app,
    sign,
)

BUTTON_ID = re.compile(
    r"^ob:(?P<action>upscale|variation|reroll|cancel):(?P<gen>[0-9a-f-]{36}):\d$"
)


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeSlack]:
    with running_fake_slack() as fake:
        yield fake


@pytest.fixture
def fake(running_fake: FakeSlack) -> Iterator[FakeSlack]:
    running_fake.reset()
    yield running_fake
    assert running_fake.bugs == []


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)


# -- the Web API through AsyncWebClient -----------------------------------------------------------


async def test_auth_test_answers_like_slack(fake: FakeSlack, client: AsyncWebClient) -> None:
    answer = await client.auth_test()
    assert answer["ok"] is True
    assert (answer["team_id"], answer["user_id"], answer["bot_id"]) == (
        TEAM_ID,
        BOT_USER_ID,
        BOT_ID,
    )
    [call] = fake.calls_to("auth.test")
    assert call.token == BOT_TOKEN

    with pytest.raises(SlackApiError) as wrong:
        await AsyncWebClient(token="xoxb-wrong", base_url=fake.api_url).auth_test()
    assert wrong.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as missing:
        await AsyncWebClient(base_url=fake.api_url).auth_test()
    assert missing.value.response["error"] == "not_authed"


async def test_messages_are_posted_edited_reacted_and_deleted(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*queued* (#3)"}}]
    posted = await client.chat_postMessage(channel=CHANNEL_ID, text="queued", blocks=blocks)
    ts = posted["ts"]
    assert posted["channel"] == CHANNEL_ID
    assert posted["message"]["blocks"] == blocks
    assert posted["message"]["bot_id"] == BOT_ID

    reply = await client.chat_postMessage(channel=CHANNEL_ID, text="in thread", thread_ts=ts)
    assert [m.ts for m in fake.thread(CHANNEL_ID, ts)] == [ts, reply["ts"]]

    updated = await client.chat_update(channel=CHANNEL_ID, ts=ts, text="running 40%")
    assert updated["ts"] == ts
    message = fake.message(CHANNEL_ID, ts)
    assert message.text == "running 40%"
    assert [version.text for version in message.edits] == ["queued"]
    assert message.blocks == blocks  # an update without blocks keeps them

    await client.reactions_add(channel=CHANNEL_ID, timestamp=ts, name="white_check_mark")
    fake.react(CHANNEL_ID, ts, "star", USER_ID)
    got = await client.reactions_get(channel=CHANNEL_ID, timestamp=ts)
    assert {r["name"]: r["users"] for r in got["message"]["reactions"]} == {
        "white_check_mark": [BOT_USER_ID],
        "star": [USER_ID],
    }
    with pytest.raises(SlackApiError, match="already_reacted"):
        await client.reactions_add(channel=CHANNEL_ID, timestamp=ts, name="white_check_mark")
    await client.reactions_remove(channel=CHANNEL_ID, timestamp=ts, name="white_check_mark")
    assert fake.message(CHANNEL_ID, ts).reactions == {"star": [USER_ID]}

    await client.chat_delete(channel=CHANNEL_ID, ts=reply["ts"])
    assert [m.ts for m in fake.messages(CHANNEL_ID)] == [ts]

    with pytest.raises(SlackApiError, match="channel_not_found"):
        await client.chat_postMessage(channel="C0NOPE", text="x")
    with pytest.raises(SlackApiError, match="message_not_found"):
        await client.chat_update(channel=CHANNEL_ID, ts="1.000001", text="x")
    with (
        pytest.warns(UserWarning, match="`text` argument is missing"),
        pytest.raises(SlackApiError, match="no_text"),
    ):
        await client.chat_postMessage(channel=CHANNEL_ID)
    fake.add_channel("C0NOTJOIN", "elsewhere", is_member=False)
    with pytest.raises(SlackApiError, match="not_in_channel"):
        await client.chat_postMessage(channel="C0NOTJOIN", text="x")


async def test_files_upload_v2_lands_in_the_thread_with_its_bytes(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    parent = await client.chat_postMessage(channel=CHANNEL_ID, text="a sneaker on a beach")
    answer = await client.files_upload_v2(
        channel=CHANNEL_ID,
        thread_ts=parent["ts"],
        content=TINY_PNG,
        filename="grid.png",
        title="Grid",
        initial_comment="Here is your grid",
    )

    assert answer["file"]["name"] == "grid.png"
    assert answer["file"]["mimetype"] == "image/png"
    [stored] = fake.files
    assert stored.data == TINY_PNG
    assert (stored.channels, stored.thread_ts, stored.title) == ([CHANNEL_ID], parent["ts"], "Grid")
    [_, share] = fake.thread(CHANNEL_ID, parent["ts"])
    assert (share.files, share.text, share.subtype) == (
        [stored.id],
        "Here is your grid",
        "file_share",
    )
    assert [c.method for c in fake.calls] == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        UPLOAD,
        "files.completeUploadExternal",
    ]
    assert fake.calls_to(UPLOAD)[0].files["file"] == TINY_PNG


async def test_a_failed_upload_step_leaves_the_file_pending(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.fail_next(UPLOAD, status=500)
    with pytest.raises(SlackRequestError, match="status: 500"):
        await client.files_upload_v2(channel=CHANNEL_ID, content=TINY_PNG, filename="grid.png")
    assert fake.files == []
    assert [f.name for f in fake.pending_files] == ["grid.png"]


async def test_an_upload_without_a_channel_is_private(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    answer = await client.files_upload_v2(content=TINY_PNG, filename="grid.png", title="Grid")

    [stored] = fake.files
    assert answer["file"]["id"] == stored.id
    assert (answer["file"]["channels"], answer["file"]["shares"]) == ([], {})
    assert (stored.data, stored.channels, stored.message_ts) == (TINY_PNG, [], None)
    assert fake.messages(CHANNEL_ID) == []  # shared nowhere: no message
    [complete] = fake.calls_to("files.completeUploadExternal")
    assert complete.params.keys() & {"channel_id", "channels", "thread_ts"} == set()


def _image(slack_file: dict[str, str]) -> list[dict[str, Any]]:
    return [{"type": "image", "slack_file": slack_file, "alt_text": "the grid"}]


async def test_image_blocks_show_files_the_bot_can_see(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    mine = (await client.files_upload_v2(content=TINY_PNG, filename="grid.png"))["file"]
    by_id = await client.chat_postMessage(
        channel=CHANNEL_ID, text="grid", blocks=_image({"id": mine["id"]})
    )
    assert by_id["message"]["blocks"] == _image({"id": mine["id"]})
    for url in (mine["url_private"], mine["permalink"]):
        await client.chat_postMessage(channel=CHANNEL_ID, text="grid", blocks=_image({"url": url}))
    shared = fake.upload_file("theirs.png", TINY_PNG, user=USER_ID, channels=(CHANNEL_ID,))
    await client.chat_postMessage(channel=CHANNEL_ID, text="x", blocks=_image({"id": shared.id}))
    assert len(fake.messages(CHANNEL_ID)) == 4


async def test_image_blocks_with_files_the_bot_cant_show_are_invalid(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    theirs = fake.upload_file("theirs.png", TINY_PNG, user=USER_ID)  # private to the user
    text = fake.upload_file("notes.txt", b"hello", user=BOT_USER_ID)
    fake.add_channel("C0NOTJOIN", "elsewhere", is_member=False)
    elsewhere = fake.upload_file("there.png", TINY_PNG, user=USER_ID, channels=("C0NOTJOIN",))
    for slack_file in (
        {"id": "F0NOSUCH01"},
        {"id": theirs.id},
        {"id": text.id},
        {"id": elsewhere.id},
        {"url": "https://example.com/a.png"},
    ):
        with pytest.raises(SlackApiError) as refused:
            await client.chat_postMessage(channel=CHANNEL_ID, text="x", blocks=_image(slack_file))
        assert refused.value.response["error"] == "invalid_blocks"
        assert refused.value.response["errors"] == [
            "invalid slack file [json-pointer:/blocks/0/slack_file]"
        ]
    with pytest.raises(SlackApiError, match="regex pattern"):
        await client.chat_postMessage(channel=CHANNEL_ID, text="x", blocks=_image({"id": "x"}))
    no_alt = [{"type": "image", "slack_file": {"id": theirs.id}}]
    with pytest.raises(SlackApiError, match="alt_text"):
        await client.chat_postMessage(channel=CHANNEL_ID, text="x", blocks=no_alt)
    assert fake.messages(CHANNEL_ID) == []


async def test_refused_and_deleted_files_make_image_blocks_invalid(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    mine = (await client.files_upload_v2(content=TINY_PNG, filename="grid.png"))["file"]
    fake.refuse_slack_files()
    with pytest.raises(SlackApiError, match="invalid_blocks"):
        await client.chat_postMessage(
            channel=CHANNEL_ID, text="x", blocks=_image({"id": mine["id"]})
        )
    fake.refuse_slack_files(False)
    await client.chat_postMessage(channel=CHANNEL_ID, text="x", blocks=_image({"id": mine["id"]}))

    theirs = fake.upload_file("theirs.png", TINY_PNG, user=USER_ID, channels=(CHANNEL_ID,))
    with pytest.raises(SlackApiError, match="cant_delete_file"):
        await client.files_delete(file=theirs.id)
    await client.files_delete(file=mine["id"])
    with pytest.raises(SlackApiError, match="file_not_found"):
        await client.files_delete(file=mine["id"])
    assert [f.id for f in fake.files] == [theirs.id]
    with pytest.raises(SlackApiError, match="invalid_blocks"):
        await client.chat_postMessage(
            channel=CHANNEL_ID, text="x", blocks=_image({"id": mine["id"]})
        )

    fake.refuse_slack_files()
    fake.reset()  # forgets the refusal too
    again = fake.upload_file("again.png", TINY_PNG, user=BOT_USER_ID)
    await client.chat_postMessage(channel=CHANNEL_ID, text="x", blocks=_image({"id": again.id}))


async def test_users_and_channels(fake: FakeSlack, client: AsyncWebClient) -> None:
    admin = await client.users_info(user=ADMIN_ID)
    assert (admin["user"]["is_admin"], admin["user"]["is_owner"]) == (True, False)
    fake.add_user("U0OWNER01", "olga.owner", is_owner=True)
    owner = await client.users_info(user="U0OWNER01")
    assert owner["user"]["is_owner"] is True
    assert fake.calls_to("users.info")[-1].http_method == "GET"
    with pytest.raises(SlackApiError, match="user_not_found"):
        await client.users_info(user="U0NOBODY1")

    channel = await client.conversations_info(channel=CHANNEL_ID)
    assert channel["channel"]["name"] == "spring-launch"


async def test_ephemerals_and_views(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.chat_postEphemeral(
        channel=CHANNEL_ID, user=USER_ID, text="`--ar 7:3` is not allowed"
    )
    [ephemeral] = fake.ephemerals
    assert (ephemeral.user, ephemeral.text) == (USER_ID, "`--ar 7:3` is not allowed")

    view = {"type": "modal", "title": {"type": "plain_text", "text": "Bind"}, "blocks": []}
    opened = await client.views_open(trigger_id="123.456.abc", view=view)
    assert opened["view"]["id"].startswith("V")
    assert fake.views[0]["title"]["text"] == "Bind"


async def test_a_429_is_retried_by_the_rate_limit_handler(fake: FakeSlack) -> None:
    client = AsyncWebClient(
        token=fake.bot_token,
        base_url=fake.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    fake.fail_next("chat.postMessage", status=429, retry_after=0)
    answer = await client.chat_postMessage(channel=CHANNEL_ID, text="after a wait")
    assert answer["ok"] is True
    first, second = fake.calls_to("chat.postMessage")
    assert (first.status, first.error, second.status) == (429, "ratelimited", 200)
    assert len(fake.messages(CHANNEL_ID)) == 1


async def test_scripted_faults_reach_the_client(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("chat.postMessage", retry_after=30)
    with pytest.raises(SlackApiError) as limited:
        await client.chat_postMessage(channel=CHANNEL_ID, text="x")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "30"

    fake.fail_next("chat.update", error="internal_error")
    with pytest.raises(SlackApiError) as refused:
        await client.chat_update(channel=CHANNEL_ID, ts="1.1", text="x")
    assert (refused.value.response.status_code, refused.value.response["error"]) == (
        200,
        "internal_error",
    )

    fake.fail_next("auth.test", status=500, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as broken:
            await client.auth_test()
        assert broken.value.response.status_code == 500
    assert (await client.auth_test())["ok"] is True


async def test_wait_for_polls_and_times_out(fake: FakeSlack, client: AsyncWebClient) -> None:
    async def later() -> None:
        await asyncio.sleep(0.05)
        await client.chat_postMessage(channel=CHANNEL_ID, text="done")

    task = asyncio.create_task(later())
    [message] = await fake.wait_for(lambda f: f.messages(CHANNEL_ID), timeout=2)
    await task
    assert message.text == "done"
    with pytest.raises(TimeoutError, match=r"chat\.postMessage"):
        await fake.wait_for(lambda f: f.files, timeout=0.05)


# -- a bolt app over its real aiohttp adapter ---------------------------------------------------


@dataclass
class Seen:
    commands: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    action_messages: list[dict[str, Any]] = field(default_factory=list)
    reactions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class BoltUnderTest:
    sender: SlackSender
    seen: Seen


@pytest.fixture
async def bolt(fake: FakeSlack) -> AsyncIterator[BoltUnderTest]:
    app = AsyncApp(
        signing_secret=SIGNING_SECRET,
        client=AsyncWebClient(token=fake.bot_token, base_url=fake.api_url),
    )
    seen = Seen()

    @app.command("/imagine")
    async def imagine(
        ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        await ack("Queued: you are #1")
        seen.commands.append(command)
        gen = uuid.uuid4()
        await client.chat_postMessage(
            channel=command["channel_id"],
            text=f"queued: {command['text']}",
            blocks=[
                {
                    "type": "actions",
                    "block_id": "grid",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": f"ob:upscale:{gen}:1",
                            "text": {"type": "plain_text", "text": "U1"},
                            "value": "1",
                        }
                    ],
                }
            ],
        )
        await respond("working on it")

    @app.action(BUTTON_ID)
    async def button(ack: AsyncAck, action: dict[str, Any], body: dict[str, Any]) -> None:
        await ack()
        seen.actions.append(action)
        seen.action_messages.append(body["message"])

    @app.event("reaction_added")
    async def reacted(ack: AsyncAck, event: dict[str, Any]) -> None:
        await ack()
        seen.reactions.append(event)

    async with serve_bolt_app(app) as url:
        yield BoltUnderTest(SlackSender(url, SIGNING_SECRET, fake), seen)


async def test_a_signed_slash_command_is_acked_and_posts(
    fake: FakeSlack, bolt: BoltUnderTest
) -> None:
    sent = await bolt.sender.slash_command("a sneaker on a beach --ar 16:9")

    assert sent.status == 200
    assert sent.body == "Queued: you are #1"
    assert sent.elapsed < 3.0
    [message] = await fake.wait_for(lambda f: f.messages(CHANNEL_ID))
    assert message.text == "queued: a sneaker on a beach --ar 16:9"
    [response] = await fake.wait_for(lambda f: f.responses)
    assert response.text == "working on it"
    [command] = bolt.seen.commands
    assert (command["user_id"], command["team_id"]) == (USER_ID, TEAM_ID)
    assert command["response_url"].startswith(fake.url)


@pytest.mark.parametrize(
    "tamper",
    [{"bad_signature": True}, {"alter_body": True}, {"age": 301}],
    ids=["bad-signature", "altered-body", "stale-timestamp"],
)
async def test_unsigned_or_stale_requests_are_refused(
    fake: FakeSlack, bolt: BoltUnderTest, tamper: dict[str, Any]
) -> None:
    sent = await bolt.sender.slash_command("x", **tamper)
    assert sent.status == 401
    assert bolt.seen.commands == []
    assert fake.calls_to("chat.postMessage") == []


async def test_a_button_click_reaches_the_regex_listener(
    fake: FakeSlack, bolt: BoltUnderTest
) -> None:
    await bolt.sender.slash_command("a sneaker")
    [grid] = await fake.wait_for(lambda f: f.messages(CHANNEL_ID))
    assert grid.blocks is not None
    action_id = grid.blocks[0]["elements"][0]["action_id"]

    sent = await bolt.sender.block_action(action_id, message_ts=grid.ts, value="1", block_id="grid")

    assert sent.status == 200
    [action] = await fake.wait_for(lambda _: bolt.seen.actions)
    assert (action["action_id"], action["value"], action["type"]) == (action_id, "1", "button")
    assert bolt.seen.action_messages[0]["blocks"] == grid.blocks
    unknown = await bolt.sender.block_action("other:thing", message_ts=grid.ts)
    assert unknown.status == 404


async def test_a_reaction_event_reaches_the_listener(fake: FakeSlack, bolt: BoltUnderTest) -> None:
    ts = (
        await AsyncWebClient(token=fake.bot_token, base_url=fake.api_url).chat_postMessage(
            channel=CHANNEL_ID, text="grid"
        )
    )["ts"]

    sent = await bolt.sender.reaction("one", ts=ts)

    assert sent.status == 200
    [event] = await fake.wait_for(lambda _: bolt.seen.reactions)
    assert (event["reaction"], event["item"], event["user"]) == (
        "one",
        {"type": "message", "channel": CHANNEL_ID, "ts": ts},
        USER_ID,
    )
    assert fake.message(CHANNEL_ID, ts).reactions == {"one": [USER_ID]}


async def test_url_verification_is_answered(bolt: BoltUnderTest) -> None:
    sent = await bolt.sender.url_verification("abc123")
    assert (sent.status, sent.json()) == (200, {"challenge": "abc123"})


def test_signatures_match_slack_sdk() -> None:
    body, timestamp = "command=%2Fimagine&text=hi", "1700000000"
    signature = sign(SIGNING_SECRET, body, timestamp)
    assert signature == SignatureVerifier(SIGNING_SECRET).generate_signature(
        timestamp=timestamp, body=body
    )
