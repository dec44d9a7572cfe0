"""Vary (Region) and Remix on Discord, through the fake gateway/REST with the real discord.py
client: the region menu under a single image queues a vary-region edit whose outside pixels are
the source's bit for bit; Remix opens a modal whose prompt makes a new generation with the same
seed; a banned word in it is refused privately and queues nothing."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from core.cards import REGION_CHOICES
from core.domain import GenerationKind, GenerationStatus
from tests.bots.test_discord import Harness, eventually
from tests.fakes.discord import CB_MODAL
from tests.imagesin.test_discord_images import h, presets_dir

pytestmark = pytest.mark.integration
__all__ = ["h", "presets_dir"]


async def _children(h: Harness, parent: uuid.UUID, count: int) -> list[uuid.UUID]:
    async def found() -> list[uuid.UUID] | None:
        async with h.db.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id FROM generations WHERE parent_id = :g ORDER BY queued_at"),
                {"g": parent},
            )
            ids = [row.id for row in rows]
        return ids if len(ids) >= count else None

    return await eventually(found)


async def _pixels(h: Harness, gid: uuid.UUID) -> list[np.ndarray]:
    async with h.db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT storage_key FROM images WHERE generation_id = :g ORDER BY index"),
            {"g": gid},
        )
        keys = [row.storage_key for row in rows]
    images = []
    for key in keys:
        with Image.open(io.BytesIO(await h.store.get(key))) as opened:
            images.append(np.asarray(opened.convert("RGB")))
    return images


async def test_the_region_menu_varies_a_region_and_keeps_the_rest_exactly(h: Harness) -> None:
    _, gid = await h.imagine("a lighthouse", n=1)
    single = await h.result(gid)
    menu_id = f"ob:vr:{gid}:1"
    assert menu_id in single.custom_ids
    [menu] = [
        c for row in single.components for c in row["components"] if c.get("custom_id") == menu_id
    ]
    assert [o["value"] for o in menu["options"]] == [v for v, _ in REGION_CHOICES]

    record = await h.fake.dispatch_component(
        menu_id, single.id, user=h.user("ben"), component_type=3, values=["top-left"]
    )
    await h.fake.wait_for(lambda _: record.callback)
    [child_id] = await _children(h, gid, 1)
    await h.result(child_id)
    child = await h.service.generation(child_id)
    assert child.kind is GenerationKind.VARY_REGION
    assert child.status is GenerationStatus.DONE, child.error
    assert (child.parent_id, child.source_index) == (gid, 1)
    assert child.raw_prompt == "a lighthouse"
    assert child.params.edit_region == (0, 0, 21, 21)
    [original] = await _pixels(h, gid)
    outside = np.ones(original.shape[:2], bool)
    outside[:21, :21] = False
    shots = await _pixels(h, child_id)
    assert shots
    for pixels in shots:
        assert np.array_equal(pixels[outside], original[outside])  # copied, so bit-identical
    assert record.followups == []


async def test_remix_opens_a_modal_and_keeps_the_seed_and_a_banned_word_is_refused(
    h: Harness,
) -> None:
    _, gid = await h.imagine("a lighthouse")
    grid = await h.result(gid)
    remix_id = f"ob:rm:{gid}:0"
    assert remix_id in grid.custom_ids
    parent = await h.service.generation(gid)

    opened = await h.click(remix_id, grid.id)
    assert opened.callback is not None
    assert opened.callback.type == CB_MODAL
    modal = opened.callback.data
    [field] = [c for row in modal["components"] for c in row["components"]]
    assert field["value"] == "a lighthouse"  # the prompt, to edit

    refused = await h.fake.dispatch_modal_submit(
        modal["custom_id"], {field["custom_id"]: "a rivalcorp lighthouse"}, user=h.user("ben")
    )
    notes = await h.fake.wait_for(lambda _: refused.followups)
    assert "rivalcorp" in notes[0].content
    assert notes[0].flags & 64  # ephemeral
    submitted = await h.fake.dispatch_modal_submit(
        modal["custom_id"], {field["custom_id"]: "a lighthouse at night"}, user=h.user("ben")
    )
    await h.fake.wait_for(lambda _: submitted.callback)
    [child_id] = await _children(h, gid, 1)  # the refusal queued nothing
    await h.result(child_id)
    child = await h.service.generation(child_id)
    assert child.kind is GenerationKind.REROLL
    assert child.raw_prompt == "a lighthouse at night"
    assert "a lighthouse at night" in child.params.prompt
    assert child.params.seed == parent.params.seed
    assert (child.params.width, child.params.n) == (parent.params.width, parent.params.n)


async def test_remix_under_a_single_image_remixes_that_image_alone(h: Harness) -> None:
    _, gid = await h.imagine("a lighthouse", n=1)
    single = await h.result(gid)
    remix_id = f"ob:rm:{gid}:1"
    assert remix_id in single.custom_ids
    opened = await h.click(remix_id, single.id)
    assert opened.callback is not None
    modal = opened.callback.data
    [field] = [c for row in modal["components"] for c in row["components"]]
    submitted = await h.fake.dispatch_modal_submit(
        modal["custom_id"], {field["custom_id"]: "a lighthouse in fog"}, user=h.user("ben")
    )
    await h.fake.wait_for(lambda _: submitted.callback)
    [child_id] = await _children(h, gid, 1)
    await h.result(child_id)
    parent = await h.service.generation(gid)
    child = await h.service.generation(child_id)
    assert (child.kind, child.source_index, child.params.n) == (GenerationKind.REROLL, 1, 1)
    assert child.params.seed == parent.params.seed
    assert child.raw_prompt == "a lighthouse in fog"
