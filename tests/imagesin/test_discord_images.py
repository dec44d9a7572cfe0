"""Images in from Discord, through the fake gateway/REST with the real discord.py client:
``/imagine`` with an image attachment (product shot), and the "Imagine from this image" message
command with its modal (image prompt)."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import text

from bots.discord.images_in import MENU_NAME
from core.brand.preset_files import load_presets
from core.db import Database
from core.db.uow import sql_uow_factory
from core.db.uploads import SqlUploads
from core.domain import GenerationKind
from core.engines.fake import FakeEngine
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore
from tests.bots.test_discord import (
    PRESET,
    Harness,
    eventually,
    finished,
    presets_dir,
    status_generation,
)
from tests.fakes.discord import CB_MODAL, FakeDiscord
from tests.imagesin.test_product_pixels import photo_on_white

pytestmark = pytest.mark.integration
__all__ = ["presets_dir"]  # the test presets (fake engine, 64 px), as a fixture


@contextlib.asynccontextmanager
async def images_harness(db: Database, presets: Path, images: Path) -> AsyncIterator[Harness]:
    store = LocalImageStore(images)
    service = Service(
        sql_uow_factory(db),
        load_presets(presets),
        ServiceConfig(default_preset=PRESET),
        store=store,
        uploads=SqlUploads(db),
    )
    async with FakeDiscord() as fake:
        h = Harness(fake, db, service, store, FakeEngine())
        try:
            await h.start_bot()
            h.start_worker()
            yield h
        finally:
            await h.stop_worker()
            await h.stop_bot()
    assert fake.bugs == []


@pytest.fixture
async def h(db: Database, presets_dir: Path, tmp_path: Path) -> AsyncIterator[Harness]:
    async with images_harness(db, presets_dir, tmp_path / "images") as running:
        yield running


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def _uploads(db: Database) -> list[tuple[str, str]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT platform, mime FROM uploads ORDER BY id"))
        return [(r.platform, r.mime) for r in rows]


async def test_imagine_with_an_attached_product_makes_a_product_shot(
    h: Harness, db: Database
) -> None:
    photo, _ = photo_on_white()
    attachment = h.fake.cdn_attachment(h.channel_id, "bottle.png", _png(photo))
    await h.fake.dispatch_with_attachment(
        "imagine",
        {"prompt": "a kitchen counter --n 1", "mode": "product shot"},
        "image",
        attachment,
    )
    [queued] = await h.fake.wait_for(lambda _: h.status_messages())
    gid = status_generation(queued)
    result = await h.result(gid)
    assert result.files
    generation = await h.service.generation(gid)
    assert generation.kind is GenerationKind.PRODUCT
    assert generation.params.product_box is not None
    assert await _uploads(db) == [("discord", "image/png")]


async def test_the_message_command_opens_a_modal_and_imagines_from_the_image(
    h: Harness, db: Database
) -> None:
    attachment = h.fake.cdn_attachment(h.channel_id, "mood.jpg", _jpeg(), "image/jpeg")
    message = h.fake.seed_message(h.channel_id, "our mood board", author=h.user("ava"))
    message.payload["attachments"] = [attachment]
    record = await h.fake.dispatch_message_command(MENU_NAME, message)
    await h.fake.wait_for(lambda _: record.callback is not None)
    assert record.callback is not None
    assert record.callback.type == CB_MODAL
    custom_id = record.callback.data["custom_id"]
    inputs = [row["components"][0]["custom_id"] for row in record.callback.data["components"]]
    submit = await h.fake.dispatch_modal_submit(
        custom_id, dict(zip(inputs, ["a calm beach --n 1", "image prompt"], strict=True))
    )
    [queued] = await h.fake.wait_for(lambda _: h.status_messages())
    generation = await h.service.generation(status_generation(queued))
    assert generation.kind is GenerationKind.IMAGE_PROMPT
    assert generation.raw_prompt == "a calm beach"
    await h.result(generation.id)
    await h.fake.wait_for(lambda f: finished(f, submit))
    assert await _uploads(db) == [("discord", "image/jpeg")]


async def test_a_message_without_an_image_gets_a_private_answer(h: Harness, db: Database) -> None:
    message = h.fake.seed_message(h.channel_id, "just words", author=h.user("ava"))
    record = await h.fake.dispatch_message_command(MENU_NAME, message)
    await h.fake.wait_for(lambda _: record.callback is not None)
    assert record.callback is not None
    assert "has no image" in record.callback.data["content"]
    assert await _uploads(db) == []


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (30, 90, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


async def test_zoom_out_and_pan_buttons_on_a_single_image(h: Harness) -> None:
    _, gid = await h.imagine("a lighthouse", n=1)
    single = await h.result(gid)
    assert f"ob:z2:{gid}:1" in single.custom_ids
    assert f"ob:pl:{gid}:1" in single.custom_ids
    await h.click(f"ob:z2:{gid}:1", single.id)
    await h.click(f"ob:pl:{gid}:1", single.id)

    async def both() -> list[uuid.UUID] | None:
        async with h.db.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id FROM generations WHERE parent_id = :g"), {"g": gid}
            )
            found = [row.id for row in rows]
        return found if len(found) == 2 else None

    children = await eventually(both)
    kinds = {}
    for child_id in children:
        child = await h.service.generation(child_id)
        assert (child.parent_id, child.source_index) == (gid, 1)
        kinds[child.kind] = (child.params.width, child.params.height)
        await h.result(child.id)
    assert kinds == {GenerationKind.ZOOM_OUT: (64, 64), GenerationKind.PAN: (96, 64)}
