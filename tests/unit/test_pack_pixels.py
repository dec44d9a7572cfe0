"""Pack pixels with an engine (issue 16, part B): outpainting once per target aspect with the
source's pixels kept bit for bit, the method each file records, engine enlargements, and the
same on the real diffusers engine with the bundled ``tiny`` model."""

from __future__ import annotations

import csv
import io
import math
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.brand.placements import default_placements, parse_placements
from core.engines.fake import FakeEngine
from core.imaging.metadata import COMPOSITE_SOURCE_TYPE, DIGITAL_SOURCE_TYPE, iptc_fields, read_xmp
from core.imaging.pack import extend_canvas, outpaint_compose, outpaint_frame, outpaint_inputs
from core.imaging.placement_geometry import plan, saliency_box
from core.service.pack_pixels import (
    OUTPAINT,
    PENDING_OUTPAINT,
    PackCancelled,
    PackPrompt,
    _outpaint,
    build_pack,
)

DEFAULTS = default_placements()


def picture(size: tuple[int, int] = (96, 96)) -> Image.Image:
    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size[0] // 3, size[1] // 3, 2 * size[0] // 3, 2 * size[1] // 3), fill="orange")
    return image


def rows_and_files(data: bytes) -> tuple[dict[str, dict[str, str]], dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    manifest = next(v for k, v in files.items() if k.endswith("manifest.csv"))
    rows = {r["placement"]: r for r in csv.DictReader(io.StringIO(manifest.decode()))}
    return rows, files


def aspect(size: tuple[int, int]) -> tuple[int, int]:
    g = math.gcd(*size)
    return size[0] // g, size[1] // g


async def test_outpainting_once_per_aspect_and_the_method_of_every_file() -> None:
    source = picture()
    engine = FakeEngine()
    chosen = list(DEFAULTS.values())
    made = await build_pack(
        source,
        source_ref="g:1",
        campaign="c",
        placements=chosen,
        inpainter=engine,
        model="fake",
        prompt=PackPrompt("a kettle", steps=2, seed=5),
    )
    rows, files = rows_and_files(made.zip_bytes)
    box = saliency_box(source)
    extended = [
        p for p in chosen if plan(source.size, box, p.size, p.safe.as_tuple()).method == "extend"
    ]
    assert extended  # 728x90 and 160x600 can't be cut from a square
    inpaints = [c for c in engine.calls if c.method == "inpaint"]
    assert len(inpaints) == len({aspect(p.size) for p in extended})  # one per distinct aspect
    for placement in chosen:
        row = rows[placement.name]
        extend = placement in extended
        assert row["method"] == f"{OUTPAINT if extend else 'crop'}, lanczos"
        data = files[f"c/{placement.name}.{placement.extension}"]
        fields = iptc_fields(read_xmp(data) or "")
        assert fields["DigitalSourceType"] == (
            COMPOSITE_SOURCE_TYPE if extend else DIGITAL_SOURCE_TYPE
        )
        assert row["note"] == ""


async def test_progress_runs_once_from_start_to_end_over_all_outpaints() -> None:
    seen: list[tuple[int, int]] = []
    await build_pack(
        picture(),
        source_ref="g:1",
        campaign=None,
        placements=[DEFAULTS["display-728x90"], DEFAULTS["display-160x600"]],
        inpainter=FakeEngine(),
        model="fake",
        prompt=PackPrompt(steps=3),
        progress=lambda job_id, step, total: seen.append((step, total)),
    )
    assert seen == [(step, 6) for step in range(1, 7)]


async def test_without_an_engine_the_extension_is_blurred_and_says_so() -> None:
    banner = DEFAULTS["display-728x90"]
    made = await build_pack(picture(), source_ref="g:1", campaign=None, placements=[banner])
    assert made.files[0].method == f"{PENDING_OUTPAINT}, lanczos"


async def test_the_outpaint_canvas_keeps_the_source_and_generates_the_rest() -> None:
    source = picture((96, 64))
    engine = FakeEngine()
    banner, skyscraper = DEFAULTS["display-728x90"], DEFAULTS["display-160x600"]
    box = saliency_box(source)
    plans = [(p, plan(source.size, box, p.size, p.safe.as_tuple())) for p in (banner, skyscraper)]
    done = await _outpaint(
        source, plans, engine, "fake", PackPrompt(steps=1), 64 * 64, "j", None, None
    )
    assert len(done) == 2
    for placement, decided in plans:
        out = done[aspect(placement.size)]
        x, y = -out.frame[0], -out.frame[1]
        kept = out.image.crop((x, y, x + source.width, y + source.height))
        assert kept.tobytes() == source.tobytes()  # pasted: bit for bit
        window = out.window(decided.rect)
        assert window.size == decided.rect[2:]
        blurred = np.asarray(extend_canvas(source, out.frame), dtype=np.int16)
        new = np.asarray(out.image, dtype=np.int16)
        outside = np.ones(new.shape[:2], dtype=bool)
        outside[y : y + source.height, x : x + source.width] = False
        # the new area is the engine's picture, not the blurred fill
        assert np.abs(new - blurred)[outside].mean() > 10


def test_the_outpaint_mask_keeps_the_source_less_its_inner_edges() -> None:
    source = Image.new("RGB", (64, 64), "red")
    frame = outpaint_frame(source.size, [(-64, 0, 192, 64)])
    assert frame == (-64, 0, 192, 64)
    start, mask = outpaint_inputs(source, frame, (96, 32), overlap=2)
    assert start.size == mask.size == (96, 32)
    m = np.asarray(mask)
    # the source spans x 32..64 of the work canvas; its left and right edges border new area
    assert m[:, 34:62].max() == 0
    assert m[:, :34].min() == 255
    assert m[:, 62:].min() == 255
    composed = outpaint_compose(Image.new("RGB", (96, 32), "blue"), source, frame)
    assert composed.image.getpixel((64, 10)) == (255, 0, 0)
    assert composed.image.getpixel((10, 10)) == (0, 0, 255)


async def test_large_enlargements_go_through_the_upscaler_or_a_refine() -> None:
    source = picture((64, 64))
    small = parse_placements(
        "placements:\n  near:\n    size: [96, 96]\n    format: png\n"
        "  big:\n    size: [400, 400]\n    format: png\n    max_bytes: 2000000\n",
        "p.yaml",
    )
    chosen = list(small.values())
    engine = FakeEngine()
    made = await build_pack(
        source,
        source_ref="g:1",
        campaign=None,
        placements=chosen,
        inpainter=engine,
        model="fake",
        upscaler="x4",
    )
    assert [f.method for f in made.files] == ["crop, lanczos", "crop, upscaler x4"]
    assert [c.method for c in engine.calls] == ["upscale"]
    refined = await build_pack(
        source,
        source_ref="g:1",
        campaign=None,
        placements=chosen,
        inpainter=engine,
        model="fake",
        refine=0.2,
        prompt=PackPrompt("a kettle", steps=4),
    )
    assert [f.method for f in refined.files] == ["crop, lanczos", "crop, lanczos+refine 0.2"]
    assert [c.method for c in engine.calls] == ["upscale", "vary"]
    _, files = rows_and_files(refined.zip_bytes)
    plain = await build_pack(source, source_ref="g:1", campaign=None, placements=chosen)
    _, plain_files = rows_and_files(plain.zip_bytes)
    with (
        Image.open(io.BytesIO(files["onbrand/big.png"])) as a,
        Image.open(io.BytesIO(plain_files["onbrand/big.png"])) as b,
    ):
        assert a.size == b.size == (400, 400)
        assert a.tobytes() != b.tobytes()  # the refine changed the enlargement


async def test_a_cancel_during_the_outpaint_makes_no_pack() -> None:
    engine = FakeEngine()
    with pytest.raises(PackCancelled):
        await build_pack(
            picture(),
            source_ref="g:1",
            campaign=None,
            placements=[DEFAULTS["display-728x90"]],
            inpainter=engine,
            model="fake",
            cancelled=lambda job_id: True,
        )


@pytest.mark.slow
async def test_the_tiny_diffusers_outpaint_keeps_the_original_bit_identical() -> None:
    from core.engines.diffusers import DiffusersEngine

    engine = DiffusersEngine(device="cpu")
    source = picture((64, 64))
    banner, feed = DEFAULTS["display-728x90"], DEFAULTS["instagram-feed"]
    box = saliency_box(source)
    plans = [(p, plan(source.size, box, p.size, p.safe.as_tuple())) for p in (banner, feed)]
    prompt = PackPrompt("a red circle on a blue background", steps=3, guidance=4.0, seed=3)
    done = await _outpaint(source, plans, engine, "tiny", prompt, 64 * 256, "j", None, None)
    assert list(done) == [aspect(banner.size)]  # the square is a crop
    out = done[aspect(banner.size)]
    x, y = -out.frame[0], -out.frame[1]
    kept = out.image.crop((x, y, x + 64, y + 64))
    assert kept.tobytes() == source.tobytes()
    # the banner's window before the final resize: the part of the source it shows is unchanged
    rx, ry, rw, rh = plans[0][1].rect
    window = out.window(plans[0][1].rect)
    x0, y0, x1, y1 = max(rx, 0), max(ry, 0), min(rx + rw, 64), min(ry + rh, 64)
    assert x1 > x0
    assert y1 > y0
    shown = window.crop((x0 - rx, y0 - ry, x1 - rx, y1 - ry))
    assert shown.tobytes() == source.crop((x0, y0, x1, y1)).tobytes()
    new = np.asarray(out.image, dtype=np.int16)
    outside = np.ones(new.shape[:2], dtype=bool)
    outside[y : y + 64, x : x + 64] = False
    blurred = np.asarray(extend_canvas(source, out.frame), dtype=np.int16)
    assert (
        np.abs(new - blurred)[outside].mean() > 20
    )  # generated (measured ~83), not the blurred fill
