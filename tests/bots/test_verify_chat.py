""" "Verify image" in Slack: the message shortcut on a message with images, through real
slack-bolt against the fake Slack, on real PostgreSQL. The answer is private; campaign and
approval only for the workspace that made the image."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import text

from core.db import Database
from core.provenance import setup
from core.service.verify import verify_for_chat
from core.settings import Settings
from tests.bots.test_discord import finished, harness, presets_dir, private_text  # noqa: F401
from tests.bots.test_slack import Harness, fake, running_fake, slack  # noqa: F401  (fixtures)
from tests.fakes.discord import UploadedFile
from tests.fakes.slack import CHANNEL_ID, TEAM_ID, USER_ID, Ephemeral

pytestmark = pytest.mark.integration


@pytest.fixture
def same_keys(slack: Harness) -> Iterator[None]:  # noqa: F811
    """The worker signs and marks with the bot's provenance (one data directory)."""
    setup.configure(setup.provenance_of(slack.app.settings))
    yield
    setup.configure(None)


def shortcut(harness: Harness, files: list[dict[str, object]], team: str = TEAM_ID) -> dict:  # type: ignore[type-arg]
    return {
        "type": "message_action",
        "callback_id": "ob_verify_image",
        "trigger_id": "1.2.3",
        "team": {"id": team, "domain": "t"},
        "user": {"id": USER_ID, "name": "ann"},
        "channel": {"id": CHANNEL_ID, "name": "general"},
        "message": {"type": "message", "ts": "1700000000.000100", "files": files},
        "response_url": harness.sender.response_url("actions"),
    }


async def answer(harness: Harness, payload: dict, seen: int) -> Ephemeral:  # type: ignore[type-arg]
    sent = await harness.sender.interaction(payload)
    assert sent.status == 200, sent.body
    found = await harness.fake.wait_for(lambda f: f.ephemerals[seen:], timeout=10)
    return found[0]


async def test_verify_image_shortcut_answers_privately(
    slack: Harness,  # noqa: F811
    same_keys: None,
) -> None:
    # 64 px pictures are at the watermark's lower limit (docs/provenance.md); with this seed's
    # picture a random image id reads back 100 times in 100 (measured), so the test is stable
    generation_id, _ = await slack.finished("a red circle --seed 5")
    [row] = await slack.sql(
        "SELECT storage_key FROM images WHERE generation_id = :g AND index = 1", g=generation_id
    )
    original = await slack.store.get(row.storage_key)
    stripped = io.BytesIO()
    # metadata-free; at this test's 64 px the mark survives lossless copies (docs/provenance.md)
    Image.open(io.BytesIO(original)).convert("RGB").save(stripped, "PNG")
    foreign = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(foreign, "PNG")
    base = slack.fake.url
    files = [
        slack.fake.upload_file(name, data, channels=(CHANNEL_ID,)).to_api(base)
        for name, data in [
            ("ours.png", original),
            ("copy.png", stripped.getvalue()),
            ("other.png", foreign.getvalue()),
        ]
    ]
    seen = len(slack.fake.ephemerals)
    mine = await answer(slack, shortcut(slack, files), seen)
    assert (mine.user, mine.channel) == (USER_ID, CHANNEL_ID)
    text = mine.text or ""
    lines = text.splitlines()
    assert "✅ Made with onbrand, verified by its signed Content Credentials" in lines[0]
    assert str(generation_id) in lines[0]
    assert "Campaign:" in lines[0]
    assert "invisible watermark" in lines[1]
    assert "❌ Not verified" in lines[2]
    assert not [m for m in slack.bot_messages() if "Made with onbrand" in str(m.text)]

    elsewhere = await answer(slack, shortcut(slack, files[:1], team="T0THER"), seen + 1)
    assert "another workspace" in (elsewhere.text or "")
    assert "Campaign:" not in (elsewhere.text or "")

    nothing = await answer(slack, shortcut(slack, []), seen + 2)
    assert nothing.text == "This message has no image to verify."


# --- Discord: the message context menu ------------------------------------------------------------


async def test_verify_image_context_menu_on_discord(
    tmp_path: Path,
    db: Database,
    presets_dir: Path,  # noqa: F811
) -> None:
    async with harness(db, presets_dir, tmp_path / "images", worker=True) as h:
        made = setup.from_settings(Settings(_env_file=None, ONBRAND_DATA_DIR=tmp_path / "d"))  # type: ignore[call-arg]
        setup.configure(made)
        try:
            h.bot.verifier = lambda data, viewer: verify_for_chat(db, made, data, viewer)
            _, generation_id = await h.imagine("a red circle --seed 5")  # see the Slack test
            await h.result(generation_id)
            async with db.engine.connect() as conn:
                key = await conn.scalar(
                    text("SELECT storage_key FROM images WHERE generation_id = :g AND index = 1"),
                    {"g": generation_id},
                )
            original = await h.store.get(key)
            stripped = io.BytesIO()
            Image.open(io.BytesIO(original)).convert("RGB").save(stripped, "PNG")
            message = h.fake.seed_message(
                h.channel_id,
                "look at this",
                author=h.user("ben"),
                files=[
                    UploadedFile("files[0]", "ours.png", "image/png", original),
                    UploadedFile("files[1]", "copy.png", "image/png", stripped.getvalue()),
                    UploadedFile("files[2]", "notes.txt", "text/plain", b"hello"),
                ],
            )
            record = await h.fake.dispatch_message_command(
                "Verify image", message, user=h.user("ava")
            )
            await h.fake.wait_for(lambda _: finished(h.fake, record), timeout=10)
            lines = private_text(record).splitlines()
            assert len(lines) == 2  # the text file is not an image
            assert "✅ Made with onbrand, verified by its signed Content Credentials" in lines[0]
            assert str(generation_id) in lines[0]
            assert "Campaign:" in lines[0]
            assert "invisible watermark" in lines[1]
        finally:
            setup.configure(None)


async def test_the_bot_token_goes_only_to_slack_file_hosts() -> None:
    from bots.slack.verify import download

    api = "https://slack.com/api/"
    for url in ("https://evil.example/f.png", "http://files.slack.com/f.png", "file:///etc/passwd"):
        assert await download(url, "xoxb-secret", api) == "The file is not on Slack."
