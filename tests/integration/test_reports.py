"""Campaign reports on real PostgreSQL: every figure of a hand-computed campaign.

The "spring" campaign below is small enough to count by hand; the expected numbers next to each
assertion are derived in the comments of ``seed``. A second campaign ("other") and a generation
without a campaign sit beside it and must never leak into spring's report.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import insert

from core.db import Database
from core.db.models import (
    AuditLog,
    Campaign,
    Feedback,
    Generation,
    PresetVersion,
    User,
    Workspace,
)
from core.db.models import (
    Image as ImageModel,
)
from core.errors import NotFound, UserError
from core.reports.build import build_report
from core.reports.export import export_zip
from core.reports.html import to_html
from core.reports.model import CampaignReport
from core.reports.queries import pseudonym
from core.reports.text import (
    CSV_COLUMNS,
    FORMULA_STARTS,
    report_dict,
    to_csv,
    to_json,
    to_markdown,
)

pytestmark = pytest.mark.integration

T = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
D2 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
D3 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def gid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


G1, G2, G3, G4, G5, G6, G7, G8 = (gid(n) for n in range(1, 9))
ALICE, BOB, DISCO, RITA, ZED = 1, 2, 3, 4, 5


def key(g: uuid.UUID, index: int) -> str:
    return f"{str(g)[-4:]}/{index}.png"


def _gen(
    g: uuid.UUID,
    *,
    kind: str,
    user: int,
    campaign: int | None,
    preset: int,
    queued: datetime,
    wait: float | None,
    run: float | None,
    status: str,
    gpu: float | None,
    seed: int,
    parent: uuid.UUID | None = None,
    source_index: int | None = None,
    platform: str = "slack",
    undeliverable: str | None = None,
) -> dict[str, Any]:
    started = queued + s(wait) if wait is not None else None
    finished = started + s(run) if started is not None and run is not None else None
    version = "v1" if preset == 1 else "v2"
    return {
        "id": g,
        "parent_id": parent,
        "source_index": source_index,
        "kind": kind,
        "platform": platform,
        "user_id": user,
        "campaign_id": campaign,
        "preset_id": preset,
        "preset_name": "brand",
        "preset_version": version,
        "raw_prompt": f"prompt {str(g)[-1]}",
        "final_prompt": f"prompt {str(g)[-1]}, in brand style",
        "negative_prompt": "",
        "params": {"seed": seed, "model": "m-a", "steps": 30, "width": 512, "height": 512},
        "status": status,
        "queued_at": queued,
        "started_at": started,
        "finished_at": finished,
        "gpu_seconds": gpu,
        "reply_target": {"platform": platform, "workspace_id": "T1", "channel_id": "C1"},
        "undeliverable": undeliverable,
    }


# finished_at of each generation, used for feedback times
FIN = {
    G1: T + s(40),
    G2: T + s(100),
    G3: D2 + s(15),
    G6: D3 + s(70),
    G7: T + s(20),
}


async def seed(db: Database) -> None:
    """spring (campaign 1):

    G1 imagine  alice slack v1 done      03-01 wait 10 run 30 gpu 30  4 images seed 100
    G2 variation of G1#2 bob  v1 done    03-01 wait 20 run 20 gpu 20  4 images seed 200
    G3 upscale of G2#3 alice v2 done     03-02 wait 5  run 10 gpu 10  1 image  seed 300
    G4 reroll of G1 discord:333 v2 failed 03-02 wait 40 run 5 gpu 5   0 images
    G5 imagine discord:333 v2 cancelled  03-03 never started          0 images
    G6 imagine  bob   slack v2 done      03-03 wait 30 run 40 gpu 40  2 images seed 500
    other (campaign 2): G7 by Zed, 4 images, favourite + approval, gpu 999.
    no campaign: G8 by alice.
    """
    gens = [
        _gen(G1, kind="imagine", user=ALICE, campaign=1, preset=1, queued=T, wait=10, run=30,
             status="done", gpu=30, seed=100),
        _gen(G2, kind="variation", user=BOB, campaign=1, preset=1, queued=T + s(60), wait=20,
             run=20, status="done", gpu=20, seed=200, parent=G1, source_index=2),
        _gen(G3, kind="upscale", user=ALICE, campaign=1, preset=2, queued=D2, wait=5, run=10,
             status="done", gpu=10, seed=300, parent=G2, source_index=3),
        _gen(G4, kind="reroll", user=DISCO, campaign=1, preset=2, queued=D2 + s(3 * 3600),
             wait=40, run=5, status="failed", gpu=5, seed=400, parent=G1, platform="discord",
             undeliverable="permanent: Unknown Channel (the channel was deleted)"),
        _gen(G5, kind="imagine", user=DISCO, campaign=1, preset=2, queued=D3 - s(3600),
             wait=None, run=None, status="cancelled", gpu=None, seed=450, platform="discord"),
        _gen(G6, kind="imagine", user=BOB, campaign=1, preset=2, queued=D3, wait=30, run=40,
             status="done", gpu=40, seed=500),
        _gen(G7, kind="imagine", user=ZED, campaign=2, preset=1, queued=T, wait=1, run=19,
             status="done", gpu=999, seed=700, undeliverable="permanent: channel_not_found"),
        _gen(G8, kind="imagine", user=ALICE, campaign=None, preset=1, queued=T, wait=1, run=1,
             status="done", gpu=77, seed=800, undeliverable="gave up after 8 failed attempts"),
    ]  # fmt: skip
    counts = {G1: 4, G2: 4, G3: 1, G6: 2, G7: 4, G8: 4}
    images = []
    image_id: dict[tuple[uuid.UUID, int], int] = {}
    for g, n in counts.items():
        for index in range(1, n + 1):
            image_id[g, index] = len(images) + 1
            images.append(
                {
                    "id": len(images) + 1,
                    "generation_id": g,
                    "index": index,
                    "storage_key": key(g, index),
                    "sha256": f"{len(images):064x}",
                    "width": 512,
                    "height": 512,
                    "bytes": 1000,
                    "palette_score": 0.5 + index / 10,
                }
            )

    def fb(user: int, g: uuid.UUID, index: int | None, kind: str, at: datetime) -> dict[str, Any]:
        return {
            "generation_id": g,
            "image_id": image_id[g, index] if index is not None else None,
            "user_id": user,
            "kind": kind,
            "emoji": "",
            "created_at": at,
        }

    feedback = [
        fb(BOB, G1, 2, "favourite", FIN[G1] + s(60)),  # first ★ of G1#2: 60 s
        fb(DISCO, G1, 2, "favourite", FIN[G1] + s(360)),
        fb(ALICE, G1, 4, "favourite", FIN[G1] + s(200)),  # G1#4: 200 s
        fb(BOB, G1, None, "like", FIN[G1] + s(260)),  # grid-level like
        fb(DISCO, G1, 1, "dislike", FIN[G1] + s(460)),
        fb(RITA, G3, 1, "approve", FIN[G3] + s(600)),  # image-level approval: 600 s
        fb(RITA, G6, None, "approve", FIN[G6] + s(1200)),  # grid approval: both images, 1200 s
        fb(ALICE, G6, None, "favourite", FIN[G6] + s(50)),  # grid-level favourite
        fb(BOB, G3, 1, "like", FIN[G3] + s(30)),
        fb(RITA, G2, 3, "favourite", FIN[G2] + s(30)),  # G2#3: 30 s
        fb(BOB, G3, 1, "favourite", FIN[G3] + s(120)),  # G3#1: 120 s
        fb(ZED, G7, 1, "favourite", FIN[G7] + s(5)),  # other campaign
        fb(RITA, G7, 1, "approve", FIN[G7] + s(5)),
        fb(ALICE, G8, 1, "favourite", T + s(10)),  # no campaign
    ]
    audit = [
        {"actor": "slack:T1:U1", "action": "prompt.blocked", "subject": "slack:C1",
         "campaign_id": 1, "details": {}, "at": T + s(5)},
        {"actor": "slack:T1:U2", "action": "prompt.blocked", "subject": "slack:C1",
         "campaign_id": 1, "details": {}, "at": D2 + s(5)},
        {"actor": "slack:T1:U2", "action": "binding.created", "subject": "slack:C1",
         "campaign_id": 1, "details": {}, "at": D2 + s(5)},
        {"actor": "slack:T1:U9", "action": "prompt.blocked", "subject": "slack:C9",
         "campaign_id": 2, "details": {}, "at": D2 + s(5)},
    ]  # fmt: skip
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(Workspace.__table__),
            [
                {"id": 1, "platform": "slack", "external_id": "T1", "name": "Acme"},
                {"id": 2, "platform": "discord", "external_id": "G1", "name": "Acme D"},
            ],
        )
        await conn.execute(
            insert(User.__table__),
            [
                {"id": ALICE, "platform": "slack", "workspace_id": 1, "external_id": "U1",
                 "display_name": "Alice"},
                {"id": BOB, "platform": "slack", "workspace_id": 1, "external_id": "U2",
                 "display_name": "Bob"},
                {"id": DISCO, "platform": "discord", "workspace_id": 2, "external_id": "333",
                 "display_name": ""},
                {"id": RITA, "platform": "slack", "workspace_id": 1, "external_id": "U4",
                 "display_name": "Rita"},
                {"id": ZED, "platform": "slack", "workspace_id": 1, "external_id": "U5",
                 "display_name": "Zed"},
            ],
        )  # fmt: skip
        await conn.execute(
            insert(PresetVersion.__table__),
            [
                {"id": 1, "name": "brand", "version": "v1", "yaml_text": "name: brand"},
                {"id": 2, "name": "brand", "version": "v2", "yaml_text": "name: brand"},
            ],
        )
        await conn.execute(
            insert(Campaign.__table__),
            [
                {"id": 1, "name": "spring", "preset_name": "brand", "gpu_budget_seconds": 1000.0},
                {"id": 2, "name": "other", "preset_name": "brand", "gpu_budget_seconds": None},
            ],
        )
        await conn.execute(insert(Generation.__table__), gens)
        await conn.execute(insert(ImageModel.__table__), images)
        await conn.execute(insert(Feedback.__table__), feedback)
        await conn.execute(insert(AuditLog.__table__), audit)


@pytest.fixture
async def seeded(db: Database) -> Database:
    await seed(db)
    return db


def img(g: uuid.UUID | str, index: int) -> tuple[str, int]:
    return (str(g), index)


# --- every figure ---------------------------------------------------------------------------


async def test_every_figure_in_the_json(seeded: Database) -> None:
    doc = json.loads(to_json(await build_report(seeded, "spring")))

    assert next(iter(doc)) == "totals"
    assert doc["totals"] == {
        "requests": 6,
        "images": 11,  # 4 + 4 + 1 + 0 + 0 + 2
        "users": 3,  # alice, bob, discord:333 (rita only reacted)
        "imagines": 3,
        "variations": 1,
        "upscales": 1,
        "rerolls": 1,
        "done": 4,
        "cancelled": 1,
        "failed": 1,
        "pending": 0,
        "blocked_prompts": 2,  # the binding.created entry and other's block don't count
        "undelivered": 1,  # G4 (its channel was deleted); G7 is other's, G8 has no campaign
        "packs": 0,  # counted in tests/packs/test_pack_gate.py
        "pack_files": 0,
    }
    assert doc["engagement"] == {
        "favourites": 5,  # G1#2 ×2, G1#4, G2#3, G3#1 (image-level only)
        "grid_favourites": 1,  # ★ on G6's grid
        "likes": 2,  # grid like on G1 + image like on G3#1
        "dislikes": 1,
        "approvals": 2,
        "favourited_images": 4,
        "approved_images": 3,  # G3#1, and G6#1 + G6#2 through the grid approval
        "favourite_rate": pytest.approx(4 / 11),
        "approval_rate": pytest.approx(3 / 11),
        "median_seconds_to_first_favourite": pytest.approx(90.0),  # [30, 60, 120, 200]
        "median_seconds_to_approval": pytest.approx(1200.0),  # [600, 1200, 1200]
    }
    assert doc["cost"] == {
        "gpu_seconds": pytest.approx(105.0),  # 30 + 20 + 10 + 5 + 40
        "gpu_seconds_per_approved_image": pytest.approx(35.0),
        "queue_wait_p50": pytest.approx(20.0),  # [5, 10, 20, 30, 40]
        "queue_wait_p95": pytest.approx(38.0),  # 30 + 0.8 × 10
        "generation_p50": pytest.approx(25.0),  # done only: [10, 20, 30, 40]
        "generation_p95": pytest.approx(38.5),  # 30 + 0.85 × 10
    }

    def sl(key: str, req: int, ims: int, users: int, fav: int, favd: int, appr: int,
           gpu: float) -> dict[str, Any]:  # fmt: skip
        return {
            "key": key,
            "requests": req,
            "images": ims,
            "users": users,
            "favourites": fav,
            "favourited_images": favd,
            "approved_images": appr,
            "favourite_rate": pytest.approx(favd / ims) if ims else None,
            "approval_rate": pytest.approx(appr / ims) if ims else None,
            "gpu_seconds": pytest.approx(gpu),
        }

    b = doc["breakdowns"]
    assert b["per_user"] == [  # most images first
        sl("Bob", 2, 6, 1, 1, 1, 2, 60),
        sl("Alice", 2, 5, 1, 4, 3, 1, 40),
        sl("discord:333", 2, 0, 1, 0, 0, 0, 5),
    ]
    assert b["per_preset_version"] == [  # in order of first use
        sl("brand@v1", 2, 8, 2, 4, 3, 0, 50),
        sl("brand@v2", 4, 3, 3, 1, 1, 3, 55),
    ]
    assert b["per_day"] == [
        sl("2026-03-01", 2, 8, 2, 4, 3, 0, 50),
        sl("2026-03-02", 2, 1, 2, 1, 1, 1, 15),
        sl("2026-03-03", 2, 2, 2, 0, 0, 2, 40),
    ]
    assert b["per_platform"] == [
        sl("slack", 4, 11, 2, 5, 4, 3, 100),
        sl("discord", 2, 0, 1, 0, 0, 0, 5),
    ]

    top = doc["top_images"]
    # ★ desc, then 👍 desc (G3#1 has a like), then oldest first
    assert [(t["generation_id"], t["index"]) for t in top] == [
        img(G1, 2),
        img(G3, 1),
        img(G1, 4),
        img(G2, 3),
    ]
    assert top[0] == {
        "generation_id": str(G1),
        "index": 2,
        "kind": "imagine",
        "user": "Alice",
        "platform": "slack",
        "created_at": T.isoformat(),
        "finished_at": FIN[G1].isoformat(),
        "prompt": "prompt 1",
        "final_prompt": "prompt 1, in brand style",
        "seed": 101,  # the generation's seed + index − 1
        "model": "m-a",
        "steps": 30,
        "width": 512,
        "height": 512,
        "preset": "brand",
        "preset_version": "v1",
        "favourites": 2,
        "likes": 0,
        "dislikes": 0,
        "grid_favourites": 0,
        "grid_likes": 1,
        "grid_dislikes": 0,
        "approved": False,
        "approved_by": [],
        "approved_at": None,
        "palette_score": pytest.approx(0.7),
        "storage_key": key(G1, 2),
    }
    assert [t["favourites"] for t in top] == [2, 1, 1, 1]
    assert top[1]["likes"] == 1
    assert top[1]["approved_by"] == ["Rita"]

    approved = doc["approved_images"]
    assert [(a["generation_id"], a["index"]) for a in approved] == [
        img(G3, 1),
        img(G6, 1),
        img(G6, 2),
    ]
    assert [a["approved_by"] for a in approved] == [["Rita"]] * 3
    assert approved[0]["user"] == "Alice"
    assert approved[1]["user"] == "Bob"
    assert approved[0]["approved_at"] == (FIN[G3] + s(600)).isoformat()
    assert approved[1]["approved_at"] == (FIN[G6] + s(1200)).isoformat()
    assert approved[1]["grid_favourites"] == 1
    assert approved[0]["seed"] == 300
    assert approved[2]["seed"] == 501

    lineage = doc["lineage"]
    assert [(chain["generation_id"], chain["index"]) for chain in lineage] == [
        img(G3, 1),
        img(G6, 1),
        img(G6, 2),
    ]
    steps = [(st["depth"], st["generation_id"], st["kind"], st["used_index"], st["user"])
             for st in lineage[0]["steps"]]  # fmt: skip
    assert steps == [
        (0, str(G3), "upscale", None, "Alice"),
        (1, str(G2), "variation", 3, "Bob"),  # G3 upscaled G2's image 3
        (2, str(G1), "imagine", 2, "Alice"),  # G2 varied G1's image 2
    ]
    assert [len(chain["steps"]) for chain in lineage[1:]] == [1, 1]

    assert doc["campaign"] == {
        "name": "spring",
        "preset": "brand",
        "starts_on": None,
        "ends_on": None,
        "gpu_budget_seconds": 1000.0,
    }
    assert doc["range"] == {"since": None, "until": None}
    assert doc["pseudonymised"] is False
    assert doc["schema_version"] == 1
    assert len(doc["images"]) == 11


async def test_csv_and_json_agree(seeded: Database) -> None:
    report = await build_report(seeded, "spring")
    doc = report_dict(report)
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))

    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == len(doc["images"]) == doc["totals"]["images"] == 11
    assert {(r["generation_id"], int(r["index"])) for r in rows} == {
        (i["generation_id"], i["index"]) for i in doc["images"]
    }
    e = doc["engagement"]
    assert sum(int(r["favourites"]) for r in rows) == e["favourites"]
    assert sum(r["approved"] == "yes" for r in rows) == e["approved_images"]
    assert sum(int(r["favourites"]) > 0 for r in rows) == e["favourited_images"]
    grids = {r["generation_id"]: r for r in rows}  # grid counts repeat on every image
    assert (
        sum(int(r["likes"]) for r in rows) + sum(int(r["grid_likes"]) for r in grids.values())
        == e["likes"]
    )
    assert sum(int(r["grid_favourites"]) for r in grids.values()) == e["grid_favourites"]
    by_image = {(r["generation_id"], int(r["index"])): r for r in rows}
    for item in doc["images"]:
        row = by_image[item["generation_id"], item["index"]]
        for column in CSV_COLUMNS:
            value = item[column]
            expected = (
                ""
                if value is None
                else ("yes" if value else "no")
                if isinstance(value, bool)
                else "; ".join(value)
                if isinstance(value, list)
                else str(value)
            )
            assert row[column] == expected, column
    assert by_image[str(G3), 1]["approved_by"] == "Rita"
    # the per-image statement and the summary's top/approved entries describe images alike
    assert report.images is not None
    rows_by_image = {(i.generation_id, i.index): i for i in report.images}
    for image in (*report.top_images, *report.approved_images):
        assert rows_by_image[image.generation_id, image.index] == image
    assert by_image[str(G1), 3]["storage_key"] == key(G1, 3)


async def test_date_range(seeded: Database) -> None:
    report = await build_report(seeded, "spring", since=date(2026, 3, 2), until=date(2026, 3, 2))
    doc = report_dict(report)
    t = doc["totals"]
    assert (t["requests"], t["images"], t["users"]) == (2, 1, 2)  # G3, G4
    assert (t["upscales"], t["rerolls"], t["failed"], t["done"]) == (1, 1, 1, 1)
    assert t["blocked_prompts"] == 1  # only the 03-02 block
    e = doc["engagement"]
    assert (e["favourites"], e["likes"], e["approvals"], e["approved_images"]) == (1, 1, 1, 1)
    assert doc["cost"]["gpu_seconds"] == pytest.approx(15.0)
    assert [d["key"] for d in doc["breakdowns"]["per_day"]] == ["2026-03-02"]
    assert doc["range"] == {"since": "2026-03-02", "until": "2026-03-02"}
    # lineage reaches parents queued before the range (same campaign)
    assert [st["generation_id"] for st in doc["lineage"][0]["steps"]] == [str(G3), str(G2), str(G1)]

    only_since = await build_report(seeded, "spring", since=date(2026, 3, 3))
    assert only_since.totals.requests == 2  # G5, G6
    only_until = await build_report(seeded, "spring", until=date(2026, 3, 1))
    assert only_until.totals.requests == 2  # G1, G2
    assert only_until.totals.blocked_prompts == 1
    assert only_until.totals.undelivered == 0  # G4, the given-up one, was queued 03-02
    empty = await build_report(seeded, "spring", since=date(2027, 1, 1))
    assert empty.totals.requests == 0
    assert empty.engagement.favourite_rate is None
    assert empty.cost.queue_wait_p50 is None
    assert empty.images == ()
    assert "# Campaign report: spring" in to_markdown(empty)
    with pytest.raises(UserError):
        await build_report(seeded, "spring", since=date(2026, 3, 3), until=date(2026, 3, 1))


async def test_another_campaign_never_leaks(seeded: Database) -> None:
    # without generated_at, whose microseconds may well read "999"
    doc = report_dict(await build_report(seeded, "spring"))
    spring = json.dumps({k: v for k, v in doc.items() if k != "generated_at"})
    assert str(G7) not in spring
    assert str(G8) not in spring
    assert "Zed" not in spring
    assert "999" not in spring

    other = await build_report(seeded, "other")
    assert (other.totals.requests, other.totals.images, other.totals.blocked_prompts) == (1, 4, 1)
    assert other.totals.undelivered == 1
    assert other.engagement.favourites == 1
    assert other.engagement.approved_images == 1
    assert other.cost.gpu_seconds == pytest.approx(999.0)
    assert all(str(G1) not in s for s in (to_json(other), to_markdown(other), to_csv(other)))


async def test_lineage_stops_at_another_campaign(seeded: Database) -> None:
    """A variation whose parent belongs to another campaign shows only its own campaign's part."""
    async with seeded.engine.begin() as conn:
        await conn.exec_driver_sql(f"UPDATE generations SET parent_id = '{G7}' WHERE id = '{G6}'")
    report = await build_report(seeded, "spring")
    assert [len(chain.steps) for chain in report.lineage] == [3, 1, 1]
    assert str(G7) not in to_json(report)


