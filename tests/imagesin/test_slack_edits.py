"""Vary (Region) and Remix on Slack, through the fake Web API with the real bolt app: the region
``static_select`` under a single image queues a vary-region edit whose outside pixels are the
source's bit for bit; Remix opens a modal (``views.open``) prefilled with the prompt whose
submission makes a new generation with the same seed; a banned word is refused privately."""

from __future__ import annotations

import io
import uuid
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bots.slack.edits import REMIX_VIEW_ID
from core.domain import GenerationKind, GenerationStatus
from tests.bots.test_slack import CHANNEL_ID, USER_ID, Harness, eventually, fake, running_fake
from tests.bots.test_slack import slack as plain_slack
from tests.fakes.slack import block_actions_payload
from tests.imagesin.test_slack_images import slack

pytestmark = pytest.mark.integration
__all__ = ["fake", "plain_slack", "running_fake", "slack"]


async def _children(slack: Harness, parent: uuid.UUID, count: int) -> list[uuid.UUID]:
    query = "SELECT id FROM generations WHERE parent_id = :p ORDER BY queued_at"

    async def found() -> list[uuid.UUID] | None:
        ids = [row.id for row in await slack.sql(query, p=parent)]
        return ids if len(ids) >= count else None

    return await eventually(found, f"{count} children are queued")


async def _pixels(slack: Harness, gid: uuid.UUID) -> list[np.ndarray]:
    query = "SELECT storage_key FROM images WHERE generation_id = :g ORDER BY index"
    images = []
    for row in await slack.sql(query, g=gid):
        with Image.open(io.BytesIO(await slack.store.get(row.storage_key))) as opened:
            images.append(np.asarray(opened.convert("RGB")))
    return images


def _elements(message: Any) -> list[dict[str, Any]]:
    return [e for b in message.blocks or [] if b.get("type") == "actions" for e in b["elements"]]


async def test_the_region_menu_varies_a_region_and_keeps_the_rest_exactly(slack: Harness) -> None:
    gid, single = await slack.finished("a lighthouse --n 1")
    [menu] = [e for e in _elements(single) if e["type"] == "static_select"]
    assert menu["action_id"] == f"ob:vr:{gid}:1"
    assert "bottom-right" in [o["value"] for o in menu["options"]]

    payload = block_actions_payload(
        menu["action_id"],
        message=slack.fake.message(CHANNEL_ID, single.ts).to_api(),
        response_url="https://hooks.slack.com/actions/x",
    )
    payload["actions"][0] |= {
        "type": "static_select",
        "selected_option": {"text": {"type": "plain_text", "text": "Top"}, "value": "top-left"},
    }
    sent = await slack.sender.interaction(payload)
    assert sent.status == 200
    [child_id] = await _children(slack, gid, 1)
    await slack.result_message(child_id)
    child = await slack.app.service.generation(child_id)
    assert child.kind is GenerationKind.VARY_REGION
    assert child.status is GenerationStatus.DONE, child.error
    assert (child.parent_id, child.source_index) == (gid, 1)
    assert child.params.edit_region == (0, 0, 21, 21)
    [original] = await _pixels(slack, gid)
    outside = np.ones(original.shape[:2], bool)
    outside[:21, :21] = False
    shots = await _pixels(slack, child_id)
    assert shots
    for pixels in shots:
        assert np.array_equal(pixels[outside], original[outside])  # copied, so bit-identical


def _submission(slack: Harness, view: dict[str, Any], prompt: str, trigger: str) -> dict[str, Any]:
    values = {"prompt": {"prompt": {"type": "plain_text_input", "value": prompt}}}
    return {
        "type": "view_submission",
        "team": {"id": slack.fake.team_id, "domain": "acme"},
        "user": {"id": USER_ID, "name": "ann", "team_id": slack.fake.team_id},
        "api_app_id": "A0ONBRAND",
        "token": "fake-verification-token",
        "trigger_id": trigger,
        "view": view | {"state": {"values": values}},
    }


async def test_remix_opens_a_prefilled_modal_keeps_the_seed_and_refuses_a_banned_word(
    slack: Harness,
) -> None:
    gid, grid = await slack.finished("a lighthouse")
    [remix] = [e for e in _elements(grid) if e["action_id"].startswith("ob:rm:")]
    assert remix["action_id"] == f"ob:rm:{gid}:0"
    sent = await slack.sender.block_action(remix["action_id"], message_ts=grid.ts)
    assert sent.status == 200
    [view] = await slack.fake.wait_for(lambda f: f.views)
    assert view["callback_id"] == REMIX_VIEW_ID
    assert view["blocks"][0]["element"]["initial_value"] == "a lighthouse"

    bad = await slack.sender.interaction(_submission(slack, view, "a rivalcorp tower", "1.2.a"))
    assert bad.status == 200
    [note] = await slack.fake.wait_for(lambda f: f.ephemerals)
    assert "rivalcorp" in (note.text or "")
    good = _submission(slack, view, "a lighthouse at night", "1.2.b")
    assert (await slack.sender.interaction(good)).status == 200
    [child_id] = await _children(slack, gid, 1)  # the refusal queued nothing
    await slack.sender.interaction(good)  # a copy of the same submission: no second child
    await slack.result_message(child_id)
    await slack.settled()
    assert len(await _children(slack, gid, 1)) == 1
    parent = await slack.app.service.generation(gid)
    child = await slack.app.service.generation(child_id)
    assert child.kind is GenerationKind.REROLL
    assert child.raw_prompt == "a lighthouse at night"
    assert "a lighthouse at night" in child.params.prompt
    assert child.params.seed == parent.params.seed
    assert (child.params.width, child.params.n) == (parent.params.width, parent.params.n)


async def test_remix_under_a_single_image_remixes_that_image_alone(slack: Harness) -> None:
    gid, single = await slack.finished("a lighthouse --n 1")
    [remix] = [e for e in _elements(single) if e["action_id"].startswith("ob:rm:")]
    assert remix["action_id"] == f"ob:rm:{gid}:1"
    assert (await slack.sender.block_action(remix["action_id"], message_ts=single.ts)).status == 200
    [view] = await slack.fake.wait_for(lambda f: f.views)
    submitted = _submission(slack, view, "a lighthouse in fog", "1.3.a")
    assert (await slack.sender.interaction(submitted)).status == 200
    [child_id] = await _children(slack, gid, 1)
    await slack.result_message(child_id)
    parent = await slack.app.service.generation(gid)
    child = await slack.app.service.generation(child_id)
    assert (child.kind, child.source_index, child.params.n) == (GenerationKind.REROLL, 1, 1)
    assert child.params.seed == parent.params.seed
    assert child.raw_prompt == "a lighthouse in fog"
