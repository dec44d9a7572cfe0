"""📦 Pack on Slack, through the fake Web API with the real bolt app and slack_sdk (issue 16):
a single image carries the 📦 Pack button and a placements multi-select; picking placements
queues a ``pack`` generation that the worker builds; the bot posts the contact sheet and uploads
the zip with ``files_upload_v2``, every file at its placement's exact size."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.db.packs import SqlPacks
from core.db.uploads import SqlUploads
from core.domain import GenerationKind, GenerationStatus
from core.memory.store import MemoryStore
from tests.bots.test_slack import CHANNEL_ID, PRESET, Harness, eventually, fake, running_fake
from tests.bots.test_slack import slack as plain_slack
from tests.fakes.slack import block_actions_payload

pytestmark = pytest.mark.integration
__all__ = ["fake", "plain_slack", "running_fake"]

PLACEMENTS = """\
placements:
  square:
    size: [200, 200]
    format: jpeg
  banner:
    size: [320, 100]
    format: png
  tall:
    size: [90, 160]
    format: webp
"""


@pytest.fixture
async def slack(plain_slack: Harness, provenance: Any) -> Harness:
    """The Slack harness with uploads and packs wired, the preset's own small placements."""
    service = plain_slack.app.service
    service._store = plain_slack.store
    service._upload_records = SqlUploads(plain_slack.db)
    service._packs = SqlPacks(plain_slack.db)
    service._memory = MemoryStore(plain_slack.db, plain_slack.store)
    preset = service.presets[PRESET]
    assert preset.source_path is not None
    folder = Path(preset.source_path).parent / "placements"
    folder.mkdir(exist_ok=True)
    (folder / f"{PRESET}.yaml").write_text(PLACEMENTS)
    await plain_slack.start_worker()
    return plain_slack


def _elements(message: Any) -> list[dict[str, Any]]:
    return [e for b in message.blocks or [] if b.get("type") == "actions" for e in b["elements"]]


async def test_the_pack_menu_posts_the_contact_sheet_and_uploads_the_zip(slack: Harness) -> None:
    gid, single = await slack.finished("a lighthouse --n 1")
    elements = {e["action_id"]: e for e in _elements(single)}
    assert elements[f"ob:pk:{gid}:1"]["type"] == "button"
    menu = elements[f"ob:ps:{gid}:1"]
    assert menu["type"] == "multi_static_select"
    assert [o["value"] for o in menu["options"]] == ["square", "banner", "tall"]

    payload = block_actions_payload(
        menu["action_id"],
        message=slack.fake.message(CHANNEL_ID, single.ts).to_api(),
        response_url="https://hooks.slack.com/actions/x",
    )
    picked = [{"text": {"type": "plain_text", "text": v}, "value": v} for v in ("tall", "square")]
    payload["actions"][0] |= {"type": "multi_static_select", "selected_options": picked}
    assert (await slack.sender.interaction(payload)).status == 200

    query = "SELECT id FROM generations WHERE parent_id = :p AND kind = 'pack'"
    [row] = await eventually(lambda: slack.sql(query, p=gid), "the pack is queued")
    pack_id: uuid.UUID = row.id
    result = await slack.result_message(pack_id)
    pack = await slack.app.service.generation(pack_id)
    assert (pack.kind, pack.status) == (GenerationKind.PACK, GenerationStatus.DONE), pack.error
    assert pack.params.placements == ("tall", "square")
    assert "📦 Pack of image 1" in str(result.blocks)
    zips = await slack.fake.wait_for(
        lambda f: [x for x in f.files if x.name.endswith(".zip") and CHANNEL_ID in x.channels]
    )
    [upload] = zips
    assert upload.data is not None
    with zipfile.ZipFile(io.BytesIO(upload.data)) as archive:
        names = archive.namelist()
        assert sorted(names) == [
            "onbrand/contact-sheet.png",
            "onbrand/manifest.csv",
            "onbrand/square.jpg",
            "onbrand/tall.webp",
        ]
        for name, size in (("onbrand/square.jpg", (200, 200)), ("onbrand/tall.webp", (90, 160))):
            with Image.open(io.BytesIO(archive.read(name))) as image:
                assert image.size == size
    stored = await slack.app.service.pack_of(pack_id)
    assert stored is not None
    assert stored.bytes == len(upload.data)
    assert [(f.placement, f.width, f.height) for f in stored.files] == [
        ("tall", 90, 160),
        ("square", 200, 200),
    ]
    audit = await slack.sql("SELECT action FROM audit_log WHERE action LIKE 'pack.%' ORDER BY id")
    assert [a.action for a in audit] == ["pack.queued", "pack.made"]


async def test_a_search_result_s_pack_button_queues_the_pack_of_that_image(slack: Harness) -> None:
    """The search card's 📦 N (an ephemeral message): the pack of that image is queued and
    delivered in the channel, as from the 📦 Pack button under the image."""
    gid, _ = await slack.finished("a lighthouse at dusk --n 1")
    before = len(slack.fake.ephemerals)
    sent = await slack.sender.slash_command("lighthouse", command="/imagine-search")
    assert sent.status == 200

    async def card() -> list[Any]:
        return [e for e in slack.fake.ephemerals[before:] if _elements(e)]

    [shown] = await eventually(card, "the search card is shown")
    buttons = {e["text"]["text"]: e["action_id"] for e in _elements(shown)}
    assert buttons["📦 1"] == f"ob:pk:{gid}:1"
    await slack.sender.block_action(buttons["📦 1"], message_ts=shown.message_ts)
    query = "SELECT id FROM generations WHERE parent_id = :p AND kind = 'pack'"
    [row] = await eventually(lambda: slack.sql(query, p=gid), "the pack is queued")
    await slack.result_message(row.id)
    pack = await slack.app.service.generation(row.id)
    assert (pack.kind, pack.status) == (GenerationKind.PACK, GenerationStatus.DONE), pack.error
    assert pack.source_index == 1
    await slack.fake.wait_for(
        lambda f: [x for x in f.files if x.name.endswith(".zip") and CHANNEL_ID in x.channels]
    )
