"""The worker hashes each original before its invisible watermark, so the same picture made
for two campaigns hashes the same even though every copy carries its own mark."""

from __future__ import annotations

import io
import uuid
from typing import Any

import numpy as np
from PIL import Image

from core.db.jobs import StartedJob
from core.domain import GenerationKind, Params
from core.jobs.finishing import finish_image
from core.memory.phash import distance, phash_bytes, phash_image


def picture(size: int) -> Image.Image:
    rng = np.random.default_rng(7)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # broad shapes, then texture
    base = np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))
    noise = rng.normal(0, 12, base.shape)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def job(size: int) -> StartedJob:
    params = Params("a red shoe", "", size, size, 8, 5.0, 1, 5, "fake", "m", "acme", "v")
    return StartedJob(uuid.uuid4(), GenerationKind.IMAGINE, "cli", params, 1, None, None)


def test_two_copies_of_one_picture_hash_the_same_despite_their_watermarks(
    provenance: Any,
) -> None:
    image = picture(64)  # small pictures are where the mark moves a pHash most
    first = finish_image(job(64), None, 1, image)
    second = finish_image(job(64), None, 1, image)
    assert first.data != second.data  # two jobs: two watermark ids in the pixels
    assert first.phash == second.phash == phash_image(image)
    # what the indexer would get from the stored files: the marks moved the hash (4 of 64 bits
    # for this picture at 64 px, 2 at 128, none from 256 up; 4 at 256 px for the fake engine's
    # pictures in tests/bots/test_search_chat.py, against NEAR_DUPLICATE_BITS = 6)
    assert distance(phash_bytes(first.data), phash_bytes(second.data)) > 0
    with Image.open(io.BytesIO(first.data)) as stored:
        assert stored.size == image.size
