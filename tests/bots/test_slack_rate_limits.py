"""Slack saying 429 (with Retry-After) or 5xx to the bot's Web API calls: every result still
reaches the channel exactly once.

Short refusals are ridden out by slack_sdk's retry handlers that ``bots.slack.slack_client``
configures (429: after Retry-After, up to 3 times; 5xx: once; connection errors: twice), except
that a post whose answer was lost is looked for before it is posted again (``bots.slack.once``);
longer outages by ``core.delivery``'s attempts with back-off and, at last, giving up with a
reason.
A status edit Slack refuses for a passing reason is sent again a few times (``SlackSink``).
The real bolt app and Delivery against the fake Slack, over HTTP (the transport is beside the
point here; ``test_slack_transports`` runs the scenarios over both).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bots.slack import SlackSink, once, slack_client
from bots.slack.sink import EDIT_TRIES
from core.db import Database
from core.domain import MessageRef, Platform, ResultCard
from core.settings import Settings
from tests.bots.test_slack import OTHER_ID, _button_ids, _has_buttons, _text, eventually
from tests.bots.test_slack_transports import Transported, harness
from tests.bots.test_slack_transports import fake as fake  # a fixture
from tests.bots.test_slack_transports import running_fake as running_fake
from tests.fakes.slack import BOT_TOKEN, CHANNEL_ID, UPLOAD, FakeSlack
from tests.network import allowed_hosts

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(allowed_hosts())]


@pytest.fixture
async def slack(db: Database, fake: FakeSlack, tmp_path: Path) -> AsyncIterator[Transported]:
    async with harness(db, fake, tmp_path, "http") as running:
        yield running


def _statuses(fake: FakeSlack, method: str) -> list[int]:
    return [c.status for c in fake.calls_to(method)]


async def _delivered_once(slack: Transported, generation_id: object) -> None:
    await slack.result_message(generation_id)  # type: ignore[arg-type]
    await asyncio.sleep(0.5)  # more sweeps, more events: still once
    assert len(slack.buttons_messages()) == 1
    assert len(slack.fake.files) == 1


async def test_a_429_on_every_call_of_a_result_is_waited_out_and_posted_once(
    slack: Transported,
) -> None:
    fake = slack.fake
    fake.fail_next("chat.postMessage", status=429, retry_after=0)  # the Queued message
    generation_id, status = await slack.queued("a sneaker")
    for method in ("chat.update", "files.getUploadURLExternal", "files.completeUploadExternal"):
        fake.fail_next(method, status=429, retry_after=0)  # each waits 0–1 s (the jitter)
    fake.fail_next("chat.postMessage", status=429, retry_after=1)  # the result: wait 1 s

    await slack.start_worker()
    await _delivered_once(slack, generation_id)

    assert _statuses(fake, "chat.postMessage") == [429, 200, 429, 200]
    refused, posted = fake.calls_to("chat.postMessage")[2:]
    assert posted.at - refused.at >= 1.0  # Retry-After was honoured
    for method in ("files.getUploadURLExternal", "files.completeUploadExternal"):
        assert _statuses(fake, method) == [429, 200]
    assert _statuses(fake, UPLOAD) == [200]
    assert _statuses(fake, "chat.update")[0] == 429
    closed = await fake.wait_for(
        lambda f: m if _text(m := f.message(CHANNEL_ID, status.ts)).startswith("✅") else None
    )
    assert not _has_buttons(closed)


async def test_an_ephemeral_answer_is_sent_once_after_a_429(slack: Transported) -> None:
    generation_id, status = await slack.queued("a sneaker")
    [[cancel]] = _button_ids(status)
    slack.fake.fail_next("chat.postEphemeral", status=429, retry_after=0)

    await slack.sender.block_action(cancel, message_ts=status.ts, user_id=OTHER_ID)

    [refusal] = await slack.fake.wait_for(lambda f: f.ephemerals)
    assert refusal.user == OTHER_ID
    assert _statuses(slack.fake, "chat.postEphemeral") == [429, 200]
    await asyncio.sleep(0.1)
    assert len(slack.fake.ephemerals) == 1
    assert await slack.status(generation_id) == "queued"


async def test_a_long_outage_backs_off_and_the_result_is_posted_once_when_slack_is_back(
    slack: Transported,
) -> None:
    generation_id, _ = await slack.queued("a sneaker")
    slack.fake.fail_next("files.completeUploadExternal", status=503, times=2)  # one attempt
    slack.fake.fail_next("chat.postMessage", error="internal_error")  # and the next

    await slack.start_worker()
    await _delivered_once(slack, generation_id)

    completes = _statuses(slack.fake, "files.completeUploadExternal")
    assert completes == [503, 503, 200]  # each time: the call and the client's one retry
    posts = slack.fake.calls_to("chat.postMessage")[1:]  # after the Queued one
    assert [c.error for c in posts] == ["internal_error", None]
    [row] = await slack.sql(
        "SELECT delivery_attempts, undeliverable FROM generations WHERE id = :g", g=generation_id
    )
    assert (row.delivery_attempts, row.undeliverable) == (2, None)
    assert len(slack.fake.calls_to("files.getUploadURLExternal")) == 2  # not a third time
    assert len(slack.fake.pending_files) == 1  # the first, never completed: nobody sees it


async def test_a_result_posted_whose_answer_was_lost_is_found_not_posted_again(
    slack: Transported,
) -> None:
    """Slack posted the result, then answered 500: the channel is read back and the message
    found there is the result (slack_sdk's blind retry posted it twice)."""
    generation_id, _ = await slack.queued("a sneaker")
    slack.fake.fail_next("chat.postMessage", status=500, after=True)

    await slack.start_worker()
    await _delivered_once(slack, generation_id)

    assert _statuses(slack.fake, "chat.postMessage") == [200, 500]  # Queued, the lost answer
    [lookup] = slack.fake.calls_to("conversations.history")
    assert lookup.params["include_all_metadata"] in {"1", "true", True}
    [posted] = slack.buttons_messages()
    assert posted.metadata == {
        "event_type": "onbrand_result",
        "event_payload": {"key": str(generation_id)},
    }
    [row] = await slack.sql(
        "SELECT message_id FROM messages WHERE generation_id = :g AND role = 'result'",
        g=generation_id,
    )
    assert row.message_id == posted.ts  # reactions on it count


async def test_a_later_try_looks_for_what_an_earlier_one_posted_before_posting(
    slack: Transported,
) -> None:
    """The first try posted the result but never learnt it (the answer lost, and the lookup
    failing too); the sweep's next try reads the channel first and finds it: nothing is
    uploaded or posted again. (So does a try after a crash between posting and recording.)"""
    generation_id, _ = await slack.queued("a sneaker")
    slack.fake.fail_next("chat.postMessage", status=500, after=True)  # posted, answer lost
    slack.fake.fail_next("conversations.history", status=503, times=2)  # and its client retry
    slack.fake.fail_next("chat.postMessage", error="internal_error")  # the second post: refused

    await slack.start_worker()
    await _delivered_once(slack, generation_id)

    posts = slack.fake.calls_to("chat.postMessage")  # Queued, lost answer, refused: no more
    assert [(c.status, c.error) for c in posts][1:] == [
        (500, "internal_error"),
        (200, "internal_error"),
    ]
    assert len(posts) == 3
    assert _statuses(slack.fake, "conversations.history") == [503, 503, 200]
    assert len(slack.fake.calls_to("files.getUploadURLExternal")) == 1  # not uploaded again
    [row] = await slack.sql(
        "SELECT delivery_attempts, delivery_began_at IS NOT NULL AS began FROM generations "
        "WHERE id = :g",
        g=generation_id,
    )
    assert (row.delivery_attempts, row.began) == (1, True)


async def test_a_queued_message_whose_answer_was_lost_is_shown_once(slack: Transported) -> None:
    slack.fake.fail_next("chat.postMessage", status=503, after=True)
    generation_id, status = await slack.queued("a sneaker")
    await asyncio.sleep(0.3)
    assert [m.ts for m in slack.bot_messages()] == [status.ts]
    [row] = await slack.sql(
        "SELECT message_id FROM messages WHERE generation_id = :g AND role = 'status'",
        g=generation_id,
    )
    assert row.message_id == status.ts


async def test_an_outage_past_the_last_attempt_gives_up_with_a_reason_and_starves_nothing(
    slack: Transported, caplog: pytest.LogCaptureFixture
) -> None:
    slack.delivery.max_attempts = 2
    first, _ = await slack.queued("a sneaker")
    slack.fake.fail_next("chat.postMessage", status=503, times=2)  # one attempt's worth
    slack.fake.fail_next("chat.postMessage", error="internal_error")  # and the next

    with caplog.at_level(logging.ERROR, logger="core.delivery.sweep"):
        await slack.start_worker()
        await slack.wait_status(first, "done")
        query = "SELECT undeliverable FROM generations WHERE id = :g AND undeliverable IS NOT NULL"
        [row] = await eventually(lambda: slack.sql(query, g=first), "the result is given up")

    assert row.undeliverable.startswith("gave up after 2 attempts: SlackApiError")
    assert "internal_error" in row.undeliverable
    assert slack.buttons_messages() == []
    assert any("gave up delivering" in r.getMessage() for r in caplog.records)
    second, _ = await slack.queued("a boot")  # Slack is back: the next one is not held up
    await slack.result_message(second)
    await asyncio.sleep(0.5)
    assert len(slack.buttons_messages()) == 1


def _sink(fake: FakeSlack) -> SlackSink:
    """A sink on the production client (its retry handlers) with a short edit interval."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=SecretStr(BOT_TOKEN),
        SLACK_API_URL=fake.api_url,
    )
    return SlackSink(slack_client(settings), min_interval_s=0.05, updates_per_minute=600, burst=10)


async def _status_message(sink: SlackSink) -> MessageRef:
    posted = await sink.client.chat_postMessage(channel=CHANNEL_ID, text="⏳ Generating… 75%")
    return MessageRef(Platform.SLACK, CHANNEL_ID, str(posted["ts"]))


async def test_a_closing_edit_refused_with_5xx_is_sent_again(fake: FakeSlack) -> None:
    sink = _sink(fake)
    ref = await _status_message(sink)
    fake.fail_next("chat.update", status=503, times=2)  # the call and the client's one retry

    await sink.update_status(ref, ResultCard("✅ Done — the images are below."))

    await fake.wait_for(lambda f: _text(f.message(CHANNEL_ID, ref.message_id)).startswith("✅"))
    assert _statuses(fake, "chat.update") == [503, 503, 200]


async def test_a_status_edit_refused_again_and_again_is_given_up(
    fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    sink = _sink(fake)
    ref = await _status_message(sink)
    fake.fail_next("chat.update", error="internal_error", times=100)  # HTTP 200, ok: false

    with caplog.at_level(logging.WARNING, logger="bots.slack.sink"):
        await sink.update_status(ref, ResultCard("✅ Done — the images are below."))
        await sink.flush(timeout=5)

    assert len(fake.calls_to("chat.update")) == EDIT_TRIES
    [warning] = [r for r in caplog.records if "could not edit" in r.getMessage()]
    assert "internal_error" in warning.getMessage()
    assert sink.pending_edits == 0
    await asyncio.sleep(0.2)
    assert len(fake.calls_to("chat.update")) == EDIT_TRIES


async def test_a_newer_card_replaces_a_refused_one_instead_of_it_being_sent_again(
    fake: FakeSlack,
) -> None:
    sink = _sink(fake)
    ref = await _status_message(sink)
    fake.fail_next("chat.update", error="internal_error", delay=0.2)  # slowly refused

    await sink.update_status(ref, ResultCard("⏳ Generating… 80%"))
    await asyncio.sleep(0.1)  # its first call is on its way
    await sink.update_status(ref, ResultCard("✖ Cancelled."))
    await fake.wait_for_calls("chat.update", 2)
    await sink.flush()

    assert fake.message(CHANNEL_ID, ref.message_id).text == "✖ Cancelled."
    calls = [(c.params.get("text"), c.error) for c in fake.calls_to("chat.update")]
    assert calls == [("⏳ Generating… 80%", "internal_error"), ("✖ Cancelled.", None)]


async def test_a_thread_reply_whose_answer_was_lost_is_found_in_the_thread(
    fake: FakeSlack,
) -> None:
    client = _sink(fake).client
    parent = fake.post_as_user(CHANNEL_ID, "the brief")
    fake.fail_next("chat.postMessage", status=500, after=True)

    channel, ts = await once.post_once(
        client, once.STATUS, "g-1", channel=CHANNEL_ID, thread_ts=parent, since=0, text="🕒"
    )

    [reply] = [m for m in fake.thread(CHANNEL_ID, parent) if m.bot_id]
    assert (channel, ts) == (CHANNEL_ID, reply.ts)
    assert len(fake.calls_to("conversations.replies")) == 1
    assert _statuses(fake, "chat.postMessage") == [500]


async def test_a_post_refused_before_it_was_made_is_made_once_after_the_lookup(
    fake: FakeSlack,
) -> None:
    client = _sink(fake).client
    fake.fail_next("chat.postMessage", status=503)  # not posted

    _, ts = await once.post_once(
        client, once.RESULT, "g-2", channel=CHANNEL_ID, thread_ts=None, since=0, text="🖼"
    )

    assert [m.ts for m in fake.messages(CHANNEL_ID)] == [ts]
    assert _statuses(fake, "chat.postMessage") == [503, 200]
    assert len(fake.calls_to("conversations.history")) == 1
    # the lookup for another generation does not take g-2's message for its own
    fake.fail_next("chat.postMessage", status=500)
    _, other = await once.post_once(
        client, once.RESULT, "g-3", channel=CHANNEL_ID, thread_ts=None, since=0, text="🖼"
    )
    assert [m.ts for m in fake.messages(CHANNEL_ID)] == [ts, other]
