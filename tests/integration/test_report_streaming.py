"""The per-image rows stream: the CSV/JSON exports and the zip write each row as it arrives.

``open_report`` reads the rows through a server-side cursor; ``write_csv``/``write_json`` write
them as they come. The texts must equal the buffered renderers' (``to_csv``/``to_json`` of a
report built with its images), and the memory they need must not grow with the campaign.
"""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from core.db import Database
from core.errors import NotFound
from core.reports.build import build_report, open_report
from core.reports.export import export_zip
from core.reports.text import to_csv, to_json, write_csv, write_json
from tests.integration.test_reports import seed

pytestmark = pytest.mark.integration


@pytest.fixture
async def seeded(db: Database) -> Database:
    await seed(db)
    return db


def _without_generated_at(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if '"generated_at"' not in line)


@pytest.mark.parametrize(
    ("since", "until"), [(None, None), (date(2026, 3, 2), None), (None, date(2026, 3, 1))]
)
async def test_streamed_texts_equal_the_buffered_ones(
    seeded: Database, since: date | None, until: date | None
) -> None:
    built = await build_report(seeded, "spring", since=since, until=until, sheet=0)
    assert built.images is not None
    csv_out, json_out = io.StringIO(), io.StringIO()
    async with open_report(seeded, "spring", since=since, until=until, summary=False) as opened:
        assert opened.report is None
        assert await write_csv(opened.images, csv_out) == len(built.images)
    async with open_report(seeded, "spring", since=since, until=until) as opened:
        assert opened.report is not None
        assert await write_json(opened.report, opened.images, json_out) == len(built.images)
    assert csv_out.getvalue() == to_csv(built)
    assert _without_generated_at(json_out.getvalue()) == _without_generated_at(to_json(built))
    assert json.loads(json_out.getvalue())["images"] == json.loads(to_json(built))["images"]


async def test_streamed_json_of_a_campaign_without_images(seeded: Database) -> None:
    out = io.StringIO()
    async with open_report(seeded, "spring", since=date(2030, 1, 1)) as opened:
        assert opened.report is not None
        assert await write_json(opened.report, opened.images, out) == 0
    assert json.loads(out.getvalue())["images"] == []
    assert '"images": [],' in out.getvalue()


async def test_unknown_campaign_leaves_no_zip(seeded: Database, tmp_path: Path) -> None:
    async def read_image(storage_key: str) -> bytes:
        return b"x"

    out = tmp_path / "nope.zip"
    with pytest.raises(NotFound, match="nope"):
        await export_zip(seeded, "nope", "approved", out, read_image)
    assert not out.exists()
    with pytest.raises(NotFound, match="nope"):
        async with open_report(seeded, "nope"):
            pass


# --- memory -----------------------------------------------------------------------------------

SMALL, BIG = 500, 2_500  # generations of 4 images each


async def _seed_big(db: Database) -> None:
    """Two more campaigns of SMALL and BIG generations (4 images each, every 3rd approved)."""
    async with db.engine.begin() as conn:
        for cid, name, n, first in ((11, "small", SMALL, 100_000), (12, "big", BIG, 200_000)):
            statements = f"""
                INSERT INTO campaigns (id, name, preset_name) VALUES ({cid}, '{name}', 'brand');
                INSERT INTO generations (id, kind, platform, user_id, campaign_id, preset_id,
                    preset_name, preset_version, raw_prompt, final_prompt, negative_prompt,
                    params, status, queued_at, started_at, finished_at, reply_target)
                SELECT lpad(to_hex({first} + n), 32, '0')::uuid, 'imagine', 'slack',
                       1 + n % 4, {cid}, 1, 'brand', 'v1', 'a sneaker on a beach, take ' || n,
                       'a sneaker on a beach, take ' || n || ', brand colours, soft light', '',
                       '{{"seed": 7, "model": "tiny", "steps": 4}}', 'done',
                       timestamptz '2026-03-01' + n * interval '1 minute',
                       timestamptz '2026-03-01' + n * interval '1 minute',
                       timestamptz '2026-03-01' + n * interval '1 minute' + interval '5 s', '{{}}'
                FROM generate_series(1, {n}) n;
                INSERT INTO images (id, generation_id, index, storage_key, sha256, width, height,
                                    bytes)
                SELECT {first} * 4 + n * 4 + i, lpad(to_hex({first} + n), 32, '0')::uuid, i,
                       'big/' || n || '-' || i || '.png', md5(n || ':' || i), 64, 64, 1000
                FROM generate_series(1, {n}) n, generate_series(1, 4) i;
                INSERT INTO feedback (generation_id, user_id, kind, emoji)
                SELECT lpad(to_hex({first} + n), 32, '0')::uuid, 4, 'approve', ''
                FROM generate_series(3, {n}, 3) n
                """
            for statement in statements.split(";"):
                await conn.exec_driver_sql(statement)


async def _peak(run: Callable[[], Awaitable[Any]]) -> int:
    tracemalloc.start()
    try:
        await run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_memory_stays_flat_however_big_the_campaign(seeded: Database, tmp_path: Path) -> None:
    await _seed_big(seeded)

    def streamed_csv(campaign: str) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            async with open_report(seeded, campaign, summary=False) as opened:
                return await write_csv(opened.images, _Sink())

        return run

    async def buffered_big() -> str:
        return to_csv(await build_report(seeded, "big", sheet=0))

    await streamed_csv("small")()  # warm up: imports, prepared statements, pools
    small = await _peak(streamed_csv("small"))
    big = await _peak(streamed_csv("big"))
    buffered = await _peak(buffered_big)
    # 5× the rows: the buffered CSV needs ~5× the memory, the streamed one about the same
    assert big < 1.5 * small, (small, big)
    assert buffered > 4 * big, (big, buffered)

    async def read_image(storage_key: str) -> bytes:
        return storage_key.encode()

    async def zipped() -> int:
        return await export_zip(seeded, "big", "approved", tmp_path / "big.zip", read_image)

    # the zip's central directory (written last) keeps ~0.5 KB per file; the originals and the
    # manifest's rows are not kept
    files = 1 + 4 * (BIG // 3)
    assert await _peak(zipped) < 1.5 * small + 1024 * files
    with zipfile.ZipFile(tmp_path / "big.zip") as archive:
        assert len(archive.namelist()) == files
        manifest = archive.read("manifest.csv").decode().splitlines()
    assert len(manifest) == files


class _Sink(io.StringIO):
    """A text file that forgets what it is given (the size of the output is not the point)."""

    def write(self, text: str) -> int:
        return len(text)
