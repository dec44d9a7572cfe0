"""The ``Embedder`` contract, run against the fake and the real CLIP (tiny, random weights)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from core.memory.embedder import ClipEmbedder
from core.ports import Embedder
from core.testing.embedder import FakeEmbedder
from tests.memory.seed import picture


@pytest.fixture(params=["fake", "clip"])
def embedder(request: pytest.FixtureRequest, tiny_clip: Path) -> Embedder:
    if request.param == "fake":
        return FakeEmbedder()
    return ClipEmbedder(str(tiny_clip))


def _open(seed: int) -> Image.Image:
    import io

    return Image.open(io.BytesIO(picture(seed)))


def _close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_vectors_are_unit_length_of_the_stated_width(embedder: Embedder) -> None:
    vectors = embedder.embed_images([_open(1), _open(2)]) + embedder.embed_texts(["a", "b c"])
    for v in vectors:
        assert len(v) == embedder.dims
        assert math.isclose(math.fsum(x * x for x in v), 1.0, abs_tol=1e-5)


def test_the_same_input_gives_the_same_vector_alone_or_in_a_batch(embedder: Embedder) -> None:
    pictures = [_open(n) for n in (1, 2, 3)]
    batch = embedder.embed_images(pictures)
    alone = [embedder.embed_images([p])[0] for p in pictures]
    assert all(_close(a, b) for a, b in zip(batch, alone, strict=True))
    (t1, t2) = embedder.embed_texts(["a blue square", "a red circle"])
    assert _close(embedder.embed_texts(["a blue square"])[0], t1)
    assert not _close(t1, t2, 1e-3)
    assert not _close(batch[0], batch[1], 1e-3)


def test_fake_text_lies_nearest_the_colour_it_names() -> None:
    fake = FakeEmbedder()
    blue, red = (Image.new("RGB", (32, 32), c) for c in ((30, 60, 220), (220, 30, 30)))
    (b, r) = fake.embed_images([blue, red])
    (text,) = fake.embed_texts(["a blue square"])
    assert sum(x * y for x, y in zip(text, b, strict=True)) > sum(
        x * y for x, y in zip(text, r, strict=True)
    )