async def test_unknown_campaign(seeded: Database) -> None:
    with pytest.raises(NotFound) as caught:
        await build_report(seeded, "winter")
    assert "winter" in caught.value.user_message


async def test_pseudonymised(seeded: Database) -> None:
    first = await build_report(seeded, "spring", pseudonymise=True)
    second = await build_report(seeded, "spring", pseudonymise=True)
    alice = pseudonym("slack", "T1", "U1")
    assert re.fullmatch(r"user-[0-9a-f]{10}", alice)
    assert (
        [s.key for s in first.per_user]
        == [s.key for s in second.per_user]
        == [
            pseudonym("slack", "T1", "U2"),
            alice,
            pseudonym("discord", "G1", "333"),
        ]
    )
    assert first.approved_images[0].approved_by == (pseudonym("slack", "T1", "U4"),)
    assert first.lineage[0].steps[0].user == alice
    assert first.pseudonymised
    rendered = [to_json(first), to_csv(first), to_markdown(first), to_html(first, {})]
    for text in rendered:
        for name in ("Alice", "Bob", "Rita", "discord:333", "U1", "U2"):
            assert name not in text, name
    # the same person gets the same stand-in in another campaign's report
    other = await build_report(seeded, "other", pseudonymise=True)
    assert other.approved_images[0].approved_by == first.approved_images[0].approved_by


