"""Lineage and preference pairs on real PostgreSQL, and the memory commands of the CLI."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from uuid import UUID

import pyarrow.parquet as pq
import pytest

from core.db import Database
from core.domain import Actor, Platform
from core.errors import NotFound
from core.memory.pairs import COLUMNS, export_pairs
from core.memory.store import MemoryStore
from core.reports.build import build_report
from core.reports.html import to_html
from core.reports.text import report_dict, to_markdown
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore
from tests.integration.test_cli import env, onbrand  # noqa: F401  (env is a fixture)
from tests.memory.seed import B1, B2, D1, E1, U1, V1, image_id, picture, seed

pytestmark = pytest.mark.integration

ANN = Actor(Platform.SLACK, "T1", "U1", "Ann")
EVE = Actor(Platform.SLACK, "T2", "U9", "Eve")


@pytest.fixture
async def store(db: Database, tmp_path: Path) -> LocalImageStore:
    store = LocalImageStore(tmp_path / "data" / "images")  # where the CLI's data dir keeps them
    await seed(db, store)
    return store


async def test_history_is_the_tree_from_the_first_imagine(
    db: Database, store: LocalImageStore
) -> None:
    service = Service(
        lambda: None,  # type: ignore[arg-type,return-value]
        {},
        ServiceConfig("acme"),
        memory=MemoryStore(db, store),
    )
    root = await service.history(ANN, U1)  # asked from the upscale: the tree starts at B1
    assert root.generation_id == B1
    assert [(d, n.kind, n.generation_id, n.from_index) for d, n in root.walk()] == [
        (0, "imagine", B1, None),
        (1, "variation", V1, 2),
        (2, "upscale", U1, 1),
    ]
    assert root.feedback == {("favourite", 2): 1, ("approve", 3): 1}
    assert root.feedback_text() == "✅ #3, ★ #2"
    assert root.children[0].feedback == {("favourite", 1): 1}
    assert root.user.startswith("user-")
    with pytest.raises(NotFound):  # another workspace's generation
        await service.history(ANN, E1)
    with pytest.raises(NotFound):
        await service.history(EVE, B1)


async def test_pairs_follow_the_documented_rule(
    db: Database, store: LocalImageStore, tmp_path: Path
) -> None:
    out = tmp_path / "pairs.parquet"
    assert await export_pairs(db, "spring", out, store.get) == 7
    table = pq.read_table(out)
    assert tuple(table.column_names) == COLUMNS
    rows = table.to_pylist()
    found = set()
    for row in rows:
        winner = 0 if row["label_0"] == 1.0 else 1
        assert {row["label_0"], row["label_1"]} == {0.0, 1.0}
        gen = row["generation_id"]
        won, lost = row[f"index_{winner}"], row[f"index_{1 - winner}"]
        found.add((gen, won, lost, row["reason"]))
        # the bytes are the originals of the images named
        assert row[f"jpg_{winner}"] == picture(image_id(UUID(gen), won))
        assert row["model_0"] == row["model_1"] == "tiny"
        assert row["user"].startswith("user-")
        assert row["caption"] == "a blue square on a red background"
    assert found == {
        (str(B1), 2, 1, "favourited"), (str(B1), 2, 4, "favourited"),
        (str(B1), 3, 1, "approved"), (str(B1), 3, 4, "approved"),
        (str(V1), 1, 2, "upscaled"), (str(V1), 1, 3, "upscaled"), (str(V1), 1, 4, "upscaled"),
    }  # fmt: skip
    assert {r["label_0"] for r in rows} == {0.0, 1.0}  # the chosen image is on either side
    assert await export_pairs(db, "autumn", tmp_path / "autumn.parquet", store.get) == 0


def test_cli_search_like_history_and_pairs(
    store: LocalImageStore,
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    found = onbrand("search", "blue square", "--limit", "20", "--json", env=env)
    assert found.returncode == 0, found.stderr
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert hits[0]["prompt"] == "a blue square on a red background"
    assert hits[-1]["generation_id"] == str(B2)
    assert Path(hits[0]["path"]).is_file()
    like = onbrand("search", "--like", f"{B2}:3", "--limit", "2", "--json", env=env)
    assert json.loads(like.stdout.splitlines()[0])["image"] == f"{B2}:3"
    tree = onbrand("history", str(U1), env=env)
    assert tree.returncode == 0, tree.stderr
    assert (
        tree.stdout.index("imagine") < tree.stdout.index("variation") < tree.stdout.index("upscale")
    )
    out = tmp_path / "pairs.parquet"
    made = onbrand("export", "spring", "--pairs", "-o", str(out), env=env)
    assert made.returncode == 0, made.stderr
    assert pq.read_table(out).num_rows == 7
    bad = onbrand("search", "x", "--like", "nonsense", env=env)
    assert bad.returncode == 2
    assert "generation id" in bad.stderr


async def test_acceptance_per_week_model_and_preset_version(
    db: Database, store: LocalImageStore
) -> None:
    report = await build_report(db, "spring", include_images=False, sheet=0, memory=True)
    # spring's grids: B1 and B2 (imagine) and V1 (variation), 12 images, all in one week
    [row] = report.acceptance
    assert row.week == date(2026, 2, 23)  # 2026-03-01 is a Sunday: its ISO week's Monday
    assert (row.model, row.preset, row.grids, row.images) == ("tiny", "acme@v1", 3, 12)
    assert row.favourite_rate == pytest.approx(2 / 12)  # B1#2, V1#1
    assert row.approval_rate == pytest.approx(1 / 12)  # B1#3
    assert row.upscale_rate == pytest.approx(1 / 12)  # V1#1 → U1
    assert row.reroll_rate == 0.0
    assert "| 2026-W09 | tiny | acme@v1 | 3 | 12 | 16.7% |" in to_markdown(report)
    assert report_dict(report)["acceptance"][0]["images"] == 12
    page = to_html(report, {})
    assert 'aria-label="Acceptance rates per week, model and preset version"' in page
    for rate in ("★ favourite 16.7%", "✅ approval 8.3%", "U upscale 8.3%", "🔄 reroll 0.0%"):
        assert f"<title>{rate}</title></rect>" in page  # one bar per rate
    assert "<td>2026-W09</td><td>tiny</td><td>acme@v1</td><td>12</td><td>16.7%</td>" in page
    plain = await build_report(db, "spring", include_images=False, sheet=0)
    assert plain.acceptance == ()  # off unless asked for: the summary stays as fast as it was


async def test_the_html_report_shows_an_approved_image_s_ancestry(
    db: Database, store: LocalImageStore
) -> None:
    """U1#1 (an upscale of V1#1, a variation of B1#2) approved: its card in the HTML report
    carries the strip imagine #2 → variation #1 → this (upscale), each thumbnail made from the
    very image the next step came from; B1#3 (approved, no ancestors) gets no strip."""
    from sqlalchemy import text

    from core.delivery.bundle import report_thumbnails
    from core.reports.ancestry import ANCESTOR_PX
    from core.reports.html import thumbnail

    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO feedback (generation_id, image_id, user_id, kind, emoji) "
                "VALUES (:g, :i, 3, 'approve', '')"
            ),
            {"g": U1, "i": image_id(U1, 1)},
        )
    report = await build_report(db, "spring", include_images=False)
    page = to_html(report, await report_thumbnails(report, store))  # fetches the ancestors too
    strips = page.split('<div class="ancestry">')[1:]
    assert len(strips) == 1  # U1#1's; B1#3 has no ancestors
    [strip] = strips
    strip = strip.split("</div>")[0]
    assert strip.index("imagine #2") < strip.index("variation #1") < strip.index("this (upscale)")
    for gid, index in ((B1, 2), (V1, 1)):
        small = thumbnail(picture(image_id(gid, index)), ANCESTOR_PX)
        assert f'<img src="{small}"' in strip
    assert thumbnail(picture(image_id(B1, 1)), ANCESTOR_PX) not in strip  # not the one used


