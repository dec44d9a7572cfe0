"""Discord interactions delivered more than once, malformed interactions and a channel deleted
while its job runs: the real discord.py client against the fake Discord on 127.0.0.1 (the
harness of ``tests/bots/test_discord.py``) and a real PostgreSQL.

What must hold: one interaction (one id) is processed once, however often the gateway delivers
it and across a restart of the bot (the receipt is in PostgreSQL), and the copy says nothing;
two clicks by a person are two interactions; a malformed interaction gets a handled answer (or
is dropped with a warning) and the bot carries on; a result whose channel is gone is given up.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from core.db import Database
from tests.bots.test_discord import (  # noqa: F401 (fixtures)
    Harness,
    eventually,
    finished,
    harness,
    presets_dir,
    private_text,
    status_generation,
)
from tests.network import allowed_hosts

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(allowed_hosts())]


@pytest.fixture
async def idle(db: Database, presets_dir: Path, tmp_path: Path) -> AsyncIterator[Harness]:  # noqa: F811
    async with harness(db, presets_dir, tmp_path / "images", worker=False) as running:
        yield running


@pytest.fixture
async def h(db: Database, presets_dir: Path, tmp_path: Path) -> AsyncIterator[Harness]:  # noqa: F811
    async with harness(db, presets_dir, tmp_path / "images", worker=True) as running:
        yield running


@pytest.fixture
def no_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    yield
    errors = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name != "asyncio"
    ]
    assert errors == []


async def _sql(h: Harness, query: str, **params: Any) -> list[Any]:
    async with h.db.engine.connect() as conn:
        return list(await conn.execute(text(query), params))


async def _generations(h: Harness) -> int:
    [row] = await _sql(h, "SELECT count(*) FROM generations")
    return int(row[0])


async def _children(h: Harness, parent: uuid.UUID) -> int:
    [row] = await _sql(h, "SELECT count(*) FROM generations WHERE parent_id = :p", p=parent)
    return int(row[0])


async def _settle(h: Harness) -> None:
    await asyncio.sleep(0.3)


# --- /imagine -------------------------------------------------------------------------------------


async def test_an_interaction_delivered_again_makes_one_generation(
    idle: Harness, no_errors: None
) -> None:
    first, _ = await idle.imagine("a lighthouse")

    copy = await idle.fake.redeliver_interaction(first)  # its acknowledgement accepted
    await idle.fake.wait_for(lambda fake: finished(fake, copy))
    await _settle(idle)

    assert await _generations(idle) == 1
    assert len(idle.status_messages()) == 1  # no second "Queued" message
    assert copy.followups == []  # and nothing said privately


async def test_a_copy_whose_acknowledgement_is_refused_is_quiet(
    idle: Harness, no_errors: None
) -> None:
    record = await idle.fake.dispatch_slash_command(
        "imagine", {"prompt": "a harbour"}, user=idle.user("ben")
    )
    await idle.fake.redeliver_interaction(record, accept_callback=False)  # at once
    await idle.fake.wait_for(lambda fake: finished(fake, record))
    await _settle(idle)

    assert await _generations(idle) == 1
    assert len(idle.status_messages()) == 1
    refused = [c for c in record.callbacks if not c.accepted]
    assert [c.error_code for c in refused] == [40060]  # Discord said "already acknowledged" once


async def test_a_redelivery_after_a_restart_is_still_caught(idle: Harness, no_errors: None) -> None:
    first, _ = await idle.imagine("a windmill")
    await idle.stop_bot()
    await idle.start_bot()  # a new client: nothing remembered in memory

    copy = await idle.fake.redeliver_interaction(first)
    await idle.fake.wait_for(lambda fake: finished(fake, copy))
    await _settle(idle)

    assert await _generations(idle) == 1
    assert len(idle.status_messages()) == 1


# --- buttons --------------------------------------------------------------------------------------


async def test_a_click_delivered_twice_makes_one_variation_and_two_clicks_two(
    h: Harness, no_errors: None
) -> None:
    _, gid = await h.imagine("a red bicycle")
    grid = await h.result(gid)
    v2 = f"ob:v:{gid}:2"

    click = await h.click(v2, grid.id)
    # the variation is recorded (its "Queued" message may already be gone again under load)
    await eventually(lambda: _at_least(h, gid, 1))
    copy = await h.fake.redeliver_interaction(click)
    await h.fake.wait_for(lambda _: copy.callback)
    await _settle(h)
    assert await _children(h, gid) == 1
    assert copy.followups == []

    await h.click(v2, grid.id)  # the person clicks V2 again: a new interaction
    await eventually(lambda: _at_least(h, gid, 2))
    assert await _children(h, gid) == 2


async def _at_least(h: Harness, parent: uuid.UUID, wanted: int) -> bool:
    return await _children(h, parent) >= wanted


async def test_a_cancel_delivered_twice_is_answered_once(idle: Harness, no_errors: None) -> None:
    _, gid = await idle.imagine("a sneaker")
    [queued] = idle.status_messages()

    click = await idle.click(f"ob:x:{gid}:0", queued.id)
    await idle.fake.wait_for(lambda _: click.followups)
    copy = await idle.fake.redeliver_interaction(click)
    await idle.fake.wait_for(lambda _: copy.callback)
    await _settle(idle)

    assert private_text(click) == "✖ Cancelled."
    assert copy.followups == []  # not "This job has already been cancelled."


# --- reactions ------------------------------------------------------------------------------------


async def test_a_reaction_delivered_twice_is_one_favourite(h: Harness, no_errors: None) -> None:
    """Gateway reactions carry no id of their own: a copy of an addition is harmless because a
    favourite is one row per user, target and kind (the copy changes nothing)."""
    _, gid = await h.imagine("a kite")
    result = await h.result(gid)
    ben = str(h.user("ben").id)

    payload = await h.fake.dispatch_reaction_add(result.id, "⭐", h.user("ben").id)
    await h.fake.dispatch("MESSAGE_REACTION_ADD", payload)
    await eventually(lambda: _handled(h, 2))

    assert await h.feedback(gid) == {("favourite", None, ben)}


async def _handled(h: Harness, count: int) -> bool:
    await asyncio.sleep(0)
    return h.bot.reactions_handled >= count


# --- malformed interactions -----------------------------------------------------------------------


def _custom_id_not_ours(payload: dict[str, Any]) -> None:
    payload["data"] = {"custom_id": "someone-elses-button", "component_type": 2}


def _custom_id_a_number(payload: dict[str, Any]) -> None:
    payload["data"] = {"custom_id": 12345, "component_type": 2}


def _id_not_a_snowflake(payload: dict[str, Any]) -> None:
    payload["id"] = "not-a-number"


def _our_prefix_bad_uuid(payload: dict[str, Any]) -> None:
    payload["data"] = {"custom_id": "ob:v:not-a-uuid:2", "component_type": 2}


NOT_OURS = "That button isn't one of onbrand's."


@pytest.mark.parametrize(
    ("damage", "answer"),
    [
        (_custom_id_not_ours, NOT_OURS),
        (_our_prefix_bad_uuid, NOT_OURS),
        (_custom_id_a_number, None),  # discord.py can't read it: dropped with a warning
        (_id_not_a_snowflake, None),
    ],
    ids=["not-ours", "ours-but-bad-uuid", "custom-id-a-number", "id-not-a-snowflake"],
)
async def test_a_malformed_click_is_answered_or_dropped_and_the_bot_carries_on(
    idle: Harness, damage: Any, answer: str | None, no_errors: None
) -> None:
    _, gid = await idle.imagine("a balloon")
    sample = await idle.click(f"ob:u:{uuid.UUID(int=1)}:1", None)  # a real click's payload
    payload = dict(sample.payload)
    payload["id"] = str(int(payload["id"]) + 7)
    payload["token"] += "-x"
    damage(payload)

    if answer is None:
        await idle.fake.dispatch("INTERACTION_CREATE", payload)
    else:
        record = await idle.fake._dispatch_interaction(payload)
        await idle.fake.wait_for(lambda _: record.followups)
        assert private_text(record) == answer
    await _settle(idle)
    _, later = await idle.imagine("still listening")  # the bot carries on

    assert later != gid


# --- a channel deleted while its job runs ---------------------------------------------------------


async def test_a_result_for_a_deleted_channel_is_given_up_not_retried(idle: Harness) -> None:
    _, gid = await idle.imagine("a sandcastle")
    idle.fake.delete_channel(idle.channel_id)  # deleted while the job waits
    idle.start_worker()

    async def given_up() -> Any:
        rows = await _sql(idle, "SELECT undeliverable FROM generations WHERE id = :g", g=gid)
        return rows[0].undeliverable

    why = await eventually(given_up)
    await asyncio.sleep(0.5)  # two sweeps

    assert "404" in why
    posts = idle.fake.requests_matching("POST /channels/*/messages")
    assert [p.status for p in posts].count(404) == 1  # tried once, never again


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ([], "an option is missing or unknown"),
        ([{"name": "prompt", "type": 3, "value": 5}], "option “prompt” should be text"),
        (
            [{"name": "prompt", "type": 3, "value": "a kite"}, {"name": "seed", "type": 4}],
            "option “seed” has no value",
        ),
        (
            [{"name": "prompt", "type": 3, "value": "a"}, {"name": "n", "type": 4, "value": True}],
            "option “n” should be a whole number",
        ),
        ({"prompt": "a kite"}, None),  # well formed: for comparison
    ],
    ids=["no-prompt", "prompt-a-number", "seed-without-value", "n-a-bool", "well-formed"],
)
async def test_a_malformed_command_is_answered_privately(
    idle: Harness, options: Any, problem: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    record = await idle.fake.dispatch_slash_command("imagine", options, user=idle.user("ben"))
    await idle.fake.wait_for(lambda fake: finished(fake, record) or record.callbacks)
    await idle.fake.wait_for(lambda fake: finished(fake, record) or record.original)
    await _settle(idle)

    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert [e for e in errors if "Task was destroyed" not in e] == []
    if problem is None:
        assert len(idle.status_messages()) == 1
        return
    [answer] = [c for c in record.callbacks if c.accepted] + record.followups
    text = answer.data["content"] if hasattr(answer, "data") else answer.content
    assert f"({problem})" in text
    assert await _generations(idle) == 0
