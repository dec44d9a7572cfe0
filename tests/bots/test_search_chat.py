"""``/imagine-search`` and the search card's buttons through the real chat clients against the
fake platforms, on real PostgreSQL (the Slack harness of ``test_slack``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.bootstrap import App, load_brand_presets, service_config
from core.db import Database
from core.db.uow import sql_uow_factory
from core.engines.fake import FakeEngine
from core.memory.store import MemoryStore
from core.service import Service
from core.settings import Settings
from core.storage.local import LocalImageStore
from tests.bots.test_slack import PRESET, PRESET_YAML, Harness, eventually
from tests.bots.test_slack import fake as fake
from tests.bots.test_slack import running_fake as running_fake
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, USER_ID, Ephemeral, FakeSlack
from tests.network import allowed_hosts

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(allowed_hosts())]


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
    )
    store = LocalImageStore(tmp_path / "images")
    service = Service(
        sql_uow_factory(db),
        load_brand_presets(settings),
        service_config(settings),
        memory=MemoryStore(db, store),
    )
    harness = Harness(
        fake, App(settings, db, service, store), db, store, FakeEngine(step_delay=0.0)
    )
    await harness.start_bot()
    try:
        yield harness
    finally:
        await harness.close()


def _buttons(ephemeral: Ephemeral) -> dict[str, str]:
    return {
        e["text"]["text"]: e["action_id"]
        for b in ephemeral.blocks or []
        if b.get("type") == "actions"
        for e in b["elements"]
    }


async def test_slack_search_card_and_more_like_this(slack: Harness) -> None:
    blue, _ = await slack.finished("a blue square on a red background")
    await slack.finished("a yellow circle on a green background")
    before = len(slack.fake.ephemerals)
    sent = await slack.sender.slash_command("blue square --limit 3", command="/imagine-search")
    assert sent.status == 200

    async def card() -> list[Ephemeral]:
        return [e for e in slack.fake.ephemerals[before:] if e.blocks and _buttons(e)]

    [shown] = await eventually(card, "the search card is shown")
    assert shown.user == USER_ID
    assert "blue square" in (shown.blocks or [])[0]["text"]["text"]
    assert "yellow" not in str(shown.blocks)
    assert any(b.get("type") == "image" for b in shown.blocks or [])  # the thumbnails
    buttons = _buttons(shown)
    assert set(buttons) == {"Open 1", "Open 2", "Open 3", "Like 1", "Like 2", "Like 3"}
    like = buttons["Like 2"]
    assert like.startswith(f"ob:l:{blue}:")
    before = len(slack.fake.ephemerals)
    await slack.sender.block_action(like, message_ts=shown.message_ts)

    async def again() -> list[Ephemeral]:
        return [e for e in slack.fake.ephemerals[before:] if e.blocks and _buttons(e)]

    [similar] = await eventually(again, "the more-like-this card is shown")
    first_line = similar.blocks[0]["text"]["text"].splitlines()[1]  # type: ignore[index]
    index = like.rsplit(":", 1)[1]
    assert f"{blue}:{index}" in first_line  # the image itself comes first
    assert uuid.UUID(like.split(":")[2]) == blue
