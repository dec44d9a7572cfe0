"""``FakeEmbedder``: the ``Embedder`` port without a model, for fast tests of what reads vectors.

An image's vector is its 4×4 thumbnail's colours (48 numbers, centred); a text's is the colours
it names ("blue", "red", …) painted over the same 4×4 grid, plus a little of every other word
(hashed), so "a blue square" lies nearest the bluest pictures. Unit length, deterministic, pure
Python + Pillow.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

from PIL import Image

GRID = 4
COLOURS = {
    "red": (220, 30, 30), "green": (40, 180, 60), "blue": (30, 60, 220),
    "yellow": (240, 220, 40), "black": (0, 0, 0), "white": (255, 255, 255),
    "orange": (250, 140, 20), "purple": (130, 40, 170), "pink": (250, 150, 190),
    "grey": (128, 128, 128), "gray": (128, 128, 128),
}  # fmt: skip


def _unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    if norm == 0:
        return [1.0] + [0.0] * (len(values) - 1)
    return [v / norm for v in values]


class FakeEmbedder:
    name = "fake-colours-4x4"
    dims = GRID * GRID * 3

    def embed_images(self, images: Sequence[Image.Image]) -> list[list[float]]:
        out = []
        for image in images:
            small = image.convert("RGB").resize((GRID, GRID), Image.Resampling.BOX)
            out.append(_unit([c - 127.5 for c in small.tobytes()]))
        return out

    def embed_texts(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            values = [0.0] * self.dims
            for word in re.findall(r"[a-z]+", text.lower()):
                if word in COLOURS:
                    for i in range(self.dims):
                        values[i] += COLOURS[word][i % 3] - 127.5
                else:  # a word that names no colour: a small nudge somewhere
                    digest = hashlib.sha256(word.encode()).digest()
                    values[digest[0] % self.dims] += 8.0 if digest[1] % 2 else -8.0
            out.append(_unit(values))
        return out