async def test_the_chat_report_carries_acceptance_and_near_duplicates_in_its_html(
    db: Database, store: LocalImageStore
) -> None:
    """``/imagine-report``'s bundle (Slack and Discord both post it): the HTML file has the
    acceptance chart and the near-duplicate table; the summary stays short and says so."""
    from sqlalchemy import text

    from core.delivery.bundle import report_source

    async with db.transaction() as session:  # D1#1 (autumn) is B1#3's picture (spring)
        await session.execute(
            text(
                "INSERT INTO feedback (generation_id, image_id, user_id, kind, emoji) "
                "VALUES (:g, :i, 3, 'approve', '')"
            ),
            {"g": D1, "i": image_id(D1, 1)},
        )
    bundle = await report_source(db, store)("autumn", None, None, False)
    assert 'aria-label="Acceptance rates per week, model and preset version"' in bundle.html
    assert "<h3>Near-duplicates of approved images</h3>" in bundle.html
    near = bundle.html.split("<h3>Near-duplicates of approved images</h3>")[1]
    assert near.count("<tr><td>") == 1  # D1#1, whose look-alike is B1#3 (ids here are short)
    assert "#1</code></td><td><code>" in near
    assert "#3</code> (spring, " in near
    assert bundle.summary_markdown.endswith(
        "In the HTML file: acceptance per week, model and preset version; "
        "1 approved image with approved near-duplicates.\n"
    )
    assert "## Acceptance" not in bundle.summary_markdown
