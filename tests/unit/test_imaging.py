"""core.imaging: grid, metadata (parameters + AI disclosure), previews, watermark, palette."""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from core.imaging.brand import Position, apply_watermark
from core.imaging.colour import hex_to_rgb, palette_score, srgb_to_lab
from core.imaging.grid import EMPTY_COLOUR, GUTTER_COLOUR, make_grid
from core.imaging.metadata import (
    DIGITAL_SOURCE_TYPE,
    ImageMetadata,
    encode_png,
    format_parameters,
    parameter_settings,
    read_parameters,
    read_xmp,
)
from core.imaging.preview import PreviewFormat, encode_preview
from core.imaging.resize import resample_upscale

CELL_COLOURS = [(200, 60, 50), (50, 120, 200), (230, 190, 70), (80, 170, 110)]


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.new("RGB", size, colour)


def noisy(side: int, seed: int = 0) -> Image.Image:
    return Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(side * side * 3))


def meta(**overrides: object) -> ImageMetadata:
    values: dict[str, object] = {
        "prompt": "a sneaker on a beach, sunset",
        "negative_prompt": "blurry, text",
        "seed": 123,
        "steps": 8,
        "guidance": 5.0,
        "width": 64,
        "height": 64,
        "model": "tiny",
        "preset": "acme",
        "preset_version": "v1a2b3",
        "generation_id": "0b4f5e4e-6a8c-4c47-9d5e-1f3a2b6c7d8e",
        "index": 2,
        "engine": "diffusers",
        "sampler": "Euler a",
    }
    values.update(overrides)
    return ImageMetadata(**values)  # type: ignore[arg-type]


def colours_of(image: Image.Image) -> set[tuple[int, int, int]]:
    raw = image.convert("RGB").tobytes()
    return {(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)}


