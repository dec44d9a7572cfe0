"""Campaign packs (issue 16, first slice): every placement at its exact size under its byte
limit, the manifest, the contact sheet, the disclosure, and the use case's refusals on the real
database."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import uuid
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from core.brand.placements import default_placements, parse_placements
from core.brand.preset_files import parse_preset
from core.db import Database
from core.db.uow import sql_uow_factory
from core.db.uploads import SqlUploads
from core.domain import Actor, Platform, ReplyTarget
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.errors import NotFound, UserError
from core.imaging.metadata import COMPOSITE_SOURCE_TYPE, DIGITAL_SOURCE_TYPE, iptc_fields, read_xmp
from core.jobs.worker import Worker, WorkerConfig
from core.provenance import setup
from core.service import Service
from core.service.base import ServiceConfig
from core.service.packs import PENDING_OUTPAINT, build_pack
from core.service.verify import verify
from core.storage.local import LocalImageStore

DEFAULTS = default_placements()
ANN = Actor(Platform.CLI, "local", "ann", "ann")
HERE = ReplyTarget(Platform.CLI, "local", "terminal")
PRESET = """
name: packs
brand: Packs
prompt: "{prompt}"
aspect_ratios: {"1:1": [64, 64]}
default_aspect: "1:1"
engine: {kind: fake, model: fake, steps: 2, guidance: 5.0}
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
"""


def picture(size: tuple[int, int] = (96, 96)) -> Image.Image:
    image = Image.new("RGB", size, (40, 90, 160))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size[0] // 3, size[1] // 3, 2 * size[0] // 3, 2 * size[1] // 3), fill="orange")
    return image


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


async def test_every_default_placement_at_its_exact_size_under_its_limit() -> None:
    logo = Image.new("RGBA", (40, 20), (255, 255, 255, 255))
    made = await build_pack(
        picture(),
        source_ref="g:1",
        campaign="Spring launch!",
        placements=list(DEFAULTS.values()),
        logo=logo,
    )
    files = unzip(made.zip_bytes)
    assert made.campaign == "Spring-launch"
    rows = list(csv.DictReader(io.StringIO(files["Spring-launch/manifest.csv"].decode())))
    assert [r["placement"] for r in rows] == list(DEFAULTS)  # one row per placement
    for row in rows:
        placement = DEFAULTS[row["placement"]]
        data = files[f"Spring-launch/{placement.name}.{placement.extension}"]
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == placement.size
            assert image.format == placement.format.upper()
        assert len(data) <= placement.max_bytes
        assert int(row["bytes"]) == len(data)
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["source"] == "g:1"
        fields = iptc_fields(read_xmp(data) or "")
        composite = row["method"].startswith(PENDING_OUTPAINT)
        assert fields["DigitalSourceType"] == (
            COMPOSITE_SOURCE_TYPE if composite else DIGITAL_SOURCE_TYPE
        )
    methods = {r["placement"]: r["method"].split(",")[0] for r in rows}
    assert methods["instagram-feed"] == "crop"  # a square from a square
    assert methods["display-728x90"] == PENDING_OUTPAINT  # 8:1 from a square with a centred subject
    with Image.open(io.BytesIO(files["Spring-launch/contact-sheet.png"])) as sheet:
        assert sheet.width >= 5 * 200


async def test_the_logo_lands_inside_the_safe_area() -> None:
    story = DEFAULTS["story-reel"]
    logo = Image.new("RGBA", (50, 50), (255, 0, 0, 255))
    grey = Image.new("RGB", (1080, 1920), (128, 128, 128))
    made = await build_pack(grey, source_ref="g:1", campaign=None, placements=[story], logo=logo)
    with Image.open(io.BytesIO(unzip(made.zip_bytes)["onbrand/story-reel.jpg"])) as image:
        pixels = image.convert("RGB").load()
        reds = [
            (x, y)
            for y in range(0, 1920, 4)
            for x in range(0, 1080, 4)
            if pixels[x, y][0] > 200 and pixels[x, y][1] < 80
        ]
    assert reds
    assert min(y for _, y in reds) >= 0.14 * 1920  # below the top band
    assert max(x for x, _ in reds) <= 1080 * (1 - 0.06)  # left of the right band


async def test_a_byte_limit_that_cannot_be_met_is_refused_by_name() -> None:
    tiny = parse_placements(
        "placements:\n  huge-png:\n    size: [1600, 1600]\n    format: png\n    max_bytes: 10000\n",
        "p.yaml",
    )
    noisy = Image.effect_noise((64, 64), 80).convert("RGB")
    with pytest.raises(UserError, match="Placement huge-png: as PNG it takes"):
        await build_pack(noisy, source_ref="g:1", campaign=None, placements=list(tiny.values()))


async def test_pack_from_a_finished_image_and_the_refusals(
    db: Database, tmp_path: Path, provenance: setup.Provenance
) -> None:
    preset = parse_preset(PRESET)
    store = LocalImageStore(tmp_path / "images")
    service = Service(
        sql_uow_factory(db),
        {preset.name: preset},
        ServiceConfig(preset.name),
        store=store,
        uploads=SqlUploads(db),
    )
    ticket = await service.imagine("a red kettle --n 2", ANN, HERE)
    gid = ticket.generation_ids[0]
    with pytest.raises(UserError, match="not finished"):
        await service.pack(ANN, gid, 1)
    engines = EngineRegistry()
    engines.put("fake", FakeEngine())
    worker = Worker(
        db, engines, store, {preset.name: preset}, WorkerConfig(max_batch=4, batch_window_s=0)
    )
    await asyncio.wait_for(worker.run(drain=True), timeout=60)

    made = await service.pack(ANN, gid, 2, ["story-reel", "display-300x250"])
    assert [f.placement for f in made.files] == ["story-reel", "display-300x250"]
    assert made.source == f"{gid}:2"
    assert [f.method for f in made.files] == [f"{PENDING_OUTPAINT}, lanczos", "crop, lanczos"]
    files = unzip(made.zip_bytes)
    with Image.open(io.BytesIO(files["onbrand/story-reel.jpg"])) as image:
        assert image.size == (1080, 1920)
    # every file is signed (the source original as its ingredient, the signature within the
    # byte limit) and carries the source's watermark
    limits = {p.name: p.max_bytes for p in default_placements().values()}
    for made_file in made.files:
        data = files[made_file.path]
        assert len(data) <= limits[made_file.placement]
        result = await verify(db, provenance, data)
        assert (result.verdict, result.how) == ("ours", "signature")
        assert result.evidence.credentials.state == "trusted"
        assert result.evidence.credentials.ingredients[0] == f"onbrand {gid}#2"
        assert result.records[0].generation_id == gid
        extended = not made_file.method.startswith("crop")
        assert result.evidence.credentials.kind == ("pack_extend" if extended else "pack")
        assert result.evidence.credentials.actions[-1] == (
            "c2pa.edited" if extended else "c2pa.resized"
        )
        stripped = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").save(stripped, "JPEG", quality=80)
        by_mark = await verify(db, provenance, stripped.getvalue())
        assert (by_mark.verdict, by_mark.how) == ("ours", "watermark")
    with pytest.raises(UserError, match="Unknown placement 'tiktok'; the placements are: "):
        await service.pack(ANN, gid, 1, ["tiktok"])
    with pytest.raises(UserError, match="has images 1 to 2"):
        await service.pack(ANN, gid, 3)
    with pytest.raises(NotFound, match="no result"):
        await service.pack(ANN, uuid.UUID(int=7), 1)


@pytest.mark.parametrize("rect", [(-40, 0, 176, 96), (0, -30, 96, 150), (-5, -7, 200, 120)])
def test_an_extended_window_keeps_the_source_pixels_bit_identical(
    rect: tuple[int, int, int, int],
) -> None:
    from core.imaging.pack import extend_canvas

    source = Image.effect_noise((96, 96), 60).convert("RGB")
    canvas = extend_canvas(source, rect)
    assert canvas.size == rect[2:]
    x, y = -rect[0], -rect[1]
    kept = canvas.crop((x, y, x + 96, y + 96))
    assert kept.tobytes() == source.tobytes()


async def test_a_campaign_that_requires_approval_refuses_then_allows_after_approval(
    db: Database, tmp_path: Path
) -> None:
    from sqlalchemy import text

    from core.domain import FeedbackKind, Role
    from core.errors import NotAllowed

    preset = parse_preset(PRESET)
    store = LocalImageStore(tmp_path / "images")
    service = Service(
        sql_uow_factory(db),
        {preset.name: preset},
        ServiceConfig(preset.name, reviewers=frozenset({"cli:rita"})),
        store=store,
        uploads=SqlUploads(db),
    )
    admin = Actor(Platform.CLI, "local", "ada", "ada", frozenset({Role.ADMIN}))
    with pytest.raises(UserError, match="require_approval takes pack and export, not 'print'"):
        await service.create_campaign(admin, "gated", preset.name, require_approval=["print"])
    gated = await service.create_campaign(admin, "gated", preset.name, require_approval=["pack"])
    assert gated.require_approval == ("pack",)
    assert (await service.campaigns())[0].require_approval == ("pack",)
    ticket = await service.imagine("a green teapot --campaign gated --n 2", ANN, HERE)
    gid = ticket.generation_ids[0]
    engines = EngineRegistry()
    engines.put("fake", FakeEngine())
    worker = Worker(
        db, engines, store, {preset.name: preset}, WorkerConfig(max_batch=4, batch_window_s=0)
    )
    await asyncio.wait_for(worker.run(drain=True), timeout=60)

    with pytest.raises(NotAllowed, match=r"Campaign gated packs only approved images.*cli:rita"):
        await service.pack(ANN, gid, 1, ["display-300x250"])
    rita = Actor(Platform.CLI, "local", "rita", "rita", frozenset({Role.REVIEWER}))
    async with sql_uow_factory(db)() as uow:
        ids = await uow.repo.image_ids(gid)
        user = await uow.repo.ensure_user(rita)
        await uow.repo.add_feedback(gid, ids[2], user, FeedbackKind.APPROVE, "white_check_mark")
        await uow.commit()
    with pytest.raises(NotAllowed):  # image 2's approval does not approve image 1
        await service.pack(ANN, gid, 1, ["display-300x250"])
    made = await service.pack(ANN, gid, 2, ["display-300x250"])
    assert [f.placement for f in made.files] == ["display-300x250"]
    async with db.engine.connect() as conn:
        actions = (
            await conn.execute(
                text("SELECT action, subject FROM audit_log WHERE action LIKE 'pack.%' ORDER BY id")
            )
        ).all()
    assert [tuple(a) for a in actions] == [
        ("pack.refused", f"{gid}:1"),
        ("pack.refused", f"{gid}:1"),
        ("pack.made", f"{gid}:2"),
    ]


async def test_a_product_box_is_kept_whole_and_clear_of_the_story_bands() -> None:
    from core.imaging.placement_geometry import plan

    story = DEFAULTS["story-reel"]
    source = Image.new("RGB", (200, 200), (30, 30, 30))
    box = (150, 20, 40, 40)  # a bright product near the top-right corner
    source.paste((250, 250, 0), (150, 20, 190, 60))
    made = await build_pack(
        source, source_ref="g:1", campaign=None, placements=[story], product_box=box
    )
    assert made.protected_from == "product"
    assert made.protected == box
    decided = plan(source.size, box, story.size, story.safe.as_tuple())
    with Image.open(io.BytesIO(unzip(made.zip_bytes)["onbrand/story-reel.jpg"])) as image:
        rgb = image.convert("RGB")
    yellow = [
        (x, y)
        for y in range(0, 1920, 6)
        for x in range(0, 1080, 6)
        if (p := rgb.getpixel((x, y)))[0] > 200 and p[1] > 200 and p[2] < 90  # type: ignore[index]
    ]
    assert yellow
    assert min(y for _, y in yellow) >= 0.14 * 1920 - 12  # below the top band (Lanczos ring)
    assert max(x for x, _ in yellow) <= 1080 * (1 - 0.06) + 12
    assert decided.method == "extend"  # the corner product needs room above and right


async def test_the_preset_s_own_placements_replace_the_defaults(
    db: Database, tmp_path: Path
) -> None:
    from core.brand.preset_files import load_preset

    (tmp_path / "packs.yaml").write_text(PRESET)
    (tmp_path / "placements").mkdir()
    (tmp_path / "placements" / "packs.yaml").write_text(
        "placements:\n  shop-banner:\n    size: [600, 200]\n    format: png\n"
    )
    preset = load_preset(tmp_path / "packs.yaml")
    store = LocalImageStore(tmp_path / "images")
    service = Service(
        sql_uow_factory(db),
        {preset.name: preset},
        ServiceConfig(preset.name),
        store=store,
        uploads=SqlUploads(db),
    )
    gid = (await service.imagine("a lamp --n 1", ANN, HERE)).generation_ids[0]
    engines = EngineRegistry()
    engines.put("fake", FakeEngine())
    worker = Worker(
        db, engines, store, {preset.name: preset}, WorkerConfig(max_batch=4, batch_window_s=0)
    )
    await asyncio.wait_for(worker.run(drain=True), timeout=60)
    made = await service.pack(ANN, gid, 1)
    assert [(f.path, f.size) for f in made.files] == [("onbrand/shop-banner.png", (600, 200))]
    with pytest.raises(UserError, match="Unknown placement 'story-reel'; the placements are: shop"):
        await service.pack(ANN, gid, 1, ["story-reel"])
