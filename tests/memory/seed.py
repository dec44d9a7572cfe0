"""A small team history on real PostgreSQL for the memory tests.

Workspace slack:T1 (Ann, Bob, reviewer Rita) and workspace slack:T2 (Eve). Campaigns spring and
autumn. Every image is a real 64 px PNG in a local image store, so perceptual hashes are real:

    B1 "a blue square on a red background"     Ann  spring  4 images   #2 ★ Bob, #3 approved (Rita)
    B2 "a red square on a blue background"     Bob  spring  4 images
    B3 "a yellow circle on a green background" Ann  autumn  2 images   grid approved (Rita)
    V1 variation of B1#2, "a blue square …"    Bob  spring  4 images   #1 ★ Ann (upscaled next)
    U1 upscale of V1#1                         Ann  spring  1 image
    E1 "a blue square on a red background"     Eve  (T2)    4 images   never seen from T1
    D1 "poster with the same picture"          Ann  autumn  1 image: B1#3's picture, a shade lighter
"""

from __future__ import annotations

import io
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL import Image, ImageDraw
from sqlalchemy import insert

from core.db import Database
from core.db.models import Campaign, Feedback, Generation, PresetVersion, User, Workspace
from core.db.models import Image as ImageModel
from core.storage.local import LocalImageStore

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
B1, B2, B3, V1, U1, E1, D1 = (uuid.UUID(int=n) for n in (1, 2, 3, 4, 5, 6, 7))
ANN, BOB, RITA, EVE = 1, 2, 3, 4
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "yellow": (240, 220, 40),
           "green": (40, 180, 60)}  # fmt: skip


def picture(seed: int, lighter: int = 0) -> bytes:
    """A distinct 64 px picture per seed (random blocks), optionally a shade lighter."""
    rng = random.Random(seed)
    image = Image.new("RGB", (64, 64))
    draw = ImageDraw.Draw(image)
    for y in range(0, 64, 8):
        for x in range(0, 64, 8):
            colour = tuple(min(255, rng.randrange(256) + lighter) for _ in range(3))
            draw.rectangle((x, y, x + 7, y + 7), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _gen(g: uuid.UUID, prompt: str, user: int, campaign: int | None, at: timedelta,
         kind: str = "imagine", parent: uuid.UUID | None = None, source_index: int | None = None,
         platform: str = "slack", workspace: str = "T1") -> dict[str, Any]:  # fmt: skip
    return {
        "id": g, "parent_id": parent, "source_index": source_index, "kind": kind,
        "platform": platform, "user_id": user, "campaign_id": campaign, "preset_id": 1,
        "preset_name": "acme", "preset_version": "v1", "raw_prompt": prompt,
        "final_prompt": f"{prompt}, flat colours, acme style", "negative_prompt": "",
        "params": {"seed": 7, "model": "tiny", "steps": 4, "width": 64, "height": 64},
        "status": "done", "queued_at": T0 + at, "started_at": T0 + at,
        "finished_at": T0 + at + timedelta(seconds=5), "gpu_seconds": 1.0,
        "reply_target": {"platform": platform, "workspace_id": workspace, "channel_id": "C1"},
    }  # fmt: skip


GENERATIONS = [
    (_gen(B1, "a blue square on a red background", ANN, 1, timedelta(0)), 4),
    (_gen(B2, "a red square on a blue background", BOB, 1, timedelta(hours=1)), 4),
    (_gen(B3, "a yellow circle on a green background", ANN, 2, timedelta(days=2)), 2),
    (_gen(V1, "a blue square on a red background", BOB, 1, timedelta(hours=2), "variation",
          B1, 2), 4),
    (_gen(U1, "a blue square on a red background", ANN, 1, timedelta(hours=3), "upscale",
          V1, 1), 1),
    (_gen(E1, "a blue square on a red background", EVE, None, timedelta(hours=4),
          workspace="T2"), 4),
    (_gen(D1, "poster with the same picture", ANN, 2, timedelta(days=3)), 1),
]  # fmt: skip


def image_id(g: uuid.UUID, index: int) -> int:
    return g.int * 10 + index


async def seed(db: Database, store: LocalImageStore, *, hashed: bool = True) -> None:
    images = []
    for gen, n in GENERATIONS:
        for index in range(1, n + 1):
            seed_no = gen["id"].int * 10 + index
            data = picture(image_id(B1, 3), lighter=6) if gen["id"] == D1 else picture(seed_no)
            key = await store.put(data)
            images.append({"id": image_id(gen["id"], index), "generation_id": gen["id"],
                           "index": index, "storage_key": key, "sha256": key[:64].ljust(64, "0"),
                           "width": 64, "height": 64, "bytes": len(data)})  # fmt: skip

    def fb(user: int, g: uuid.UUID, index: int | None, kind: str) -> dict[str, Any]:
        return {"generation_id": g, "image_id": image_id(g, index) if index else None,
                "user_id": user, "kind": kind, "emoji": ""}  # fmt: skip

    async with db.engine.begin() as conn:
        await conn.execute(insert(Workspace.__table__), [
            {"id": 1, "platform": "slack", "external_id": "T1", "name": "Acme"},
            {"id": 2, "platform": "slack", "external_id": "T2", "name": "Rival"},
        ])  # fmt: skip
        await conn.execute(insert(User.__table__), [
            {"id": ANN, "platform": "slack", "workspace_id": 1, "external_id": "U1",
             "display_name": "Ann"},
            {"id": BOB, "platform": "slack", "workspace_id": 1, "external_id": "U2",
             "display_name": "Bob"},
            {"id": RITA, "platform": "slack", "workspace_id": 1, "external_id": "U3",
             "display_name": "Rita"},
            {"id": EVE, "platform": "slack", "workspace_id": 2, "external_id": "U9",
             "display_name": "Eve"},
        ])  # fmt: skip
        await conn.execute(
            insert(PresetVersion.__table__),
            [{"id": 1, "name": "acme", "version": "v1", "yaml_text": "name: acme"}],
        )
        await conn.execute(insert(Campaign.__table__), [
            {"id": 1, "name": "spring", "preset_name": "acme"},
            {"id": 2, "name": "autumn", "preset_name": "acme"},
        ])  # fmt: skip
        await conn.execute(insert(Generation.__table__), [g for g, _ in GENERATIONS])
        await conn.execute(insert(ImageModel.__table__), images)
        await conn.execute(insert(Feedback.__table__), [
            fb(BOB, B1, 2, "favourite"), fb(RITA, B1, 3, "approve"),
            fb(RITA, B3, None, "approve"), fb(ANN, V1, 1, "favourite"),
        ])  # fmt: skip
    if hashed:
        from core.memory.indexer import reindex

        await reindex(db, store)