def _png(colour: tuple[int, int, int], size: int = 640) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


async def test_html_has_thumbnails_and_charts(seeded: Database) -> None:
    report = await build_report(seeded, "spring")
    originals = {key(g, i): _png((40 * i, 90, 160)) for g, i in [(G1, 2), (G1, 4), (G2, 3)]}
    originals |= {key(G3, 1): _png((200, 120, 40)), key(G6, 1): _png((20, 160, 90))}
    page = to_html(report, originals)  # G6#2's original is missing: shown as unavailable
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == 3
    for title in ("Images per day", "Favourite rate per preset version", "GPU time per user"):
        assert title in page
    sheet, picks = _contact_sheet(page), page.split(_SHEET_END, 1)[1]
    # 4 top + 3 approved cards; G6#2 has no bytes
    strips = re.findall(r'<div class="ancestry">.*?</div>', picks)
    cards = picks.count('src="data:image/jpeg;base64,') - "".join(strips).count('src="data:')
    assert cards == 6
    # the approved upscale's ancestry (G1#2 → G2#3 → G3): both ancestors' thumbnails
    [strip] = strips
    assert strip.count('src="data:image/jpeg;base64,') == 2
    assert strip.endswith('<span class="this">this (upscale)</span></div>')
    assert picks.count("image unavailable") == 1
    # the contact sheet: all 11 images, 5 of them with bytes
    assert sheet.count('src="data:image/jpeg;base64,') == 5
    assert sheet.count("image unavailable") == 6
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    thumb = re.search(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert thumb is not None
    import base64

    with Image.open(io.BytesIO(base64.b64decode(thumb.group(1)))) as shown:
        assert shown.format == "JPEG"
        assert max(shown.size) == 256


# --- the contact sheet ----------------------------------------------------------------------

_SHEET_START, _SHEET_END = "<h2>Contact sheet</h2>", "<h2>Most favourited</h2>"
G9, G10 = gid(9), gid(10)


def _contact_sheet(page: str) -> str:
    """The contact sheet section of an HTML report (it comes right before the top images)."""
    start, end = page.index(_SHEET_START), page.index(_SHEET_END)
    return page[start:end]


def _sheet_tiles(page: str) -> list[tuple[str, int, str]]:
    """(generation id, image index, marks HTML) for each tile on the sheet, in page order."""
    tiles = []
    for article in re.findall(r"<article class=\"gen\".*?</article>", _contact_sheet(page)):
        generation = re.search(r'data-generation="([^"]+)"', article)
        assert generation is not None
        for index, marks in re.findall(
            r'<span class="ix">(\d+)</span><span class="marks">(.*?)</span></figure>', article
        ):
            tiles.append((generation.group(1), int(index), marks))
    return tiles


@pytest.fixture
async def fresh(seeded: Database) -> Database:
    """Beside spring: "fresh" (campaign 3), two 4-image imagines by Alice and Bob, no feedback."""
    gens = [
        _gen(G9, kind="imagine", user=ALICE, campaign=3, preset=2, queued=D2, wait=5, run=20,
             status="done", gpu=20, seed=900),
        _gen(G10, kind="imagine", user=BOB, campaign=3, preset=2, queued=D3, wait=5, run=20,
             status="done", gpu=20, seed=1000),
    ]  # fmt: skip
    images = [
        {"id": 100 + 4 * n + index, "generation_id": g, "index": index,
         "storage_key": key(g, index), "sha256": f"f{n}{index}".ljust(64, "0"),
         "width": 512, "height": 512, "bytes": 1000, "palette_score": None}
        for n, g in enumerate((G9, G10)) for index in range(1, 5)
    ]  # fmt: skip
    async with seeded.engine.begin() as conn:
        await conn.execute(
            insert(Campaign),
            [{"id": 3, "name": "fresh", "preset_name": "brand", "gpu_budget_seconds": None}],
        )
        await conn.execute(insert(Generation), gens)
        await conn.execute(insert(ImageModel), images)
    return seeded


def _originals(*gens: uuid.UUID) -> dict[str, bytes]:
    return {
        key(g, i): _png((30 * i, 60 + 40 * n, 150), 320)
        for n, g in enumerate(gens)
        for i in (1, 2, 3, 4)
    }


async def test_contact_sheet_shows_every_image_before_any_feedback(fresh: Database) -> None:
    report = await build_report(fresh, "fresh")
    assert report.top_images == report.approved_images == ()
    # newest generation first, each generation's images in index order
    assert [img(i.generation_id, i.index) for i in report.recent_images] == [
        *(img(G10, i) for i in (1, 2, 3, 4)),
        *(img(G9, i) for i in (1, 2, 3, 4)),
    ]
    page = to_html(report, _originals(G9, G10))
    assert page.count('src="data:image/jpeg;base64,') == 8
    assert _contact_sheet(page).count('src="data:image/jpeg;base64,') == 8
    assert page.count("None yet.") == 2  # no favourites, no approvals
    assert [(g, i) for g, i, _ in _sheet_tiles(page)] == [
        img(i.generation_id, i.index) for i in report.recent_images
    ]
    assert all(marks == "" for _, _, marks in _sheet_tiles(page))
    sheet = _contact_sheet(page)
    assert "All 8 images, newest first" in sheet
    assert "more not shown" not in sheet
    assert sheet.index("Bob · 2026-03-03 09:00 UTC · imagine") < sheet.index(
        "Alice · 2026-03-02 09:00 UTC · imagine"
    )
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


async def test_contact_sheet_cap_says_how_many_more(fresh: Database) -> None:
    report = await build_report(fresh, "fresh", sheet=5)
    assert [img(i.generation_id, i.index) for i in report.recent_images] == [
        *(img(G10, i) for i in (1, 2, 3, 4)),
        img(G9, 1),
    ]
    page = to_html(report, _originals(G9, G10))
    sheet = _contact_sheet(page)
    assert sheet.count('src="data:image/jpeg;base64,') == 5
    assert "The newest 5 of 8 images" in sheet
    assert "3 more not shown." in sheet
    assert "<code>onbrand report fresh --format html --sheet 8</code>" in sheet
    assert "<code>--format csv</code> lists every image" in sheet

    # the cap counts images, takes the newest generations, skips those without images, and
    # honours the date range
    spring = await build_report(fresh, "spring", sheet=3)
    assert [img(i.generation_id, i.index) for i in spring.recent_images] == [
        img(G6, 1),
        img(G6, 2),
        img(G3, 1),
    ]
    assert "8 more not shown." in _contact_sheet(to_html(spring, {}))
    spring = await build_report(fresh, "spring", since=date(2026, 3, 2), sheet=2)
    assert [img(i.generation_id, i.index) for i in spring.recent_images] == [
        img(G6, 1),
        img(G6, 2),
    ]  # G5 (03-03, cancelled) and G4 (failed) made nothing; G3#1 is the 3rd newest
    sheet = _contact_sheet(to_html(spring, {}))
    assert "1 more not shown." in sheet
    assert "onbrand report spring --format html --since 2026-03-02 --sheet 3" in sheet

    empty = await build_report(fresh, "fresh", sheet=0)
    assert empty.recent_images == ()
    sheet = _contact_sheet(to_html(empty, {}))
    assert "<img" not in sheet
    assert "8 more not shown." in sheet
    with pytest.raises(UserError, match="0 or more"):
        await build_report(fresh, "fresh", sheet=-1)


async def test_contact_sheet_marks_favourites_and_approvals(seeded: Database) -> None:
    report = await build_report(seeded, "spring")
    assert [img(i.generation_id, i.index) for i in report.recent_images] == [
        *(img(G6, i) for i in (1, 2)),
        img(G3, 1),
        *(img(G2, i) for i in (1, 2, 3, 4)),
        *(img(G1, i) for i in (1, 2, 3, 4)),
    ]  # G4 and G5 made no images
    tiles = {(g, i): marks for g, i, marks in _sheet_tiles(to_html(report, {}))}
    fav = '<span class="mark fav">★ {}</span>'.format
    ok = '<span class="mark ok" title="approved">✅</span>'
    assert tiles == {
        img(G6, 1): ok,  # approved through its grid
        img(G6, 2): ok,
        img(G3, 1): fav(1) + ok,
        img(G2, 1): "",
        img(G2, 2): "",
        img(G2, 3): fav(1),
        img(G2, 4): "",
        img(G1, 1): "",  # a dislike is not a mark
        img(G1, 2): fav(2),
        img(G1, 3): "",
        img(G1, 4): fav(1),
    }
    sheet = _contact_sheet(to_html(report, {}))
    assert sheet.count("★ 1 on the grid") == 1  # Alice's ⭐ on G6's whole grid
    assert "All 11 images, newest first" in sheet


async def test_markdown(seeded: Database) -> None:
    md = to_markdown(await build_report(seeded, "spring"))
    assert "**6** requests → **11** images by **3** people" in md
    assert "approval rate 27.3% (3 images)" in md
    assert "| Bob | 2 | 6 |" in md
    assert "upscale 00000000 ← variation 00000000#3 ← imagine 00000000#2" in md


async def test_report_inside_a_callers_session(seeded: Database) -> None:
    async with seeded.sessions() as session:
        report = await build_report(session, "spring", include_images=False)
    assert report.totals.images == 11
    assert report.images is None
    with pytest.raises(ValueError, match="include_images"):
        to_csv(report)
    assert json.loads(to_json(report))["images"] is None


async def test_export_zip(seeded: Database, tmp_path: Path) -> None:
    async def read_image(storage_key: str) -> bytes:
        return f"original {storage_key}".encode()

    out = tmp_path / "approved.zip"
    assert await export_zip(seeded, "spring", "approved", out, read_image) == 3
    with zipfile.ZipFile(out) as archive:
        names = sorted(archive.namelist())
        assert names == sorted(["manifest.csv", f"{G3}-1.png", f"{G6}-1.png", f"{G6}-2.png"])
        assert archive.read(f"{G6}-2.png") == f"original {key(G6, 2)}".encode()
        manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [m["file"] for m in manifest] == [f"{G3}-1.png", f"{G6}-1.png", f"{G6}-2.png"]
    assert manifest[0]["approved_by"] == "Rita"

    favs = tmp_path / "favourites.zip"
    assert await export_zip(seeded, "spring", "favourites", favs, read_image, True) == 4
    with zipfile.ZipFile(favs) as archive:
        manifest_text = archive.read("manifest.csv").decode()
    assert "Alice" not in manifest_text
    assert pseudonym("slack", "T1", "U1") in manifest_text


# --- formula injection -----------------------------------------------------------------------

# What a hostile user can type as a display name or a prompt: each starts a spreadsheet formula.
HOSTILE = ("=cmd|' /C calc'!A0", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)*cmd|'/C calc'!A0",
           "\t=1+1", "\r=1+1")  # fmt: skip
