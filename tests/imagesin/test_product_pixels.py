"""Product shots in pixels (no model): the cut-out, the placement rules, and the guarantee that
every fully opaque product pixel is bit-identical in the finished shot."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from core.errors import UserError
from core.imaging.product import (
    clear_corner,
    finish_product_shot,
    inpaint_inputs,
    place_product,
    product_alpha,
)

ANCHORS = ["center", "top", "bottom", "left", "right", "top-left", "top-right", "bottom-left",
           "bottom-right"]  # fmt: skip


def photo_on_white(size: tuple[int, int] = (200, 260)) -> tuple[Image.Image, np.ndarray]:
    """A red bottle with a white label on a white, slightly noisy background, and its mask."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((60, 40, 140, 230), 20, fill=255)
    rng = np.random.default_rng(7)
    noise = rng.integers(-6, 7, (size[1], size[0], 3))
    background = np.clip(245 + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(background, "RGB")
    image.paste((200, 30, 40), (0, 0), mask)
    ImageDraw.Draw(image).rectangle((80, 100, 120, 150), fill=(250, 250, 250))  # white label
    return image, np.asarray(mask) > 0


def test_a_photo_on_white_is_cut_out_within_tolerance_of_its_mask() -> None:
    image, truth = photo_on_white()
    alpha = np.asarray(product_alpha(image))
    subject = alpha >= 128
    wrong = subject != truth
    assert wrong.mean() < 0.005  # under half a percent of pixels, all on the edge
    label = alpha[100:151, 80:121]
    assert (label == 255).all()  # the white label inside the product is kept, not keyed out
    assert (alpha[:30] == 0).all()  # the background is fully transparent
    edge = (alpha > 0) & (alpha < 255)
    assert edge.any()  # feathered


@pytest.mark.parametrize(
    ("image", "says"),
    [
        (Image.effect_noise((64, 64), 80).convert("RGB"), "background isn't plain"),
        (Image.new("RGB", (64, 64), "white"), "No clear product"),
        (Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "fully transparent"),
    ],
    ids=["busy", "empty", "transparent"],
)
def test_no_clear_subject_is_refused_with_what_to_send(image: Image.Image, says: str) -> None:
    with pytest.raises(UserError, match=says) as refused:
        product_alpha(image)
    assert "PNG with a transparent background" in refused.value.user_message


def test_a_small_product_is_never_enlarged_and_a_big_one_scaled_down_once() -> None:
    small = Image.new("RGBA", (10, 12), (0, 200, 0, 255))
    placed = place_product(small, small.getchannel("A"), (128, 128), anchor="bottom")
    assert placed.image.size == (10, 12)
    assert placed.small
    assert not placed.scaled
    assert placed.box == (59, 128 - 8 - 12, 10, 12)
    big = Image.new("RGBA", (400, 200), (0, 0, 200, 255))
    placed = place_product(big, big.getchannel("A"), (128, 128), scale=0.5, margin=0.0)
    assert placed.scaled
    assert placed.box[2:] == (64, 32)
    assert not placed.small


@st.composite
def products(draw: st.DrawFn) -> tuple[Image.Image, tuple[int, int], str, float]:
    width = draw(st.integers(4, 96))
    height = draw(st.integers(4, 96))
    canvas = (draw(st.sampled_from([64, 96, 128])), draw(st.sampled_from([64, 96, 128])))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    shape = draw(st.sampled_from(["ellipse", "random", "opaque", "soft"]))
    if shape == "opaque":
        alpha = np.full((height, width), 255, np.uint8)
    elif shape == "random":
        alpha = rng.choice(np.array([0, 255, 128, 1, 254], np.uint8), (height, width))
    else:
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).ellipse((0, 0, width - 1, height - 1), fill=255)
        if shape == "soft":
            mask = Image.fromarray((np.asarray(mask) // 255 * 200 + 55).astype(np.uint8))
        alpha = np.asarray(mask)
    if not alpha.any():
        alpha = alpha.copy()
        alpha[0, 0] = 255
    product = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    anchor = draw(st.sampled_from(ANCHORS))
    scale = draw(st.sampled_from([0.3, 0.6, 1.0]))
    return product, canvas, anchor, scale


@settings(max_examples=60, deadline=None)
@given(products(), st.integers(0, 2**16))
def test_every_opaque_product_pixel_is_bit_identical(
    case: tuple[Image.Image, tuple[int, int], str, float], scene_seed: int
) -> None:
    product, canvas, anchor, scale = case
    placed = place_product(product, product.getchannel("A"), canvas, anchor=anchor, scale=scale)
    x, y, w, h = placed.box
    assert min(x, y) >= 0
    assert x + w <= canvas[0]
    assert y + h <= canvas[1]
    _, mask = inpaint_inputs(placed.image, placed.box, canvas)
    rng = np.random.default_rng(scene_seed)
    scene = Image.fromarray(rng.integers(0, 256, (canvas[1], canvas[0], 3), dtype=np.uint8))
    shot = np.asarray(finish_product_shot(scene, placed.image, placed.box))
    kept = np.asarray(placed.image)
    opaque = kept[..., 3] == 255
    assert np.array_equal(shot[y : y + h, x : x + w][opaque], kept[..., :3][opaque])
    kept_by_model = np.asarray(mask)[y : y + h, x : x + w] == 0
    assert not (kept_by_model & ~opaque).any()  # the model keeps only opaque product pixels
    if not placed.scaled:  # not scaled: the upload's own pixels, unchanged
        bbox = product.getchannel("A").point(lambda a: 255 if a else 0).getbbox()
        assert bbox is not None
        source = np.asarray(product.crop(bbox))
        assert np.array_equal(source, kept)


def test_the_watermark_moves_off_the_product() -> None:
    corners = ("bottom-right", "bottom-left", "top-right", "top-left")
    box = (80, 80, 48, 48)  # the bottom-right quarter of a 128 px canvas
    position = clear_corner("bottom-right", corners, box, (128, 128), (10, 10), scale=0.12)
    assert position == "bottom-left"
    assert clear_corner("top-left", corners, box, (128, 128), (10, 10), scale=0.12) == "top-left"
    only = ("bottom-right",)
    assert clear_corner("bottom-right", only, box, (128, 128), (10, 10), scale=0.12) is None
