"""The HTML report's originals: a picture the store no longer has, or whose key it refuses,
shows as unavailable instead of failing the whole report."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.delivery.bundle import originals
from core.storage.local import LocalImageStore


async def test_missing_and_refused_keys_are_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalImageStore(tmp_path)
    data = b"an original's bytes"
    kept = await store.put(data)
    gone = "0" * 64 + ".png"  # a content hash nobody stored
    hand_written = "img/101d1.png"  # not a content hash: the store refuses to look it up
    with caplog.at_level(logging.WARNING):
        found = await originals([hand_written, gone, kept], store)
    assert found == {kept: data}
    assert "refused 1 storage key(s)" in caplog.text
    assert "'img/101d1.png' first" in caplog.text
