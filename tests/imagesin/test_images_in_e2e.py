"""Image prompts and product shots end to end: the service on the real database, the worker with
the real diffusers engine on ``tiny`` (64 px), the stored originals checked pixel by pixel."""

from __future__ import annotations

import asyncio
import io
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from core.brand.preset_files import load_preset
from core.brand.presets import Preset
from core.db import Database
from core.db import models as m
from core.db.uow import sql_uow_factory
from core.db.uploads import SqlUploads
from core.domain import Action, ActionKind, GenerationKind, GenerationStatus, ImageMode
from core.engines.diffusers import DiffusersEngine
from core.engines.registry import EngineRegistry
from core.errors import LockedSetting, NotAllowed, UserError
from core.imaging.metadata import read_parameters, read_xmp
from core.jobs.worker import Worker, WorkerConfig
from core.provenance import setup
from core.service import Service
from core.service.base import ServiceConfig
from core.service.images_in import iw_strength
from core.service.verify import verify
from core.storage.local import LocalImageStore
from tests.imagesin.conftest import ACTOR, PRESET_YAML, WHERE
from tests.imagesin.test_product_pixels import photo_on_white

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

WATERMARKED = PRESET_YAML.replace(
    "product: {anchor: bottom, scale: 0.6, margin: 0.06}",
    "product: {anchor: bottom-right, scale: 0.6, margin: 0.06}\n"
    "watermark: {logo: logos/acme.png, position: bottom-right, opacity: 1.0, scale: 0.25}",
)


@pytest.fixture(scope="module")
def engine() -> DiffusersEngine:
    return DiffusersEngine(device="cpu")  # one per module: the model loads once


@pytest.fixture
def shop(tmp_path: Path) -> Preset:
    folder = tmp_path / "presets"
    (folder / "logos").mkdir(parents=True)
    shutil.copy(REPO / "presets" / "logos" / "acme.png", folder / "logos" / "acme.png")
    (folder / "shop.yaml").write_text(WATERMARKED)
    return load_preset(folder / "shop.yaml")


@pytest.fixture
def wired(
    db: Database, store: LocalImageStore, shop: Preset, engine: DiffusersEngine
) -> tuple[Service, Worker]:
    service = Service(
        sql_uow_factory(db),
        {"shop": shop},
        ServiceConfig(default_preset="shop"),
        store=store,
        uploads=SqlUploads(db),
    )
    engines = EngineRegistry(builtins=False)
    engines.put("diffusers", engine)
    worker = Worker(db, engines, store, {"shop": shop}, WorkerConfig(batch_window_s=0.0))
    return service, worker


