"""The learned matting port (``core.imaging.matting.OnnxMatter``) with tiny ONNX models built
here (no download): the plumbing (matte size, alpha range, the model's own input size), a model
that cuts a product out of a busy background the key-out refuses, through the service, and a
configured-but-unusable folder failing at start-up and in ``onbrand doctor``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from core.bootstrap import build_app  # noqa: E402
from core.db import Database  # noqa: E402
from core.db.uow import sql_uow_factory  # noqa: E402
from core.db.uploads import SqlUploads  # noqa: E402
from core.domain import ImageMode  # noqa: E402
from core.errors import ConfigError, UserError  # noqa: E402
from core.health import check_matting  # noqa: E402
from core.imaging.matting import KeyOut, OnnxMatter, matter_from_settings  # noqa: E402
from core.service import Service  # noqa: E402
from core.service.base import ServiceConfig  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.storage.local import LocalImageStore  # noqa: E402
from tests.imagesin.conftest import ACTOR, WHERE, shop_preset  # noqa: E402


def build_model(
    folder: Path, weight: np.ndarray, bias: float, *, size: int = 32, spec: dict | None = None
) -> Path:
    """A one-convolution matting model: ``sigmoid(conv(image))``, ``1×3×size×size`` in,
    ``1×1×size×size`` out, saved as ``folder/model.onnx`` (and ``matting.json`` when given)."""
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    pad = weight.shape[-1] // 2
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "W", "B"], ["logits"], pads=[pad] * 4),
            helper.make_node("Sigmoid", ["logits"], ["matte"]),
        ],
        "tiny-matting",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("matte", TensorProto.FLOAT, [1, 1, size, size])],
        [
            numpy_helper.from_array(weight.astype(np.float32), "W"),
            numpy_helper.from_array(np.array([bias], np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    if spec is not None:
        (folder / "matting.json").write_text(json.dumps(spec))
    return folder


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    return build_model(tmp_path_factory.mktemp("random"), rng.normal(size=(1, 3, 3, 3)), 0.1)


@pytest.fixture(scope="module")
def dark_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights set by hand: darker than mid-grey is product (a stand-in for a trained one)."""
    weight = np.full((1, 3, 1, 1), -40.0 / 3)
    spec = {"size": [64, 64], "mean": [0, 0, 0], "std": [1, 1, 1], "output": "clip"}
    return build_model(tmp_path_factory.mktemp("dark"), weight, 18.0, size=64, spec=spec)


def bottle_on_busy_light(size: tuple[int, int] = (200, 260)) -> tuple[Image.Image, np.ndarray]:
    """A red bottle (no label) on a light background of random colours, and its mask."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((60, 40, 140, 230), 20, fill=255)
    rng = np.random.default_rng(11)
    background = rng.integers(150, 256, (size[1], size[0], 3)).astype(np.uint8)
    image = Image.fromarray(background, "RGB")
    image.paste((200, 30, 40), (0, 0), mask)
    return image, np.asarray(mask) > 0


def test_a_random_weight_model_gives_a_matte_of_the_photos_size(random_model: Path) -> None:
    matter = OnnxMatter(random_model)
    assert matter.size == (32, 32)  # the model's own input size (no matting.json)
    photo, _ = bottle_on_busy_light()
    matte = matter.matte(photo)
    assert matte.mode == "L"
    assert matte.size == photo.size
    values = np.asarray(matte)
    assert values.dtype == np.uint8
    assert values.min() < 40  # minmax: the range is used (bilinear upsampling softens the ends)
    assert values.max() > 215
    # a PNG with real transparency keeps its own alpha, whatever the model says
    cut = photo.convert("RGBA")
    cut.putalpha(Image.fromarray(np.where(bottle_on_busy_light()[1], 255, 0).astype(np.uint8)))
    assert np.array_equal(np.asarray(matter.alpha(cut)), np.asarray(cut.getchannel("A")))


def test_the_learned_model_cuts_out_what_the_key_out_refuses(dark_model: Path) -> None:
    photo, truth = bottle_on_busy_light()
    with pytest.raises(UserError, match="background isn't plain"):
        KeyOut().alpha(photo)
    alpha = np.asarray(OnnxMatter(dark_model).alpha(photo))
    wrong = (alpha >= 128) != truth
    assert wrong.mean() < 0.02  # measured 1.0 %: the edge, at 64 px in the model
    # confident pixels are snapped: the inside fully opaque (what is kept bit for bit), the
    # background fully transparent, only the edge in between (measured 89 % and 98 %)
    assert (alpha[truth] == 255).mean() > 0.85
    assert (alpha[~truth] == 0).mean() > 0.95
    with pytest.raises(UserError, match="No clear product"):
        OnnxMatter(dark_model).alpha(Image.new("RGB", (64, 64), "white"))


async def test_the_service_cuts_products_out_with_the_configured_model(
    db: Database, store: LocalImageStore, dark_model: Path
) -> None:
    photo, _ = bottle_on_busy_light()
    data = io.BytesIO()
    photo.save(data, format="PNG")

    def service(matter: OnnxMatter | None) -> Service:
        return Service(
            sql_uow_factory(db),
            {"shop": shop_preset()},
            ServiceConfig(default_preset="shop"),
            store=store,
            uploads=SqlUploads(db),
            matter=matter,
        )

    keyed = service(None)
    upload = await keyed.upload(data.getvalue(), ACTOR, WHERE)
    with pytest.raises(UserError, match="background isn't plain"):
        await keyed.imagine_with_image("a counter", ACTOR, WHERE, upload.id, mode=ImageMode.PRODUCT)
    learned = service(OnnxMatter(dark_model))
    ticket = await learned.imagine_with_image(
        "a counter", ACTOR, WHERE, upload.id, mode=ImageMode.PRODUCT
    )
    params = (await learned.generation(ticket.generation_ids[0])).params
    assert params.product_box is not None
    assert params.init_image is not None
    with Image.open(io.BytesIO(await store.get(params.init_image))) as placed:
        alpha = np.asarray(placed.getchannel("A"))
    assert (alpha == 255).mean() > 0.6  # the bottle, trimmed to its box


async def test_an_unusable_model_folder_fails_at_start_up_and_in_doctor(tmp_path: Path) -> None:
    def settings(folder: Path | None) -> Settings:
        return Settings(
            _env_file=None, ONBRAND_DATA_DIR=tmp_path / "d", ONBRAND_MATTING_MODEL=folder
        )  # type: ignore[call-arg]

    assert isinstance(matter_from_settings(settings(None)), KeyOut)
    assert check_matting(settings(None))[0].ok
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not a model")
    cases = {
        tmp_path / "missing": "there is no such folder",
        empty: "has no model.onnx",
        broken: "can't load model.onnx",
    }
    for folder, says in cases.items():
        with pytest.raises(ConfigError, match=says):
            await build_app(settings(folder), migrate=False)  # before any request
        [check] = check_matting(settings(folder))
        assert not check.ok
        assert "ONBRAND_MATTING_MODEL" in check.detail
        assert says in check.detail