def rgb_at(image: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    r, g, b = image.convert("RGB").crop((*xy, xy[0] + 1, xy[1] + 1)).tobytes()
    return r, g, b


def cell_origin(grid: Image.Image, slot: int, cell: tuple[int, int]) -> tuple[int, int]:
    gutter = grid.width - 2 * cell[0]
    return (slot % 2) * (cell[0] + gutter), (slot // 2) * (cell[1] + gutter)


# ------------------------------------------------------------------------------------- grid


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_grid_is_two_by_two_with_a_thin_gutter(count: int) -> None:
    images = [solid(c) for c in CELL_COLOURS[:count]]

    grid = make_grid(images, labels=False)

    gutter = grid.width - 2 * 64
    assert grid.mode == "RGB"
    assert 1 <= gutter <= 4
    assert grid.size == (2 * 64 + gutter, 2 * 64 + gutter)
    for slot in range(4):
        x, y = cell_origin(grid, slot, (64, 64))
        expected = CELL_COLOURS[slot] if slot < count else EMPTY_COLOUR
        assert grid.getpixel((x + 32, y + 32)) == expected  # centre of the cell
    assert grid.getpixel((64, 10)) == GUTTER_COLOUR  # between 1 and 2
    assert grid.getpixel((10, 64)) == GUTTER_COLOUR  # between 1 and 3


@pytest.mark.parametrize("side", [64, 1024])
def test_each_image_has_a_label_in_its_corner(side: int) -> None:
    images = [solid(c, (side, side)) for c in CELL_COLOURS[:3]]

    plain = make_grid(images, labels=False)
    labelled = make_grid(images)

    assert plain.size == labelled.size
    corner = max(14, side // 6)
    for slot in range(4):
        x, y = cell_origin(labelled, slot, (side, side))
        box = (x, y, x + corner, y + corner)
        region = labelled.crop(box)
        colours = colours_of(region)
        if slot < 3:
            # a dark badge and a light digit on top of the cell colour
            assert region.tobytes() != plain.crop(box).tobytes()
            assert any(sum(c) < 150 for c in colours), f"no dark badge in cell {slot + 1}"
            assert any(min(c) > 200 for c in colours), f"no light digit in cell {slot + 1}"
        else:
            assert colours == {EMPTY_COLOUR}  # empty cells get no number
        # the rest of the cell is untouched
        assert labelled.getpixel((x + side // 2, y + side // 2)) == plain.getpixel(
            (x + side // 2, y + side // 2)
        )


def test_labels_differ_between_cells() -> None:
    grid = make_grid([solid((128, 128, 128))] * 4)
    crops = []
    for slot in range(4):
        x, y = cell_origin(grid, slot, (64, 64))
        crops.append(grid.crop((x, y, x + 20, y + 20)).tobytes())
    assert len(set(crops)) == 4


def test_grid_fits_odd_sized_and_transparent_images() -> None:
    wide = solid((10, 200, 10), (128, 32))
    clear = Image.new("RGBA", (64, 64), (0, 0, 0, 0))

    grid = make_grid([solid((200, 10, 10)), wide, clear], labels=False)

    assert grid.size[0] == grid.size[1]
    x, y = cell_origin(grid, 1, (64, 64))
    assert grid.getpixel((x + 32, y + 32)) == (10, 200, 10)  # fitted and centred
    assert grid.getpixel((x + 32, y + 2)) == EMPTY_COLOUR  # letterbox
    x, y = cell_origin(grid, 2, (64, 64))
    assert grid.getpixel((x + 32, y + 32)) == (255, 255, 255)  # alpha on a white matte


@pytest.mark.parametrize("count", [0, 5])
def test_grid_rejects_wrong_counts(count: int) -> None:
    with pytest.raises(ValueError, match="1 to 4"):
        make_grid([solid((0, 0, 0))] * count)


def test_grid_is_deterministic() -> None:
    images = [noisy(64, s) for s in range(4)]
    assert make_grid(images).tobytes() == make_grid(images).tobytes()


# --------------------------------------------------------------------------------- metadata


def test_parameters_follow_the_a1111_format() -> None:
    text = format_parameters(
        meta(schedule_type="Karras", model_hash="1a2b3c4d5e", resampled="lanczos x2")
    )

    prompt, negative, settings = text.split("\n")
    assert prompt == "a sneaker on a beach, sunset"
    assert negative == "Negative prompt: blurry, text"
    # A1111's keys first, in A1111's order; ours after them
    assert settings.startswith(
        "Steps: 8, Sampler: Euler a, Schedule type: Karras, CFG scale: 5.0, Seed: 123, "
        "Size: 64x64, Model hash: 1a2b3c4d5e, Model: tiny, Engine: diffusers, "
        "Preset: acme, Preset version: v1a2b3, "
    )
    assert "Generation id: 0b4f5e4e-6a8c-4c47-9d5e-1f3a2b6c7d8e" in settings
    assert "Resampled: lanczos x2" in settings


def test_parameters_of_a_variation_carry_the_denoising_strength() -> None:
    settings = format_parameters(meta(denoising_strength=0.6)).split("\n")[-1]

    assert "Model: tiny, Denoising strength: 0.6, Engine: diffusers" in settings


def test_parameters_quote_values_with_separators_and_skip_empty_lines() -> None:
    text = format_parameters(meta(negative_prompt="", model="org/model:v2, fp16"))

    assert "Negative prompt" not in text
    assert "Schedule type" not in text  # unknown values are left out
    assert "Model hash" not in text
    assert 'Model: "org/model:v2, fp16"' in text


def test_parameter_settings_read_back_what_format_parameters_wrote() -> None:
    text = format_parameters(meta(model="org/model:v2, fp16", schedule_type="SGM Uniform"))

    settings = parameter_settings(text)

    assert settings["Sampler"] == "Euler a"
    assert settings["Schedule type"] == "SGM Uniform"
    assert settings["Model"] == "org/model:v2, fp16"  # unquoted
    assert settings["Seed"] == "123"
    assert settings["Generator"] == "onbrand"
    assert parameter_settings("a prompt without settings") == {}


def test_an_independent_a1111_reader_reads_our_png() -> None:
    """sd-parsers (PyPI) follows A1111's format: it rejects a line without a sampler."""
    sd_parsers = pytest.importorskip("sd_parsers")
    data = encode_png(noisy(32), meta(schedule_type="Karras", model_hash="1a2b3c4d5e"))

    info = sd_parsers.ParserManager().parse(io.BytesIO(data))

    assert info is not None
    assert info.generator is sd_parsers.data.Generators.AUTOMATIC1111
    [sampler] = info.samplers
    assert sampler.name == "Euler a"
    assert sampler.parameters["scheduler"] == "Karras"
    assert sampler.parameters["seed"] == "123"
    assert sampler.parameters["steps"] == "8"
    assert sampler.parameters["cfg_scale"] == "5.0"
    assert sampler.model is not None
    assert (sampler.model.name, sampler.model.hash) == ("tiny", "1a2b3c4d5e")
    assert [p.value for p in sampler.prompts] == ["a sneaker on a beach, sunset"]
    assert [p.value for p in sampler.negative_prompts] == ["blurry, text"]
    assert info.metadata["Preset"] == "acme"  # our keys stay readable as metadata


def test_png_round_trips_parameters_and_pixels() -> None:
    image = noisy(32)
    data = encode_png(image, meta(prompt="café ☕ on a desk"))

    assert data.startswith(b"\x89PNG")
    assert read_parameters(data) == format_parameters(meta(prompt="café ☕ on a desk"))
    with Image.open(io.BytesIO(data)) as back:
        assert back.tobytes() == image.tobytes()  # lossless
    assert encode_png(image, meta()) == encode_png(image, meta())  # stable content hash


def test_read_parameters_of_a_plain_png_is_none() -> None:
    buf = io.BytesIO()
    solid((1, 2, 3)).save(buf, "PNG")
    assert read_parameters(buf.getvalue()) is None


def test_png_xmp_discloses_ai_generation() -> None:
    xmp = read_xmp(encode_png(solid((1, 2, 3)), meta(model="a<b&c")))

    assert xmp is not None
    assert DIGITAL_SOURCE_TYPE in xmp
    assert "AI-generated" in xmp
    assert "a&lt;b&amp;c" in xmp  # escaped


def exiftool_json(path: Path) -> dict[str, object]:
    exe = shutil.which("exiftool")
    if exe is None:
        pytest.fail(
            "exiftool is not installed; install it with "
            "`apt-get install -y libimage-exiftool-perl` (Debian/Ubuntu) "
            "or `brew install exiftool` (macOS)"
        )
    out = subprocess.run(
        [exe, "-j", "-G", "-n", str(path)], capture_output=True, text=True, check=True, timeout=60
    )
    [tags] = json.loads(out.stdout)
    assert isinstance(tags, dict)
    return tags


def test_exiftool_reads_disclosure_and_parameters_from_png(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    path.write_bytes(encode_png(noisy(64), meta()))

    tags = exiftool_json(path)

    assert tags["XMP:DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert str(tags["XMP:Description"]).startswith("AI-generated image, made with onbrand")
    assert tags["XMP:Creator"] == "onbrand"
    assert "onbrand" in str(tags["XMP:Credit"])
    assert tags["PNG:Parameters"] == format_parameters(meta())


@pytest.mark.parametrize(("fmt", "suffix"), [("JPEG", ".jpg"), ("WEBP", ".webp")])
def test_exiftool_reads_disclosure_from_previews(
    tmp_path: Path, fmt: PreviewFormat, suffix: str
) -> None:
    path = tmp_path / f"preview{suffix}"
    path.write_bytes(encode_preview(noisy(64), max_bytes=100_000, format=fmt))

    tags = exiftool_json(path)

    assert tags["XMP:DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert "AI-generated" in str(tags["XMP:Description"])


# --------------------------------------------------------------------------------- previews


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_preview_of_noise_fits_under_max_bytes(fmt: PreviewFormat) -> None:
    image = noisy(1024)
    limit = 150_000  # incompressible noise: forces lower quality and a smaller size

    data = encode_preview(image, max_bytes=limit, format=fmt)

    assert len(data) <= limit
    with Image.open(io.BytesIO(data)) as back:
        assert back.format == fmt
        assert back.size[0] == back.size[1]
        assert back.size[0] < 1024
    assert encode_preview(image, max_bytes=limit, format=fmt) == data


def test_preview_keeps_size_when_it_fits_and_honours_max_side() -> None:
    image = solid((30, 60, 90), (400, 200))

    full = encode_preview(image, max_bytes=10 * 1024 * 1024)
    capped = encode_preview(image, max_bytes=10 * 1024 * 1024, max_side=100)

    with Image.open(io.BytesIO(full)) as back:
        assert back.size == (400, 200)
    with Image.open(io.BytesIO(capped)) as back:
        assert back.size == (100, 50)


def test_preview_drops_alpha_onto_white() -> None:
    data = encode_preview(Image.new("RGBA", (16, 16), (0, 0, 0, 0)), max_bytes=50_000)
    with Image.open(io.BytesIO(data)) as back:
        r, g, b = rgb_at(back, (8, 8))
        assert min(r, g, b) > 245


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": 10, "max_side": 0}, "max_side"),
        ({"max_bytes": 10_000, "format": "GIF"}, "format"),
        ({"max_bytes": 10}, "cannot fit"),
    ],
)
def test_preview_rejects_impossible_requests(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_preview(noisy(64), **kwargs)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- watermark

BLUE = (20, 40, 200)
RED_LOGO = Image.new("RGBA", (40, 20), (255, 0, 0, 255))


def is_reddish(pixel: object) -> bool:
    assert isinstance(pixel, tuple)
    r, g, b = pixel[:3]
    return bool(r > 200 and g < 60 and b < 60)


@pytest.mark.parametrize(
    ("position", "inside", "opposite"),
    [
        ("top-left", (0.1, 0.06), (0.9, 0.94)),
        ("top-right", (0.9, 0.06), (0.1, 0.94)),
        ("bottom-left", (0.1, 0.94), (0.9, 0.06)),
        ("bottom-right", (0.9, 0.94), (0.1, 0.06)),
        ("center", (0.5, 0.5), (0.05, 0.05)),
    ],
)
def test_watermark_lands_in_the_configured_place(
    position: Position, inside: tuple[float, float], opposite: tuple[float, float]
) -> None:
    image = solid(BLUE, (200, 200))

    marked = apply_watermark(image, RED_LOGO, position=position, opacity=1.0, scale=0.25)

    assert marked.size == image.size
    assert marked.mode == "RGB"
    assert is_reddish(marked.getpixel((round(inside[0] * 199), round(inside[1] * 199))))
    assert marked.getpixel((round(opposite[0] * 199), round(opposite[1] * 199))) == BLUE
    assert image.getpixel((100, 100)) == BLUE  # input untouched


def test_watermark_size_and_margin() -> None:
    marked = apply_watermark(
        solid(BLUE, (200, 100)), RED_LOGO, position="top-left", opacity=1.0, scale=0.5, margin=0.1
    )
    # 0.5 × 200 = 100 px wide, 50 px tall (aspect 2:1); margin 0.1 × 100 = 10 px
    raw = marked.tobytes()
    red = [is_reddish(tuple(raw[i : i + 3])) for i in range(0, len(raw), 3)]
    xs = [i % marked.width for i, r in enumerate(red) if r]
    ys = [i // marked.width for i, r in enumerate(red) if r]
    assert (min(xs), min(ys), max(xs) + 1, max(ys) + 1) == (10, 10, 110, 60)


def test_watermark_opacity_is_respected() -> None:
    image = solid((0, 0, 255), (100, 100))

    half = apply_watermark(image, RED_LOGO, position="center", opacity=0.5, scale=0.4)
    none = apply_watermark(image, RED_LOGO, position="center", opacity=0.0, scale=0.4)

    r, g, b = rgb_at(half, (50, 50))
    assert 110 <= r <= 145
    assert 110 <= b <= 145
    assert g == 0
    assert none.tobytes() == image.tobytes()


def test_watermark_keeps_alpha_of_transparent_images() -> None:
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    marked = apply_watermark(image, RED_LOGO, position="top-left", opacity=1.0, scale=0.2)
    assert marked.mode == "RGBA"
    assert marked.getpixel((99, 99)) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"position": "middle"}, "position"),
        ({"opacity": 1.5}, "opacity"),
        ({"opacity": -0.1}, "opacity"),
        ({"scale": 0.0}, "scale"),
        ({"scale": 1.2}, "scale"),
        ({"margin": 0.5}, "margin"),
        ({"scale": 1.0, "margin": 0.05}, "does not fit"),
    ],
)
def test_watermark_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"position": "top-left", "opacity": 0.5, "scale": 0.2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        apply_watermark(solid(BLUE, (100, 100)), RED_LOGO, **args)  # type: ignore[arg-type]


def test_watermark_rejects_a_logo_too_tall_for_the_image() -> None:
    tall = Image.new("RGBA", (10, 100), (255, 0, 0, 255))
    with pytest.raises(ValueError, match="does not fit"):
        apply_watermark(solid(BLUE, (100, 50)), tall, position="center", opacity=1, scale=0.2)


# ---------------------------------------------------------------------------------- palette

PALETTE = ["#0A2540", "#635BFF", "#F6F9FC", "#00D4FF"]


def stripes(colours: list[tuple[int, int, int]], side: int = 1024) -> Image.Image:
    image = Image.new("RGB", (side, side))
    draw = ImageDraw.Draw(image)
    band = side // len(colours)
    for i, colour in enumerate(colours):
        draw.rectangle(
            (i * band, 0, (i + 1) * band - 1 if i < len(colours) - 1 else side, side), fill=colour
        )
    return image


def test_palette_coloured_image_scores_high() -> None:
    image = stripes([hex_to_rgb(c) for c in PALETTE])
    assert palette_score(image, PALETTE) >= 0.95


def test_far_off_image_scores_low() -> None:
    blues = ["#0033CC", "#3366FF", "#99CCFF"]
    oranges = [(255, 204, 51), (204, 153, 0), (255, 102, 0)]  # their complements
    assert palette_score(stripes(oranges), blues) < 0.4
    assert palette_score(stripes([hex_to_rgb(c) for c in blues]), blues) >= 0.95


def test_palette_score_falls_as_colours_drift_away() -> None:
    base = hex_to_rgb("#635BFF")
    scores = []
    for shift in (0, 30, 60, 120, 200):
        colour = (min(255, base[0] + shift), max(0, base[1] - shift // 2), max(0, base[2] - shift))
        scores.append(palette_score(solid(colour, (256, 256)), ["#635BFF"]))
    assert scores[0] >= 0.99
    assert scores == sorted(scores, reverse=True)
    assert scores[-1] < scores[0] - 0.5
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_palette_score_weights_by_pixel_share() -> None:
    on, off = hex_to_rgb(PALETTE[1]), (255, 160, 0)
    mostly_on = palette_score(stripes([on, on, on, off]), PALETTE)
    mostly_off = palette_score(stripes([on, off, off, off]), PALETTE)
    assert mostly_on > mostly_off


def test_palette_score_handles_alpha_and_small_images() -> None:
    assert palette_score(Image.new("RGBA", (3, 2), (99, 91, 255, 255)), PALETTE) >= 0.99


@pytest.mark.parametrize("palette", [[], ["blue"], ["#12345"], ["#GGGGGG"]])
def test_palette_score_rejects_bad_palettes(palette: list[str]) -> None:
    with pytest.raises(ValueError, match=r"palette|hex colour"):
        palette_score(solid((0, 0, 0)), palette)


def test_lab_conversion_matches_reference_values() -> None:
    assert srgb_to_lab((255, 255, 255)) == pytest.approx((100.0, 0.0, 0.0), abs=0.01)
    assert srgb_to_lab((0, 0, 0)) == pytest.approx((0.0, 0.0, 0.0), abs=0.01)
    assert srgb_to_lab((255, 0, 0)) == pytest.approx((53.24, 80.09, 67.20), abs=0.05)
    assert hex_to_rgb("#fa0") == (255, 170, 0)


# ---------------------------------------------------------------------------------- upscale


def test_resample_upscale_multiplies_size() -> None:
    image = noisy(16)
    assert resample_upscale(image, 4).size == (64, 64)
    same = resample_upscale(image, 1)
    assert same.tobytes() == image.tobytes()
    assert same is not image


@pytest.mark.parametrize("factor", [0, 9, -2, 2.0, True])
def test_resample_upscale_rejects_bad_factors(factor: object) -> None:
    with pytest.raises(ValueError, match="factor"):
        resample_upscale(solid((0, 0, 0)), factor)  # type: ignore[arg-type]