async def _images(db: Database, gid: uuid.UUID, store: LocalImageStore) -> list[bytes]:
    async with db.sessions() as session:
        keys = (
            await session.scalars(
                select(m.Image.storage_key)
                .where(m.Image.generation_id == gid)
                .order_by(m.Image.index)
            )
        ).all()
    return [await store.get(key) for key in keys]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_a_product_shot_keeps_every_opaque_product_pixel(
    wired: tuple[Service, Worker], db: Database, store: LocalImageStore
) -> None:
    service, worker = wired
    photo, _ = photo_on_white()
    upload = await service.upload(_png(photo), ACTOR, WHERE)
    ticket = await service.imagine_with_image(
        "a kitchen counter at dawn --n 2 --seed 3", ACTOR, WHERE, upload.id, mode=ImageMode.PRODUCT
    )
    (gid,) = ticket.generation_ids
    await asyncio.wait_for(worker.run(drain=True), timeout=120)

    generation = await service.generation(gid)
    assert generation.status is GenerationStatus.DONE, generation.error
    assert generation.kind is GenerationKind.PRODUCT
    params = generation.params
    assert params.upload == upload.sha256
    assert params.product_box is not None
    assert params.init_image is not None
    x, y, w, h = params.product_box
    assert x + w > 32  # anchored bottom-right: under the preset's watermark corner
    assert y + h > 32
    product = np.asarray(Image.open(io.BytesIO(await store.get(params.init_image))))
    opaque = product[..., 3] == 255
    assert opaque.mean() > 0.5
    async with db.sessions() as session:
        row = await session.get(m.Generation, gid)
        assert row is not None
        assert row.upload_id == upload.id
    originals = await _images(db, gid, store)
    assert len(originals) == 2
    for data in originals:
        shot = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(shot[y : y + h, x : x + w][opaque], product[..., :3][opaque])
        assert "compositeWithTrainedAlgorithmicMedia" in (read_xmp(data) or "")
        # the logo moved off the product to the bottom-left corner
        assert shot[40:62, 1:18].std() > 0

    # reroll makes another product shot from the same upload; a variation is a plain one
    reroll = await service.act(Action(ActionKind.REROLL, gid).custom_id, ACTOR, WHERE)
    vary = await service.act(Action(ActionKind.VARY, gid, 1).custom_id, ACTOR, WHERE)
    await asyncio.wait_for(worker.run(drain=True), timeout=120)
    again = await service.generation(reroll.generation_ids[0])
    assert again.kind is GenerationKind.PRODUCT
    assert again.status is GenerationStatus.DONE
    for data in await _images(db, again.id, store):
        shot = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(shot[y : y + h, x : x + w][opaque], product[..., :3][opaque])
    varied = await service.generation(vary.generation_ids[0])
    assert varied.kind is GenerationKind.VARIATION
    assert varied.status is GenerationStatus.DONE
    assert varied.params.product_box is None


async def test_an_image_prompt_starts_from_the_upload(
    wired: tuple[Service, Worker], db: Database, store: LocalImageStore
) -> None:
    service, worker = wired
    start = Image.new("RGB", (96, 96), (20, 40, 220))
    upload = await service.upload(_png(start), ACTOR, WHERE)
    ticket = await service.imagine_with_image(
        "a beach --n 1 --seed 1", ACTOR, WHERE, upload.id, iw=3.0
    )
    await asyncio.wait_for(worker.run(drain=True), timeout=120)
    generation = await service.generation(ticket.generation_ids[0])
    assert generation.status is GenerationStatus.DONE, generation.error
    assert generation.kind is GenerationKind.IMAGE_PROMPT
    assert generation.params.strength == iw_strength(3.0) == 0.25
    (data,) = await _images(db, generation.id, store)
    mean = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).mean(axis=(0, 1))
    assert mean[2] > mean[0] + 40  # iw 3 keeps the upload's blue (tolerance: a model output)
    assert "Denoising strength: 0.25" in (read_parameters(data) or "")


async def test_the_preset_bounds_image_prompts_and_product_shots(
    service: Service,
) -> None:
    upload = await service.upload(_png(Image.new("RGB", (64, 64), "red")), ACTOR, WHERE)
    with pytest.raises(UserError, match=r"use a value from 0 to 3"):
        await service.imagine_with_image("x", ACTOR, WHERE, upload.id, iw=5.0)
    with pytest.raises(LockedSetting, match="remove --iw"):
        await service.imagine_with_image("x --preset locked", ACTOR, WHERE, upload.id, iw=2.0)
    with pytest.raises(NotAllowed, match="doesn't take image prompts"):
        await service.imagine_with_image("x --preset plain", ACTOR, WHERE, upload.id)
    with pytest.raises(UserError, match="No clear product"):
        await service.imagine_with_image("x", ACTOR, WHERE, upload.id, mode=ImageMode.PRODUCT)


