"""The Slack shortcut "Imagine from this image" through the fake Web API with the real bolt app:
shortcut → modal → submit → the file fetched with the bot token → queued → grid in the thread."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from bots.slack.images_in import SHORTCUT_ID, VIEW_ID
from core.db.uploads import SqlUploads
from core.domain import GenerationKind
from tests.bots.test_slack import CHANNEL_ID, USER_ID, Harness, eventually, fake, running_fake
from tests.bots.test_slack import slack as plain_slack
from tests.fakes.slack import FakeSlack
from tests.imagesin.test_product_pixels import photo_on_white

pytestmark = pytest.mark.integration
__all__ = ["fake", "plain_slack", "running_fake"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def slack(plain_slack: Harness) -> Harness:
    """The Slack harness, its service wired for uploads, with a worker."""
    service = plain_slack.app.service
    service._store = plain_slack.store
    service._upload_records = SqlUploads(plain_slack.db)
    await plain_slack.start_worker()  # stopped by the plain harness's close
    return plain_slack


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _shortcut(fake: FakeSlack, file: dict[str, Any], thread_ts: str) -> dict[str, Any]:
    message = {"type": "message", "ts": "1700000001.000200", "user": USER_ID, "text": "our bottle",
               "thread_ts": thread_ts, "files": [file]}  # fmt: skip
    return {
        "type": "message_action",
        "callback_id": SHORTCUT_ID,
        "trigger_id": "1234.5678.abcd",
        "team": {"id": fake.team_id, "domain": "acme"},
        "user": {"id": USER_ID, "name": "ann", "team_id": fake.team_id},
        "channel": {"id": CHANNEL_ID, "name": "campaign"},
        "message_ts": message["ts"],
        "message": message,
        "response_url": "https://hooks.slack.com/app/x",
        "api_app_id": "A0ONBRAND",
        "token": "fake-verification-token",
    }


def _submission(fake: FakeSlack, view: dict[str, Any], prompt: str, mode: str) -> dict[str, Any]:
    values = {
        "prompt": {"prompt": {"type": "plain_text_input", "value": prompt}},
        "mode": {"mode": {"type": "static_select", "selected_option": {"value": mode}}},
        "iw": {"iw": {"type": "number_input", "value": None}},
    }
    return {
        "type": "view_submission",
        "team": {"id": fake.team_id, "domain": "acme"},
        "user": {"id": USER_ID, "name": "ann", "team_id": fake.team_id},
        "api_app_id": "A0ONBRAND",
        "token": "fake-verification-token",
        "trigger_id": "1234.5678.efgh",
        "view": view | {"state": {"values": values}},
    }


async def test_the_shortcut_opens_a_modal_and_a_product_shot_lands_in_the_thread(
    slack: Harness,
) -> None:
    fake = slack.fake
    photo, _ = photo_on_white()
    upload = fake.upload_file("bottle.png", _png(photo), channels=(CHANNEL_ID,))
    file = upload.to_api(fake.url)
    thread = fake.post_as_user(CHANNEL_ID, "the spring bottle: ideas in this thread")
    sent = await slack.sender.interaction(_shortcut(fake, file, thread))
    assert sent.status == 200
    [view] = await fake.wait_for(lambda f: f.views)
    assert view["callback_id"] == VIEW_ID
    assert [b["block_id"] for b in view["blocks"]] == ["prompt", "mode", "iw"]

    submitted = await slack.sender.interaction(
        _submission(fake, view, "a kitchen counter --n 1", "product")
    )
    assert submitted.status == 200
    [gid] = await eventually(slack.generation_ids, "the generation is queued")
    generation = await slack.app.service.generation(gid)
    assert generation.kind is GenerationKind.PRODUCT
    assert generation.reply_target.thread_id == thread
    result = await slack.result_message(gid)
    assert result.thread_ts == thread
    assert fake.calls_to("files.info")
    assert (await slack.sql("SELECT platform FROM uploads"))[0][0] == "slack"


async def test_a_message_without_an_image_is_answered_privately(slack: Harness) -> None:
    fake = slack.fake
    doc = fake.upload_file("notes.txt", b"hello", channels=(CHANNEL_ID,)).to_api(fake.url)
    await slack.sender.interaction(_shortcut(fake, doc, "1700000000.000100"))
    [note] = await fake.wait_for(lambda f: f.ephemerals)
    assert "has no image" in (note.text or "")
    assert fake.views == []


def test_the_manifest_has_the_shortcut_and_files_read() -> None:
    manifest = yaml.safe_load((REPO / "deploy" / "slack-manifest.yaml").read_text())
    assert "files:read" in manifest["oauth_config"]["scopes"]["bot"]
    shortcuts = {s["callback_id"]: s["type"] for s in manifest["features"]["shortcuts"]}
    assert shortcuts[SHORTCUT_ID] == "message"
    json.dumps(manifest)
