"""The OpenAI engine's inpainting (``images.edit`` with a mask) against the fake images API,
driven by the real ``openai`` client: what is sent, and that the answer lines up with the canvas."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("openai")

import openai

from core.brand.presets import DEFAULT_MODELS
from core.engines.openai import OpenAIEngine
from core.errors import ProviderFailed
from core.ports import Inpainter, InpaintJob
from tests.fakes.openai_server import FakeOpenAIServer, prompt_colour

MODEL = DEFAULT_MODELS["openai"]


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
async def engine(server: FakeOpenAIServer) -> AsyncIterator[OpenAIEngine]:
    engine = OpenAIEngine(server.api_key, server.base_url, max_retries=1, backoff_base=0.001)
    yield engine
    await engine.aclose()


def product_job(size: tuple[int, int], box: tuple[int, int, int, int], n: int = 2) -> InpaintJob:
    """A grey canvas with a blue square at ``box``; the mask keeps the square (black)."""
    canvas = Image.new("RGB", size, (127, 127, 127))
    mask = Image.new("L", size, 255)
    x, y, w, h = box
    canvas.paste((20, 40, 220), (x, y, x + w, y + h))
    mask.paste(0, (x, y, x + w, y + h))
    return InpaintJob("p", canvas, mask, "a kitchen counter", "text", 20, 7.0, tuple(range(n)))


@pytest.mark.parametrize(
    ("size", "sent"),
    [((96, 64), (1536, 1024)), ((80, 64), (1536, 1024)), ((64, 64), (1024, 1024))],
    ids=["3:2", "letterboxed-5:4", "square"],
)
async def test_inpaint_sends_a_matching_mask_and_the_answer_lines_up(
    engine: OpenAIEngine,
    server: FakeOpenAIServer,
    size: tuple[int, int],
    sent: tuple[int, int],
) -> None:
    assert isinstance(engine, Inpainter)
    box = (36, 20, 20, 28)
    job = product_job(size, box)
    calls: list[tuple[str, int, int]] = []

    result = await engine.inpaint(MODEL, job, progress=lambda *a: calls.append(a))

    [request] = server.requests
    assert request.path == "/v1/images/edits"
    assert request.body["size"] == f"{sent[0]}x{sent[1]}"
    assert request.body["n"] == 2
    assert request.body["prompt"] == "a kitchen counter\n\nAvoid: text"
    assert request.file_sizes == {"image": sent, "mask": sent}
    with Image.open(io.BytesIO(request.files["mask"])) as mask:
        assert mask.mode == "RGBA"
        alpha = np.asarray(mask.getchannel("A"))
    scale = min(sent[0] / size[0], sent[1] / size[1])
    left = (sent[0] - round(size[0] * scale)) // 2
    x, y, w, h = box
    inside = alpha[round(y * scale) + 4 : round((y + h) * scale) - 4,
                   left + round(x * scale) + 4 : left + round((x + w) * scale) - 4]  # fmt: skip
    assert (inside == 255).all()  # kept: opaque
    assert (alpha == 0).mean() > 0.8  # the rest: transparent, painted
    if left:
        assert (alpha[:, :left] == 0).all()  # the letterbox band is painted too

    assert calls == [("p", 0, 1), ("p", 1, 1)]
    assert [image.size for image in result.images] == [size, size]
    r, g, b = prompt_colour(request.body["prompt"])
    for i, image in enumerate(result.images):
        pixels = np.asarray(image).astype(int)
        scene = np.array(((r + i) % 256, g, b))
        blue = np.array((20, 40, 220))
        # the kept square is where it was: inside it blue (Lanczos down from 16x rings by up
        # to 4 levels near its edge, measured), the painted scene around it the fake's colour
        assert np.abs(pixels[y + 2 : y + h - 2, x + 2 : x + w - 2] - blue).max() <= 6
        assert np.abs(pixels[2 : y - 2, 2 : x - 2] - scene).max() <= 6
        # and its edge to the pixel: a shift by one would swap these
        mid_row, mid_col = pixels[y + h // 2], pixels[:, x + w // 2]
        edges = [(mid_row[x], mid_row[x - 1]), (mid_row[x + w - 1], mid_row[x + w])]
        edges += [(mid_col[y], mid_col[y - 1]), (mid_col[y + h - 1], mid_col[y + h])]
        for inside, outside in edges:
            assert np.abs(inside - blue).sum() < np.abs(inside - scene).sum()
            assert np.abs(outside - scene).sum() < np.abs(outside - blue).sum()


async def test_a_refused_edit_says_so(engine: OpenAIEngine, server: FakeOpenAIServer) -> None:
    server.moderate_next(message="The product image looks unsafe.")
    with pytest.raises(ProviderFailed) as refused:
        await engine.inpaint(MODEL, product_job((64, 64), (16, 16, 32, 32)))
    assert refused.value.user_message == (
        "The image service refused this edit: The product image looks unsafe. Rephrase the "
        "prompt, or use another image, and try again."
    )
    assert len(server.requests) == 1


async def test_a_failing_service_gives_a_clear_message_after_the_retries(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    server.server_error_next(2)
    with pytest.raises(ProviderFailed, match=r"failed \(HTTP 500, 2 tries\); try again"):
        await engine.inpaint(MODEL, product_job((64, 64), (16, 16, 32, 32), n=1))


async def test_the_fake_checks_the_mask_like_the_api(server: FakeOpenAIServer) -> None:
    client = openai.AsyncOpenAI(api_key=server.api_key, base_url=server.base_url, max_retries=0)
    image = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(image, format="PNG")

    def png(mask: Image.Image) -> tuple[str, bytes, str]:
        data = io.BytesIO()
        mask.save(data, format="PNG")
        return ("mask.png", data.getvalue(), "image/png")

    cases = {
        "same dimensions": Image.new("RGBA", (32, 32), (0, 0, 0, 0)),
        "alpha channel": Image.new("L", (64, 64), 0),
        "no fully transparent": Image.new("RGBA", (64, 64), (0, 0, 0, 255)),
    }
    for says, mask in cases.items():
        with pytest.raises(openai.BadRequestError, match=says):
            await client.images.edit(
                model=MODEL,
                image=("image.png", image.getvalue(), "image/png"),
                mask=png(mask),
                prompt="x",
                size="1024x1024",
            )
    await client.close()
