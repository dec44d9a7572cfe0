"""Uploads on the real database: a good file is one stored PNG and one row (who, where, what);
a bad one is refused with its message and leaves neither."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from sqlalchemy import text

from core.db import Database
from core.imaging.uploads import UploadRefused
from core.service import Service
from core.storage.local import LocalImageStore
from tests.imagesin.conftest import ACTOR, WHERE, stored_files
from tests.imagesin.test_upload_checks import BAD, _gps_jpeg

pytestmark = pytest.mark.integration


async def _rows(db: Database) -> list[dict[str, object]]:
    async with db.engine.connect() as conn:
        result = await conn.execute(text("SELECT * FROM uploads ORDER BY id"))
        return [dict(row._mapping) for row in result]


async def test_an_upload_is_stored_once_by_hash_and_recorded(
    service: Service, db: Database, store: LocalImageStore
) -> None:
    data = _gps_jpeg(orientation=6)
    first = await service.upload(data, ACTOR, WHERE)
    again = await service.upload(data, ACTOR, WHERE)
    assert first.storage_key == again.storage_key == f"{first.sha256}.png"
    assert (first.width, first.height, first.mime) == (20, 40, "image/jpeg")
    files = stored_files(store)
    assert [f.name for f in files] == [first.storage_key]
    png = files[0].read_bytes()
    assert b"GPS" not in png
    assert Image.open(io.BytesIO(png)).size == (20, 40)
    rows = await _rows(db)
    assert len(rows) == 2
    assert rows[0]["platform"] == "cli"
    assert rows[0]["channel_id"] == "terminal"
    assert rows[0]["sha256"] == first.sha256
    assert rows[0]["bytes"] == len(data)
    assert rows[0]["user_id"] is not None
    assert rows[0]["created_at"] is not None


@pytest.mark.parametrize(("data", "says"), BAD, ids=[s for _, s in BAD])
async def test_a_bad_upload_leaves_no_row_and_no_file(
    service: Service, db: Database, store: LocalImageStore, data: bytes, says: str
) -> None:
    with pytest.raises(UploadRefused, match=says):
        await service.upload(data, ACTOR, WHERE)
    assert await _rows(db) == []
    assert stored_files(store) == []