HOSTILE_GENS = tuple(gid(n) for n in range(40, 40 + len(HOSTILE)))


@pytest.fixture
async def hostile(seeded: Database) -> Database:
    """Campaign "hostile" (4): one approved 1-image imagine per ``HOSTILE`` text, by a user of
    that display name, with that text as its prompt, each approved by the next user."""
    users = [
        {"id": 40 + n, "platform": "slack", "workspace_id": 1, "external_id": f"UH{n}",
         "display_name": text}
        for n, text in enumerate(HOSTILE)
    ]  # fmt: skip
    gens = []
    for n, (g, text) in enumerate(zip(HOSTILE_GENS, HOSTILE, strict=True)):
        gen = _gen(g, kind="imagine", user=40 + n, campaign=4, preset=2, queued=D2 + s(n),
                   wait=1, run=1, status="done", gpu=1, seed=n)  # fmt: skip
        gens.append({**gen, "raw_prompt": text, "final_prompt": text})
    images = [
        {"id": 400 + n, "generation_id": g, "index": 1, "storage_key": key(g, 1),
         "sha256": f"e{n}".ljust(64, "0"), "width": 512, "height": 512, "bytes": 1000,
         "palette_score": None}
        for n, g in enumerate(HOSTILE_GENS)
    ]  # fmt: skip
    approvals = [
        {"generation_id": g, "image_id": 400 + n, "user_id": 40 + (n + 1) % len(HOSTILE),
         "kind": "approve", "emoji": "", "created_at": D3}
        for n, g in enumerate(HOSTILE_GENS)
    ]  # fmt: skip
    async with seeded.engine.begin() as conn:
        await conn.execute(insert(User.__table__), users)
        await conn.execute(
            insert(Campaign),
            [{"id": 4, "name": "hostile", "preset_name": "brand", "gpu_budget_seconds": None}],
        )
        await conn.execute(insert(Generation), gens)
        await conn.execute(insert(ImageModel), images)
        await conn.execute(insert(Feedback), approvals)
    return seeded


