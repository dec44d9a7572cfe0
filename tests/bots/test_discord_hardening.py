"""Discord under malformed interactions: the real discord.py client against the fake Discord on
127.0.0.1 (the harness of ``tests/bots/test_discord.py``) and a real PostgreSQL.

discord.py parses INTERACTION_CREATE in the gateway's read loop; an exception there used to end
the connection for good, so one malformed interaction left the bot deaf to every later one. An
interaction that names no user got as far as the handler, which failed before it knew whom it
was answering (a traceback at error level, and an answer to nobody).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.db import Database
from tests.bots.test_discord import Harness, harness, presets_dir  # noqa: F401 (a fixture)
from tests.network import allowed_hosts

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(allowed_hosts())]

ACTION = "ob:v:00000000-0000-0000-0000-000000000001:2"
GONE = "That result no longer exists, so its buttons can't be used."


@pytest.fixture
async def idle(db: Database, presets_dir: Path, tmp_path: Path) -> AsyncIterator[Harness]:  # noqa: F811
    async with harness(db, presets_dir, tmp_path / "images", worker=False) as running:
        yield running


def _ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records of this test's code (not asyncio's notes on tasks other tests left behind)."""
    return [r for r in caplog.records if r.name != "asyncio"]


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in _ours(caplog) if r.levelno >= logging.ERROR]


def _without_data(payload: dict[str, Any]) -> None:
    del payload["data"]


def _data_a_list(payload: dict[str, Any]) -> None:
    payload["data"] = [1, 2]


def _member_without_user(payload: dict[str, Any]) -> None:
    del payload["member"]["user"]


def _no_member_no_user(payload: dict[str, Any]) -> None:
    del payload["member"]


async def _click(h: Harness) -> Any:
    record = await h.fake.dispatch_component(ACTION)
    await h.fake.wait_for(lambda _: record.callback and record.followups, timeout=5)
    assert record.followups[0].content == GONE
    return record


@pytest.mark.parametrize(
    "damage",
    [_without_data, _data_a_list, _member_without_user, _no_member_no_user],
    ids=["no-data", "data-a-list", "member-without-user", "nobody"],
)
async def test_a_malformed_interaction_is_dropped_and_the_next_one_answered(
    idle: Harness, damage: Callable[[dict[str, Any]], None], caplog: pytest.LogCaptureFixture
) -> None:
    fake = idle.fake
    payload = dict((await _click(idle)).payload)  # a real click's payload, then broken
    payload["id"] = str(int(payload["id"]) + 1)
    payload["token"] += "-2"
    payload["member"] = dict(payload["member"])
    damage(payload)

    with caplog.at_level(logging.WARNING):
        dropped = await fake._dispatch_interaction(payload)
        await _click(idle)

    assert dropped.callback is None
    assert any("ignored malformed interaction" in r.getMessage() for r in caplog.records)
    assert _errors(caplog) == []
