"""Placements: the shipped set, validation with file/line/key, and crop-or-extend geometry."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from core.brand.placements import default_placements, parse_placements
from core.errors import PresetError
from core.imaging.placement_geometry import (
    box_in_target,
    clamp_box,
    inside_safe,
    plan,
    saliency_box,
)

DEFAULTS = default_placements()

ISSUE_SIZES = {
    (1080, 1080), (1080, 1350), (1080, 1920), (1200, 628), (1600, 900), (1280, 720),
    (300, 250), (728, 90), (160, 600), (970, 250),
}  # fmt: skip


def test_the_shipped_set_has_every_size_the_issue_names() -> None:
    assert {p.size for p in DEFAULTS.values()} == ISSUE_SIZES
    story = DEFAULTS["story-reel"]
    assert story.safe.top > 0.1
    assert story.safe.bottom > 0.1


def test_problems_name_the_file_the_line_and_the_key() -> None:
    text = (
        "placements:\n"
        "  feed:\n"
        "    size: [1080, 1080]\n"
        "    format: gif\n"
        "  story:\n"
        "    size: [1080, 1920]\n"
        "    safe: {top: 0.6}\n"
        "    watermark: {corner: middle}\n"
        "  Bad_Name:\n"
        "    size: [8, 100000]\n"
        "    colour: red\n"
    )
    with pytest.raises(PresetError) as caught:
        parse_placements(text, "brand/placements.yaml")
    message = str(caught.value)
    assert "brand/placements.yaml:4: placements.feed.format:" in message
    assert "brand/placements.yaml:7: placements.story.safe.top:" in message
    assert "brand/placements.yaml:8: placements.story.watermark.corner:" in message
    assert "brand/placements.yaml:9: placements.Bad_Name:" in message
    assert "placements.Bad_Name.colour: unknown key 'colour'" in message
    assert "placements.Bad_Name.size: each side must be 16 to 4096 pixels" in message


def test_not_a_mapping_and_bad_yaml_are_refused_with_a_line() -> None:
    with pytest.raises(PresetError, match=r"p.yaml:\d+: invalid YAML"):
        parse_placements("placements:\n  a: [\n", "p.yaml")
    with pytest.raises(PresetError, match="mapping"):
        parse_placements("- 1\n", "p.yaml")


sizes = st.tuples(st.integers(16, 2048), st.integers(16, 2048))


@st.composite
def cases(draw: st.DrawFn) -> tuple[tuple[int, int], tuple[int, int, int, int], str]:
    width, height = draw(sizes)
    x = draw(st.integers(0, width - 1))
    y = draw(st.integers(0, height - 1))
    w = draw(st.integers(1, width - x))
    h = draw(st.integers(1, height - y))
    return (width, height), (x, y, w, h), draw(st.sampled_from(sorted(DEFAULTS)))


@settings(max_examples=400, deadline=None)
@given(cases())
def test_the_box_is_never_cut_nor_in_a_band_and_crops_stay_in_the_source(
    case: tuple[tuple[int, int], tuple[int, int, int, int], str],
) -> None:
    source, box, name = case
    placement = DEFAULTS[name]
    safe = placement.safe.as_tuple()
    result = plan(source, box, placement.size, safe)
    x, y, w, h = result.rect
    assert w >= 1
    assert h >= 1
    # the window has the placement's aspect to within a pixel of rounding each way
    tw, th = placement.size
    assert abs(w * th - h * tw) <= max(tw, th) + max(w, h)
    assert inside_safe(box, result.rect, placement.size, safe)
    left, top, right, bottom = box_in_target(box, result.rect, placement.size)
    assert 0 <= left < right <= 1
    assert 0 <= top < bottom <= 1
    inside_source = x >= 0 and y >= 0 and x + w <= source[0] and y + h <= source[1]
    assert inside_source == (result.method == "crop")


@settings(max_examples=200, deadline=None)
@given(sizes, st.sampled_from(sorted(DEFAULTS)))
def test_a_crop_is_chosen_whenever_the_whole_picture_may_be_the_subject_of_a_same_aspect_source(
    source: tuple[int, int], name: str
) -> None:
    placement = DEFAULTS[name]
    tw, th = placement.size
    # a source of the same aspect with a small box in the middle: always a crop
    width = source[0]
    height = max(16, round(width * th / tw))
    box = (width // 2 - 1, height // 2 - 1, 2, 2)
    result = plan((width, height), box, placement.size, placement.safe.as_tuple())
    assert result.method == "crop"


def test_a_tall_placement_from_a_square_with_a_wide_subject_is_extended() -> None:
    story = DEFAULTS["story-reel"]
    result = plan((1024, 1024), (100, 400, 824, 200), story.size, story.safe.as_tuple())
    assert result.method == "extend"
    assert result.rect[1] < 0 or result.rect[1] + result.rect[3] > 1024 or result.rect[0] < 0


def test_the_saliency_box_finds_the_busy_part() -> None:
    image = Image.new("RGB", (256, 128), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    for i in range(0, 40, 4):  # stripes at x 180-220, y 30-70
        draw.rectangle((180 + i, 30, 181 + i, 70), fill=(0, 0, 0))
    x, y, w, h = saliency_box(image)
    assert 160 <= x <= 185
    assert x + w <= 235
    assert 20 <= y <= 35
    assert y + h <= 85
    flat = saliency_box(Image.new("RGB", (64, 48), (9, 9, 9)))
    assert clamp_box(flat, (64, 48)) == flat
    assert flat[2] >= 32
    assert flat[3] >= 24


def test_a_preset_may_ship_its_own_placements(tmp_path: Path) -> None:
    from core.brand.placements import placements_for, preset_placements_file

    preset_file = tmp_path / "shop.yaml"
    assert placements_for(str(preset_file), "shop") == DEFAULTS  # none of its own
    assert placements_for(None, "shop") == DEFAULTS
    own = preset_placements_file(str(preset_file), "shop")
    assert own == tmp_path / "placements" / "shop.yaml"
    own.parent.mkdir()
    own.write_text("placements:\n  shop-banner:\n    size: [600, 200]\n    format: webp\n")
    mine = placements_for(str(preset_file), "shop")
    assert list(mine) == ["shop-banner"]
    assert mine["shop-banner"].extension == "webp"
    own.write_text("placements:\n  shop-banner:\n    size: [600, 200]\n    max_bytes: 5\n")
    with pytest.raises(PresetError, match=rf"{own}:4: placements.shop-banner.max_bytes"):
        placements_for(str(preset_file), "shop")
