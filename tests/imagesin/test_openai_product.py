"""A product shot on the OpenAI engine, end to end: the service on the real database, the worker
with ``OpenAIEngine`` driving the real ``openai`` client against the fake images API (an edit
with a mask), and the stored original checked pixel by pixel."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from core.brand.preset_files import parse_preset
from core.db import Database
from core.db import models as m
from core.db.uow import sql_uow_factory
from core.db.uploads import SqlUploads
from core.domain import GenerationKind, GenerationStatus, ImageMode
from core.engines.registry import EngineRegistry
from core.jobs.worker import Worker, WorkerConfig
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore
from tests.imagesin.conftest import ACTOR, PRESET_YAML, WHERE
from tests.imagesin.test_product_pixels import photo_on_white

pytest.importorskip("openai")

from core.engines.openai import OpenAIEngine
from tests.fakes.openai_server import FakeOpenAIServer, prompt_colour

pytestmark = pytest.mark.integration

OPENAI_PRESET = PRESET_YAML.replace(
    "engine: {kind: diffusers, model: tiny, steps: 4, guidance: 4.0}",
    "engine: {kind: openai, steps: 1, guidance: 1.0}",
)


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
async def wired(
    db: Database, store: LocalImageStore, server: FakeOpenAIServer
) -> AsyncIterator[tuple[Service, Worker]]:
    preset = parse_preset(OPENAI_PRESET, "shop.yaml")
    service = Service(
        sql_uow_factory(db),
        {"shop": preset},
        ServiceConfig(default_preset="shop"),
        store=store,
        uploads=SqlUploads(db),
    )
    engine = OpenAIEngine(server.api_key, server.base_url, max_retries=0)
    engines = EngineRegistry(builtins=False)
    engines.put("openai", engine)
    worker = Worker(db, engines, store, {"shop": preset}, WorkerConfig(batch_window_s=0.0))
    yield service, worker
    await engine.aclose()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_an_openai_product_shot_keeps_every_opaque_product_pixel(
    wired: tuple[Service, Worker], db: Database, store: LocalImageStore, server: FakeOpenAIServer
) -> None:
    service, worker = wired
    photo, _ = photo_on_white()
    upload = await service.upload(_png(photo), ACTOR, WHERE)
    ticket = await service.imagine_with_image(
        "a kitchen counter at dawn --n 2", ACTOR, WHERE, upload.id, mode=ImageMode.PRODUCT
    )
    (gid,) = ticket.generation_ids
    await asyncio.wait_for(worker.run(drain=True), timeout=60)

    generation = await service.generation(gid)
    assert generation.status is GenerationStatus.DONE, generation.error
    assert generation.kind is GenerationKind.PRODUCT
    params = generation.params
    assert params.product_box is not None
    assert params.init_image is not None
    x, y, w, h = params.product_box

    [request] = server.requests  # one edit with a mask, both at the size sent
    assert request.path == "/v1/images/edits"
    assert request.file_sizes == {"image": (1024, 1024), "mask": (1024, 1024)}
    assert request.body["n"] == 2

    product = np.asarray(Image.open(io.BytesIO(await store.get(params.init_image))))
    opaque = product[..., 3] == 255
    assert opaque.mean() > 0.5
    async with db.sessions() as session:
        keys = (
            await session.scalars(select(m.Image.storage_key).where(m.Image.generation_id == gid))
        ).all()
    assert len(keys) == 2
    r, g, b = prompt_colour(request.body["prompt"])
    for key in keys:
        shot = np.asarray(Image.open(io.BytesIO(await store.get(key))).convert("RGB"))
        assert shot.shape == (64, 64, 3)
        assert np.array_equal(shot[y : y + h, x : x + w][opaque], product[..., :3][opaque])
        # the scene is the service's (the fake paints the prompt's colour): a top corner,
        # away from the product, its shadow and the watermark (within Lanczos ringing)
        corner = shot[:8, :8].astype(int)
        assert np.abs(corner - (r, g, b)).max() <= 24  # the red channel differs per image


async def test_an_openai_refusal_reaches_the_requester_in_words(
    wired: tuple[Service, Worker], server: FakeOpenAIServer
) -> None:
    service, worker = wired
    photo, _ = photo_on_white()
    upload = await service.upload(_png(photo), ACTOR, WHERE)
    server.moderate_next(message="This image can't be edited.")
    ticket = await service.imagine_with_image(
        "a kitchen counter", ACTOR, WHERE, upload.id, mode=ImageMode.PRODUCT
    )
    await asyncio.wait_for(worker.run(drain=True), timeout=60)
    generation = await service.generation(ticket.generation_ids[0])
    assert generation.status is GenerationStatus.FAILED
    assert generation.error == (
        "The image service refused this edit: This image can't be edited. Rephrase the "
        "prompt, or use another image, and try again."
    )