def _assert_no_formula(rows: list[dict[str, str]]) -> None:
    """Every hostile text comes back with a leading ``'``; no cell starts a formula."""
    assert len(rows) == len(HOSTILE)
    by_generation = {row["generation_id"]: row for row in rows}
    for n, (g, text) in enumerate(zip(HOSTILE_GENS, HOSTILE, strict=True)):
        row = by_generation[str(g)]
        approver = HOSTILE[(n + 1) % len(HOSTILE)]
        assert (row["user"], row["prompt"], row["final_prompt"]) == ("'" + text,) * 3
        assert row["approved_by"] == "'" + approver
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(FORMULA_STARTS), (column, cell)


async def test_csv_cells_never_start_a_formula(hostile: Database, tmp_path: Path) -> None:
    report = await build_report(hostile, "hostile")
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    _assert_no_formula(rows)
    # numbers stay numbers: the seed and sizes are written as they are, not as quoted text
    assert {row["width"] for row in rows} == {"512"}
    assert sorted(int(row["seed"]) for row in rows) == sorted(
        i.seed for i in report.images or () if i.seed is not None
    )

    async def read_image(storage_key: str) -> bytes:
        return b"original"

    out = tmp_path / "approved.zip"
    assert await export_zip(hostile, "hostile", "approved", out, read_image) == len(HOSTILE)
    with zipfile.ZipFile(out) as archive:
        manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    _assert_no_formula(manifest)


def test_report_type_is_frozen() -> None:
    assert CampaignReport.__dataclass_params__.frozen  # type: ignore[attr-defined]


@pytest.mark.slow
def test_bench_runs_tiny(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import report as bench_report

    monkeypatch.setenv("DATABASE_URL", pg_admin_url)
    assert bench_report.main(["--scale", "0.001", "--repeat", "1"]) == 0
