"""``/imagine-search`` and the search card's buttons through the real chat clients against the
fake platforms, on real PostgreSQL (the Slack harness of ``test_slack``)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.bootstrap import App, load_brand_presets, service_config
from core.brand.preset_files import load_presets
from core.db import Database
from core.db.uow import sql_uow_factory
from core.domain import Actor, Platform, Role
from core.engines.fake import FakeEngine
from core.memory.store import MemoryStore
from core.service import Service
from core.service.base import ServiceConfig
from core.settings import Settings
from core.storage.local import LocalImageStore
from tests.bots import test_discord as discord_tests
from tests.bots.test_discord import PRESETS as DISCORD_PRESETS
from tests.bots.test_slack import PRESET, PRESET_YAML, REVIEWER_ID, Harness, T, eventually
from tests.bots.test_slack import fake as fake
from tests.bots.test_slack import running_fake as running_fake
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import (
    ADMIN_ID,
    BOT_TOKEN,
    SIGNING_SECRET,
    TEAM_ID,
    USER_ID,
    Ephemeral,
    FakeSlack,
)
from tests.network import allowed_hosts

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(allowed_hosts())]


def _at_256(preset_yaml: str) -> str:
    """Pictures of 256 px. Two copies of one picture carry different invisible watermarks
    (core.provenance), which move a 64-bit perceptual hash apart: measured over 30 random
    secrets and ids, 8–14 bits at 64 px (past the near-duplicate threshold of 6), 0–6 at
    128 px (at the threshold: flaky), 0–2 at 192 px and above."""
    return preset_yaml.replace('"1:1": [64, 64]', '"1:1": [256, 256]')


@pytest.fixture
def presets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("presets")
    for name, body in DISCORD_PRESETS.items():
        (folder / name).write_text(_at_256(body))
    return folder


@pytest.fixture
async def slack(db: Database, fake: FakeSlack, tmp_path: Path) -> AsyncIterator[Harness]:
    presets_dir = tmp_path / "presets"
    presets_dir.mkdir()
    (presets_dir / f"{PRESET}.yaml").write_text(_at_256(PRESET_YAML))
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
    assert set(buttons) == {f"{word} {n}" for word in ("Open", "Like", "📦") for n in (1, 2, 3)}
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


async def test_slack_warns_a_reviewer_privately_about_a_near_duplicate(slack: Harness) -> None:
    admin = Actor(Platform.SLACK, TEAM_ID, ADMIN_ID, roles=frozenset({Role.ADMIN}))
    for name in ("spring", "autumn"):
        await slack.app.service.create_campaign(admin, name, PRESET)
    # the fake engine's pictures depend on prompt and seed only: the same picture twice
    _, spring = await slack.finished("a red shoe --seed 5 --n 1 --campaign spring")
    _, autumn = await slack.finished("a red shoe --seed 5 --n 1 --campaign autumn")
    before = len(slack.fake.ephemerals)
    await slack.sender.reaction("white_check_mark", ts=spring.ts, user=REVIEWER_ID)
    await slack.settled()
    assert slack.fake.ephemerals[before:] == []  # nothing like it approved elsewhere
    await slack.sender.reaction("white_check_mark", ts=autumn.ts, user=REVIEWER_ID)
    await slack.settled()
    # hashed before their watermarks (core.jobs.finishing): the same picture, the same hash
    hashes = {r.phash for r in await slack.sql("SELECT phash FROM images")}
    assert len(hashes) == 1
    assert None not in hashes
    [warning] = await eventually(
        lambda: _async(slack.fake.ephemerals[before:]), "the reviewer is warned"
    )
    assert warning.user == REVIEWER_ID
    assert warning.text is not None
    assert "near-duplicate" in warning.text
    assert "spring" in warning.text
    assert await slack.feedback() == {(REVIEWER_ID, "approve", 1)}  # both approvals recorded


async def _async(value: T) -> T:
    return value


# --- Discord ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def discord_harness(
    db: Database, presets_dir: Path, images: Path
) -> AsyncIterator[discord_tests.Harness]:
    store = LocalImageStore(images)
    service = Service(
        sql_uow_factory(db),
        load_presets(presets_dir),
        ServiceConfig(default_preset=discord_tests.PRESET),
        memory=MemoryStore(db, store),
    )
    async with FakeDiscord() as fake:
        h = discord_tests.Harness(fake, db, service, store, FakeEngine(step_delay=0.0))
        try:
            await h.start_bot()
            h.start_worker()
            yield h
        finally:
            await h.stop_worker()
            await h.stop_bot()
    assert fake.bugs == []


async def test_discord_search_card_and_more_like_this(
    db: Database, presets_dir: Path, tmp_path: Path
) -> None:
    async with discord_harness(db, presets_dir, tmp_path / "images") as h:
        _, blue = await h.imagine("a blue square on a red background")
        await h.result(blue)
        _, yellow = await h.imagine("a yellow circle on a green background")
        await h.result(yellow)
        ben = h.user("ben")
        record = await h.fake.dispatch_slash_command(
            "imagine-search", {"query": "blue square --limit 2"}, user=ben
        )
        await h.fake.wait_for(lambda fake: discord_tests.finished(fake, record))
        [card] = record.followups
        assert card.flags & discord_tests.FLAG_EPHEMERAL
        assert "blue square" in card.content.splitlines()[1]
        assert "yellow" not in card.content
        assert [f.filename for f in card.files] == ["search.png"]
        like = [c for c in card.custom_ids if c.startswith("ob:l:")]
        assert [c for c in card.custom_ids if c.startswith("ob:o:")]
        assert len(like) == 2
        clicked = await h.click(like[1], card.id)
        await h.fake.wait_for(lambda fake: discord_tests.finished(fake, clicked))
        [similar] = clicked.followups
        assert similar.flags & discord_tests.FLAG_EPHEMERAL
        ref = like[1].removeprefix("ob:l:")
        assert f"`{ref}`" in similar.content.splitlines()[1]  # the image itself comes first
        opened = await h.click(card.custom_ids[0], card.id)
        await h.fake.wait_for(lambda fake: discord_tests.finished(fake, opened))
        [original] = opened.followups
        assert [f.filename for f in original.files] == [
            card.custom_ids[0].removeprefix("ob:o:").replace(":", "-") + ".png"
        ]


async def test_discord_warns_a_reviewer_by_direct_message(
    db: Database, presets_dir: Path, tmp_path: Path
) -> None:
    async with discord_harness(db, presets_dir, tmp_path / "images") as h:
        admin = Actor(Platform.DISCORD, str(h.fake.guild.id), "1", roles=frozenset({Role.ADMIN}))
        for name in ("spring", "autumn"):
            await h.service.create_campaign(admin, name, discord_tests.PRESET)
        results = []
        for campaign in ("spring", "autumn"):  # the same picture in two campaigns
            _, gid = await h.imagine("a red shoe", seed=5, n=1, campaign=campaign)
            results.append(await h.result(gid))
        await h.react(results[0].id, "✅", "ava")
        assert h.fake.dm_channels == {}  # nothing like it approved elsewhere: no message
        await h.react(results[1].id, "✅", "ava")
        await h.fake.wait_for(lambda fake: fake.dm_channels, timeout=10)  # the DM comes after
        [dm] = h.fake.dm_channels
        assert h.fake.dm_channels[dm] == h.user("ava").id
        [warning] = await h.fake.wait_for(lambda fake: fake.messages_in(dm), timeout=10)
        assert "near-duplicate" in warning.content
        assert "spring" in warning.content
