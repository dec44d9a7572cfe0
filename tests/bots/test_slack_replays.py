"""Slack requests delivered more than once: replays inside the signature window, Slack's own
retries (``X-Slack-Retry-Num``), a click delivered twice at once, and a redelivery after the bot
restarted. The real slack-bolt over HTTP against the fake Slack on 127.0.0.1 (the harness of
``tests/bots/test_slack.py``) and a real PostgreSQL.

What must hold: the same request (same ``trigger_id`` / ``action_ts`` / ``event_id``) is
processed once, however often and whenever it comes (the receipt is in PostgreSQL); the copy is
answered 200 with nothing to show; two clicks by a person are two requests.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from core.domain import Actor, Platform
from tests.bots.test_slack import (  # noqa: F401 (fixtures)
    PRESET,
    REVIEWER_ID,
    Harness,
    _button_ids,
    _is_status,
    eventually,
    fake,
    running_fake,
    slack,
)
from tests.fakes.slack import (
    ADMIN_ID,
    CHANNEL_ID,
    TEAM_ID,
    USER_ID,
    block_actions_payload,
    event_callback,
    reaction_event,
    slash_command_form,
)
from tests.network import allowed_hosts

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(allowed_hosts())]

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def _imagine_body(h: Harness, text: str = "a sneaker on a beach") -> str:
    """One /imagine as Slack POSTs it (one trigger_id), to be sent as often as a test likes."""
    form = slash_command_form(
        "/imagine", text, team_id=TEAM_ID, response_url=h.sender.response_url()
    )
    return urlencode(form)


def _click_body(h: Harness, action_id: str, message_ts: str) -> str:
    message = h.fake.message(CHANNEL_ID, message_ts).to_api()
    payload = block_actions_payload(
        action_id, message=message, response_url=h.sender.response_url("actions")
    )
    return urlencode({"payload": json.dumps(payload)})


async def _count(h: Harness, query: str, **params: Any) -> int:
    [row] = await h.sql(query, **params)
    return int(row[0])


async def _generations(h: Harness) -> int:
    return await _count(h, "SELECT count(*) FROM generations")


async def _children(h: Harness, parent: uuid.UUID) -> int:
    return await _count(h, "SELECT count(*) FROM generations WHERE parent_id = :p", p=parent)


def _statuses(h: Harness) -> int:
    return len([m for m in h.bot_messages() if _is_status(m)])


async def _quiet_a_while(h: Harness) -> None:
    """Let whatever a copy might have started run to its end."""
    await h.settled()
    await asyncio.sleep(0.2)
    await h.settled()


@pytest.fixture
def h(slack: Harness) -> Harness:  # noqa: F811
    """Bot, Delivery, worker on demand (``tests.bots.test_slack``)."""
    return slack


@pytest.fixture
def no_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    errors = [r.getMessage() for r in caplog.records if r.levelno >= 40 and r.name != "asyncio"]
    assert errors == []


# --- /imagine -------------------------------------------------------------------------------------


async def test_a_replayed_imagine_makes_one_generation_and_the_copy_is_quiet(
    h: Harness, no_errors: None
) -> None:
    body = _imagine_body(h)

    first = await h.sender.send(body, FORM)
    await eventually(lambda: asyncio.sleep(0, _statuses(h) == 1), "the Queued message")
    replay = await h.sender.send(body, FORM)  # the same signed request, seconds later
    retry = await h.sender.send(body, FORM, retry_num=1)  # Slack's own retry
    await _quiet_a_while(h)

    assert (first.status, first.body) == (200, "")
    assert (replay.status, replay.body) == (200, "")  # 200, so Slack stops retrying
    assert (retry.status, retry.body) == (200, "")
    assert await _generations(h) == 1
    assert _statuses(h) == 1  # no second "Queued" message
    assert h.fake.ephemerals == []  # and no error shown to anyone


async def test_two_copies_at_once_make_one_generation(h: Harness, no_errors: None) -> None:
    body = _imagine_body(h)

    answers = await asyncio.gather(*(h.sender.send(body, FORM) for _ in range(3)))
    await _quiet_a_while(h)

    assert [(a.status, a.body) for a in answers] == [(200, "")] * 3
    assert await _generations(h) == 1
    assert _statuses(h) == 1


async def test_a_retry_after_the_bot_restarted_is_still_caught(h: Harness, no_errors: None) -> None:
    body = _imagine_body(h)
    assert (await h.sender.send(body, FORM)).status == 200
    await eventually(lambda: asyncio.sleep(0, _statuses(h) == 1), "the Queued message")

    await h.stop_bot()
    await h.start_bot()  # a new bolt app: nothing remembered in memory
    retry = await h.sender.send(body, FORM, retry_num=2)
    await _quiet_a_while(h)

    assert (retry.status, retry.body) == (200, "")
    assert await _generations(h) == 1
    assert _statuses(h) == 1


async def test_two_imagines_typed_alike_are_two_requests(h: Harness) -> None:
    for _ in range(2):  # each with its own trigger_id
        assert (await h.sender.send(_imagine_body(h), FORM)).status == 200
    await _quiet_a_while(h)

    assert await _generations(h) == 2


async def test_a_refused_imagine_is_refused_again_and_records_nothing(h: Harness) -> None:
    body = _imagine_body(h, "a shoe --ar 7:3")  # not an aspect the preset offers

    answers = [await h.sender.send(body, FORM) for _ in range(2)]

    assert all(a.status == 200 and "7:3" in a.body for a in answers)  # nothing was kept
    assert await _generations(h) == 0
    assert await _count(h, "SELECT count(*) FROM request_receipts") == 0


# --- buttons --------------------------------------------------------------------------------------


async def test_one_click_delivered_twice_at_once_makes_one_variation(
    h: Harness, no_errors: None
) -> None:
    parent, buttons = await h.finished()
    v2 = _button_ids(buttons)[1][1]
    body = _click_body(h, v2, buttons.ts)
    before = _statuses(h)

    answers = await asyncio.gather(h.sender.send(body, FORM), h.sender.send(body, FORM))
    await eventually(lambda: _children(h, parent), "the variation is queued")
    retry = await h.sender.send(body, FORM, retry_num=1)
    await _quiet_a_while(h)

    assert [a.status for a in [*answers, retry]] == [200, 200, 200]
    assert await _children(h, parent) == 1
    assert _statuses(h) == before + 1
    assert h.fake.ephemerals == []


async def test_two_clicks_on_v2_make_two_variations(h: Harness) -> None:
    parent, buttons = await h.finished()
    v2 = _button_ids(buttons)[1][1]

    for _ in range(2):  # a person clicking twice: two trigger_ids, two action_ts
        assert (await h.sender.block_action(v2, message_ts=buttons.ts)).status == 200

    async def two() -> bool:
        return await _children(h, parent) == 2

    await eventually(two, "two variations are queued")
    await _quiet_a_while(h)
    assert await _children(h, parent) == 2


async def test_a_cancel_delivered_twice_is_answered_once(h: Harness, no_errors: None) -> None:
    generation_id, status = await h.queued("a sneaker")
    [[cancel]] = _button_ids(status)
    body = _click_body(h, cancel, status.ts)

    await h.sender.send(body, FORM)
    await h.wait_status(generation_id, "cancelled")
    await h.sender.send(body, FORM, retry_num=1)
    await _quiet_a_while(h)

    # one "✖ Cancelled." for the person; the copy neither says it again nor "already cancelled"
    assert [e.text for e in h.fake.ephemerals] == ["✖ Cancelled."]


# --- reactions and reports ------------------------------------------------------------------------


async def test_a_reaction_event_retried_after_its_removal_and_a_restart_changes_nothing(
    h: Harness,
) -> None:
    _, buttons = await h.finished()
    added = json.dumps(
        event_callback(reaction_event("reaction_added", "star", channel=CHANNEL_ID, ts=buttons.ts))
    )
    removed = json.dumps(
        event_callback(
            reaction_event("reaction_removed", "star", channel=CHANNEL_ID, ts=buttons.ts)
        )
    )
    favourite = {(USER_ID, "favourite", None)}

    await h.sender.send(added, JSON)
    await eventually(lambda: _has(h, favourite), "the favourite is recorded")
    await h.sender.send(added, JSON, retry_num=1)  # a retry: the same event_id
    await h.settled()
    assert await h.feedback() == favourite
    await h.sender.send(removed, JSON)
    await eventually(lambda: _has(h, set()), "the favourite is retracted")

    await h.stop_bot()
    await h.start_bot()  # nothing in memory orders the events any more
    answer = await h.sender.send(added, JSON, retry_num=3)  # Slack's last retry of the add
    await _quiet_a_while(h)

    assert answer.status == 200
    assert await h.feedback() == set()  # the removal still stands


async def _has(h: Harness, wanted: set[Any]) -> bool:
    return await h.feedback() == wanted


async def test_a_report_command_delivered_twice_posts_one_report(h: Harness) -> None:
    admin = Actor(Platform.SLACK, TEAM_ID, ADMIN_ID, roles=h.app.service.roles_for(
        Platform.SLACK, ADMIN_ID, platform_admin=True))  # fmt: skip
    await h.app.service.create_campaign(admin, "spring", PRESET)
    form = slash_command_form(
        "/imagine-report",
        "spring",
        user_id=REVIEWER_ID,
        team_id=TEAM_ID,
        response_url=h.sender.response_url(),
    )
    body = urlencode(form)

    await h.sender.send(body, FORM)
    await h.fake.wait_for(lambda f: f.files if len(f.files) == 2 else None)
    await h.sender.send(body, FORM, retry_num=1)
    await _quiet_a_while(h)

    assert len(h.fake.files) == 2  # one CSV and one HTML, not two of each
    summaries = [m for m in h.bot_messages() if m.text == "Campaign report: spring"]
    assert len(summaries) == 1