async def test_zoom_out_pan_and_vary_region_keep_the_original_exactly(
    wired: tuple[Service, Worker],
    db: Database,
    store: LocalImageStore,
    provenance: setup.Provenance,
) -> None:
    service, worker = wired
    ticket = await service.imagine("a red circle on blue --n 1 --seed 5", ACTOR, WHERE)
    (gid,) = ticket.generation_ids
    await asyncio.wait_for(worker.run(drain=True), timeout=120)
    (data,) = await _images(db, gid, store)
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    zoom = await service.edit(ACTOR, WHERE, gid, 1, zoom=2.0)
    panned = await service.edit(ACTOR, WHERE, gid, 1, direction="left")
    varied = await service.edit(ACTOR, WHERE, gid, 1, region="top-left", prompt="a green tree")
    await asyncio.wait_for(worker.run(drain=True), timeout=120)

    z = await service.generation(zoom.generation_ids[0])
    assert z.kind is GenerationKind.ZOOM_OUT
    assert z.status is GenerationStatus.DONE, z.error
    assert (z.parent_id, z.source_index) == (gid, 1)
    assert z.params.product_box is not None
    assert z.params.init_image is not None
    x, y, w, h = z.params.product_box
    assert (w, h) == (32, 32)
    layer = np.asarray(Image.open(io.BytesIO(await store.get(z.params.init_image))))
    for shot in await _images(db, z.id, store):
        pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
        assert pixels.shape == original.shape
        assert np.array_equal(pixels[y : y + h, x : x + w], layer[y : y + h, x : x + w, :3])

    p = await service.generation(panned.generation_ids[0])
    assert p.status is GenerationStatus.DONE, p.error
    assert (p.params.width, p.params.height) == (96, 64)
    for shot in await _images(db, p.id, store):
        pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
        assert np.array_equal(pixels[:, 32:], original)  # the original, where it was
        assert not np.array_equal(pixels[:, :32], np.zeros_like(pixels[:, :32]))

    v = await service.generation(varied.generation_ids[0])
    assert v.status is GenerationStatus.DONE, v.error
    assert v.params.edit_region == (0, 0, 21, 21)
    assert "a green tree" in v.params.prompt
    outside = np.ones(original.shape[:2], bool)
    outside[:21, :21] = False
    shots = [
        np.asarray(Image.open(io.BytesIO(s)).convert("RGB")) for s in await _images(db, v.id, store)
    ]
    for pixels in shots:
        assert np.array_equal(pixels[outside], original[outside])
    assert any(not np.array_equal(s[:16, :16], original[:16, :16]) for s in shots)

    # every edit is signed last, with the image it was made from as its ingredient
    for edit in (z, p, v):
        for shot in await _images(db, edit.id, store):
            result = await verify(db, provenance, shot)
            assert (result.verdict, result.how) == ("ours", "signature")
            assert result.evidence.credentials.state == "trusted"
            assert result.evidence.credentials.ingredients[0] == f"onbrand {gid}#1"
            assert result.records[0].generation_id == edit.id

    # a reroll of an edit is the same edit again (new seed); a variation is a plain one
    again = await service.act(Action(ActionKind.REROLL, z.id).custom_id, ACTOR, WHERE)
    child = await service.generation(again.generation_ids[0])
    assert child.kind is GenerationKind.ZOOM_OUT
    assert child.params.init_image == z.params.init_image
    assert child.params.seed != z.params.seed
    vary = await service.act(Action(ActionKind.VARY, z.id, 1).custom_id, ACTOR, WHERE)
    child = await service.generation(vary.generation_ids[0])
    assert child.kind is GenerationKind.VARIATION
    assert child.params.init_image is None


async def test_edits_are_checked_before_anything_is_queued(service: Service) -> None:
    some = uuid.uuid4()
    with pytest.raises(UserError, match="Give one edit"):
        await service.edit(ACTOR, WHERE, some, 1, zoom=2.0, direction="up")
    with pytest.raises(UserError, match=r"use 1\.5 or 2"):
        await service.edit(ACTOR, WHERE, some, 1, zoom=3.0)
    with pytest.raises(UserError, match="top-left"):
        await service.edit(ACTOR, WHERE, some, 1, region="somewhere")
    with pytest.raises(UserError, match="no result"):
        await service.edit(ACTOR, WHERE, some, 1, direction="up")
