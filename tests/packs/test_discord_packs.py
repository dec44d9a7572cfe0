"""📦 Pack on Discord, through the fake gateway/REST with the real discord.py client (issue 16):
the 📦 Pack button under a single image queues a pack of the preset's placements; the bot posts
the contact sheet with the zip attached. Over the upload limit, the zip stays in the store and
the message gives the command that writes it, which does; the placements menu picks a subset."""

from __future__ import annotations

import contextlib
import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import text

from core.brand.preset_files import load_presets
from core.db import Database
from core.db.packs import SqlPacks
from core.db.uow import sql_uow_factory
from core.db.uploads import SqlUploads
from core.delivery.fetch import fetch
from core.domain import GenerationKind, GenerationStatus
from core.engines.fake import FakeEngine
from core.memory.store import MemoryStore
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore
from tests.bots import test_discord as discord_tests
from tests.bots.test_discord import PRESETS, Harness, eventually
from tests.fakes.discord import FakeDiscord
from tests.packs.test_slack_packs import PLACEMENTS

pytestmark = pytest.mark.integration
PRESET = "brand"


@pytest.fixture
def presets(tmp_path: Path) -> Path:
    folder = tmp_path / "presets"
    (folder / "placements").mkdir(parents=True)
    for name, body in PRESETS.items():
        (folder / name).write_text(body)
    (folder / "placements" / f"{PRESET}.yaml").write_text(PLACEMENTS)
    return folder


@pytest.fixture
async def h(db: Database, presets: Path, tmp_path: Path, provenance: Any) -> AsyncIterator[Harness]:
    store = LocalImageStore(tmp_path / "images")
    service = Service(
        sql_uow_factory(db),
        load_presets(presets),
        ServiceConfig(default_preset=PRESET),
        store=store,
        uploads=SqlUploads(db),
        packs=SqlPacks(db),
        memory=MemoryStore(db, store),
    )
    async with FakeDiscord() as fake:
        harness = Harness(fake, db, service, store, FakeEngine())
        async with contextlib.AsyncExitStack() as stack:
            await harness.start_bot()
            stack.push_async_callback(harness.stop_bot)
            harness.start_worker()
            stack.push_async_callback(harness.stop_worker)
            yield harness
    assert fake.bugs == []


async def _packs(h: Harness, parent: uuid.UUID, count: int) -> list[uuid.UUID]:
    async def found() -> list[uuid.UUID] | None:
        async with h.db.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT id FROM generations WHERE parent_id = :g AND kind = 'pack' "
                    "ORDER BY queued_at"
                ),
                {"g": parent},
            )
            ids = [row.id for row in rows]
        return ids if len(ids) >= count else None

    return await eventually(found)


def _unzip(data: bytes) -> dict[str, tuple[int, int] | None]:
    sizes: dict[str, tuple[int, int] | None] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if name.endswith(".csv"):
                sizes[name] = None
                continue
            with Image.open(io.BytesIO(archive.read(name))) as image:
                sizes[name] = image.size
    return sizes


async def test_the_pack_button_attaches_the_zip_and_over_the_limit_names_the_command(
    h: Harness, tmp_path: Path
) -> None:
    _, gid = await h.imagine("a lighthouse", n=1)
    single = await h.result(gid)
    assert f"ob:pk:{gid}:1" in single.custom_ids
    [menu] = [
        c
        for row in single.components
        for c in row["components"]
        if c.get("custom_id") == f"ob:ps:{gid}:1"
    ]
    assert [o["value"] for o in menu["options"]] == ["square", "banner", "tall"]
    assert menu["max_values"] == 3

    await h.click(f"ob:pk:{gid}:1", single.id)
    [pack_id] = await _packs(h, gid, 1)
    posted = await h.result(pack_id)
    pack = await h.service.generation(pack_id)
    assert (pack.kind, pack.status) == (GenerationKind.PACK, GenerationStatus.DONE), pack.error
    assert pack.params.placements == ()  # the preset's whole list
    [zipped] = [f for f in posted.files if f.filename.endswith(".zip")]
    sizes = _unzip(zipped.data)
    assert sizes.pop("onbrand/contact-sheet.png") is not None
    assert sizes == {
        "onbrand/square.jpg": (200, 200),
        "onbrand/banner.png": (320, 100),
        "onbrand/tall.webp": (90, 160),
        "onbrand/manifest.csv": None,
    }
    assert any(f.filename.endswith("-pack-sheet.jpg") for f in posted.files)
    recorded = await h.service.pack_of(pack_id)
    assert recorded is not None
    methods = {f.placement: f.method for f in recorded.files}
    assert methods["square"].startswith("crop")  # a square from a square image
    assert methods["banner"].startswith("extend (outpaint)")  # the worker's engine outpainted

    # Over the upload limit: the contact sheet, and the command that writes the zip.
    h.bot.sink.max_upload_bytes = 20_000
    record = await h.fake.dispatch_component(
        f"ob:ps:{gid}:1", single.id, user=h.user("ben"), component_type=3, values=["banner"]
    )
    await h.fake.wait_for(lambda _: record.callback)
    second = (await _packs(h, gid, 2))[1]
    over = await h.result(second)
    stored = await h.service.pack_of(second)
    assert stored is not None
    assert stored.bytes > 20_000
    assert not [f for f in over.files if f.filename.endswith(".zip")]
    description = over.embeds[0]["description"]
    assert f"onbrand fetch {second}" in description
    _, written = await fetch(h.db, h.service, h.store, str(second), tmp_path / "out")
    [zip_path] = [p for p in written if p.suffix == ".zip"]
    assert set(_unzip(zip_path.read_bytes())) == {
        "onbrand/banner.png",
        "onbrand/manifest.csv",
        "onbrand/contact-sheet.png",
    }


async def test_a_search_result_s_pack_button_queues_the_pack_of_that_image(h: Harness) -> None:
    """The search card's 📦 N: the same pack as the 📦 Pack button under the image, announced
    and delivered in the channel (the card itself is private)."""
    _, gid = await h.imagine("a lighthouse at dusk", n=1)
    await h.result(gid)
    record = await h.fake.dispatch_slash_command(
        "imagine-search", {"query": "lighthouse"}, user=h.user("ben")
    )
    await h.fake.wait_for(lambda fake: discord_tests.finished(fake, record))
    [card] = record.followups
    assert card.flags & discord_tests.FLAG_EPHEMERAL
    assert f"ob:pk:{gid}:1" in card.custom_ids
    await h.click(f"ob:pk:{gid}:1", card.id)
    [pack_id] = await _packs(h, gid, 1)
    posted = await h.result(pack_id)
    pack = await h.service.generation(pack_id)
    assert (pack.kind, pack.status) == (GenerationKind.PACK, GenerationStatus.DONE), pack.error
    assert (pack.parent_id, pack.source_index) == (gid, 1)
    assert not posted.flags & discord_tests.FLAG_EPHEMERAL
    assert [f for f in posted.files if f.filename.endswith(".zip")]
