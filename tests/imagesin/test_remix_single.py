"""Remix of one image (``Service.remix(..., index=N)``, the Remix button under a single image,
``onbrand remix GEN:INDEX``): that image's seed with ``n = 1`` and the settings it was made with,
recorded as a reroll-like child of the pressed result; an upscale is remixed from the image it
upscaled. The real database and the worker with the fake engine (no model needed here)."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from core.brand.preset_files import parse_preset
from core.db import Database
from core.db.uow import sql_uow_factory
from core.db.uploads import SqlUploads
from core.domain import Action, ActionKind, GenerationKind, GenerationStatus, ImageMode
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.errors import UserError
from core.jobs.worker import Worker, WorkerConfig
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore
from tests.imagesin.conftest import ACTOR, PRESET_YAML, WHERE
from tests.imagesin.test_product_pixels import photo_on_white

pytestmark = pytest.mark.integration

FAKE_PRESET = PRESET_YAML.replace(
    "engine: {kind: diffusers, model: tiny, steps: 4, guidance: 4.0}",
    "engine: {kind: fake, steps: 2, guidance: 4.0}",
)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_one_image_is_remixed_with_its_own_seed_and_settings(
    db: Database, store: LocalImageStore
) -> None:
    preset = parse_preset(FAKE_PRESET, "shop.yaml")
    service = Service(
        sql_uow_factory(db),
        {"shop": preset},
        ServiceConfig(default_preset="shop"),
        store=store,
        uploads=SqlUploads(db),
    )
    engines = EngineRegistry(builtins=False)
    engines.put("fake", FakeEngine())
    worker = Worker(db, engines, store, {"shop": preset}, WorkerConfig(batch_window_s=0.0))

    async def drain() -> None:
        await asyncio.wait_for(worker.run(drain=True), timeout=60)

    upload = await service.upload(_png(photo_on_white()[0]), ACTOR, WHERE)
    ticket = await service.imagine_with_image(
        "a kitchen counter --n 3 --seed 10", ACTOR, WHERE, upload.id, mode=ImageMode.PRODUCT
    )
    (gid,) = ticket.generation_ids
    with pytest.raises(UserError, match="isn't finished"):
        await service.remix(ACTOR, WHERE, gid, "a marble counter", index=2)
    await drain()
    shot = await service.generation(gid)
    assert shot.status is GenerationStatus.DONE, shot.error

    # image 2 of the grid: its own seed (10 + 1), one image, still a product shot
    second = await service.remix(ACTOR, WHERE, gid, "a marble counter", index=2)
    child = await service.generation(second.generation_ids[0])
    assert child.kind is GenerationKind.PRODUCT  # a remix of a product shot keeps the product
    assert (child.parent_id, child.source_index) == (gid, 2)
    assert (child.params.seed, child.params.n) == (11, 1)
    assert child.params.product_box == shot.params.product_box
    assert child.params.init_image == shot.params.init_image
    assert "a marble counter" in child.params.prompt
    assert child.raw_prompt == "a marble counter"

    # an upscale of image 3 is remixed from that image: seed 12, the product shot's settings
    up = await service.act(Action(ActionKind.UPSCALE, gid, 3).custom_id, ACTOR, WHERE)
    await drain()
    upscale = await service.generation(up.generation_ids[0])
    assert upscale.status is GenerationStatus.DONE, upscale.error
    again = await service.remix(ACTOR, WHERE, upscale.id, "a wooden counter", index=1)
    remixed = await service.generation(again.generation_ids[0])
    assert remixed.kind is GenerationKind.PRODUCT
    assert (remixed.parent_id, remixed.source_index) == (upscale.id, 1)
    assert (remixed.params.seed, remixed.params.n) == (12, 1)
    assert (remixed.params.width, remixed.params.height) == (64, 64)  # the shot's own size
    assert remixed.params.product_box == shot.params.product_box

    # the whole grid (index 0) is remixed as before: all three, the first seed
    whole = await service.remix(ACTOR, WHERE, gid, "a steel counter")
    all_of_it = await service.generation(whole.generation_ids[0])
    assert (all_of_it.params.seed, all_of_it.params.n, all_of_it.source_index) == (10, 3, None)

    with pytest.raises(UserError, match="has images 1 to 3"):
        await service.remix(ACTOR, WHERE, gid, "a steel counter", index=4)

    await drain()
    for ticket_ in (second, again):
        done = await service.generation(ticket_.generation_ids[0])
        assert done.status is GenerationStatus.DONE, done.error
        assert done.image_count == 1
