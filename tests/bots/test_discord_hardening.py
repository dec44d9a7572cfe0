"""Discord under malformed interactions: the real discord.py client against the fake Discord on
127.0.0.1 (the harness of ``tests/bots/test_discord.py``) and a real PostgreSQL.

discord.py parses INTERACTION_CREATE in the gateway's read loop; an exception there used to end
the connection for good, so one malformed interaction left the bot deaf to every later one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.db import Database
from tests.bots.test_discord import Harness, harness, presets_dir  # noqa: F401 (a fixture)
from tests.fakes.discord import MESSAGE_COMPONENT
from tests.network import allowed_hosts

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(allowed_hosts())]

ACTION = "ob:v:00000000-0000-0000-0000-000000000001:2"


@pytest.fixture
async def idle(db: Database, presets_dir: Path, tmp_path: Path) -> AsyncIterator[Harness]:  # noqa: F811
    async with harness(db, presets_dir, tmp_path / "images", worker=False) as running:
        yield running


def _without_data(payload: dict[str, Any]) -> None:
    del payload["data"]


def _member_without_user(payload: dict[str, Any]) -> None:
    del payload["member"]["user"]


def _data_a_list(payload: dict[str, Any]) -> None:
    payload["data"] = [1, 2]


@pytest.mark.parametrize(
    "damage",
    [_without_data, _member_without_user, _data_a_list],
    ids=["no-data", "member-without-user", "data-a-list"],
)
async def test_a_malformed_interaction_is_dropped_and_the_next_one_answered(
    idle: Harness, damage: Callable[[dict[str, Any]], None], caplog: pytest.LogCaptureFixture
) -> None:
    fake = idle.fake
    payload = fake._interaction_base(
        MESSAGE_COMPONENT,
        {"custom_id": ACTION, "component_type": 2},
        user=None,
        channel_id=None,
        guild_id=None,
        locale="en-US",
    )
    damage(payload)
    with caplog.at_level(logging.WARNING):
        dropped = await fake._dispatch_interaction(payload)
        answered = await fake.dispatch_component(ACTION)
        await fake.wait_for(lambda _: answered.callback and answered.followups, timeout=5)

    assert dropped.callback is None
    assert (
        answered.followups[0].content
        == "That result no longer exists, so its buttons can't be used."
    )
    assert any("ignored malformed interaction" in r.getMessage() for r in caplog.records)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
