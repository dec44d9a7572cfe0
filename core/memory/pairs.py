"""Preference pairs from grid choices, in the Pick-a-Pic / Diffusion-DPO shape (parquet).

The rule (also in ``docs/memory.md``): within one grid (an ``imagine``, ``variation`` or
``reroll`` generation of the campaign that finished with two or more images), an image is
*chosen* when someone upscaled it (an ``upscale`` generation made from it), favourited it (an
image-level ⭐/❤/1️⃣–4️⃣) or approved it (an image-level ✅). Every chosen image is paired with
every sibling in the same grid that nobody chose: one row per (chosen, not chosen). Grid-level
reactions say nothing about which image won and give no pairs; a grid where every image or no
image was chosen gives none either.

Columns, as Pick-a-Pic v2 names them: ``caption`` (the prompt as typed), ``jpg_0``/``jpg_1`` (the
originals' bytes: onbrand's PNGs, which the same loaders open), ``label_0``/``label_1`` (1.0 for
the chosen image, 0.0 for the other), ``model_0``/``model_1`` (the model that made each), ``user``
(the chooser's pseudonym, the reports' formula). Which side the chosen image is on is decided by a
hash of the pair, so position says nothing. Extra columns: ``final_prompt``, ``generation_id``,
``index_0``, ``index_1``, ``reason`` (upscaled | favourited | approved), ``preset``,
``preset_version``, ``created_at``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from core.db.database import Database
from core.errors import ConfigError, NotFound
from core.memory.search import PSEUDONYM_SQL

COLUMNS = (
    "caption", "jpg_0", "jpg_1", "label_0", "label_1", "model_0", "model_1", "user",
    "final_prompt", "generation_id", "index_0", "index_1", "reason", "preset", "preset_version",
    "created_at",
)  # fmt: skip

_PAIRS = """
WITH g AS MATERIALIZED (
    SELECT id, raw_prompt, final_prompt, params->>'model' AS model, preset_name,
           preset_version, queued_at
    FROM generations
    WHERE campaign_id = :cid AND status = 'done' AND kind IN ('imagine', 'variation', 'reroll')
),
imgs AS MATERIALIZED (
    SELECT im.generation_id, im.index, im.storage_key FROM images im
    WHERE im.generation_id = ANY (ARRAY(SELECT id FROM g))
),
signals AS (
    SELECT c.parent_id AS generation_id, c.source_index AS index, 'upscaled' AS reason,
           c.user_id, c.queued_at AS at
    FROM generations c
    WHERE c.kind = 'upscale' AND c.parent_id = ANY (ARRAY(SELECT id FROM g))
    UNION ALL
    SELECT f.generation_id, im.index,
           CASE f.kind WHEN 'favourite' THEN 'favourited' ELSE 'approved' END,
           f.user_id, f.created_at
    FROM feedback f JOIN images im ON im.id = f.image_id
    WHERE f.kind IN ('favourite', 'approve') AND f.generation_id = ANY (ARRAY(SELECT id FROM g))
),
chosen AS (
    SELECT DISTINCT ON (generation_id, index) generation_id, index, reason, user_id
    FROM signals WHERE index IS NOT NULL
    ORDER BY generation_id, index, at
)
SELECT g.id AS generation_id, g.raw_prompt, g.final_prompt, g.model, g.preset_name,
       g.preset_version, g.queued_at, ch.reason, {pseudonym} AS "user",
       win.index AS win_index, win.storage_key AS win_key,
       lose.index AS lose_index, lose.storage_key AS lose_key
FROM chosen ch
JOIN g ON g.id = ch.generation_id
JOIN imgs win ON win.generation_id = ch.generation_id AND win.index = ch.index
JOIN imgs lose ON lose.generation_id = ch.generation_id AND lose.index <> ch.index
JOIN users u ON u.id = ch.user_id
JOIN workspaces w ON w.id = u.workspace_id
WHERE NOT EXISTS (SELECT 1 FROM chosen c2
                  WHERE c2.generation_id = lose.generation_id AND c2.index = lose.index)
ORDER BY g.queued_at, g.id, win.index, lose.index
"""


def _chosen_first(generation_id: str, win: int, lose: int) -> bool:
    return hashlib.sha256(f"{generation_id}:{win}:{lose}".encode()).digest()[0] % 2 == 0


async def export_pairs(
    db: Database, campaign: str, out: Path, read_image: Callable[[str], Awaitable[bytes]]
) -> int:
    """Write the campaign's preference pairs to ``out`` (parquet); the number of pairs."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError(
            "the pairs export needs pyarrow: install onbrand with the memory extra "
            "(pip install 'onbrand[memory]')"
        ) from exc
    async with db.sessions() as session:
        cid = await session.scalar(
            text("SELECT id FROM campaigns WHERE name = :name"), {"name": campaign}
        )
        if cid is None:
            raise NotFound(f"There is no campaign called {campaign}.")
        rows = (
            (await session.execute(text(_PAIRS.format(pseudonym=PSEUDONYM_SQL)), {"cid": cid}))
            .mappings()
            .all()
        )
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    cache: dict[str, bytes] = {}

    missing: set[str] = set()

    async def image(key: str) -> bytes:
        if key not in cache:
            try:
                cache[key] = await read_image(key)
            except KeyError:
                missing.add(key)
                cache[key] = b""
        return cache[key]

    for r in rows:
        gen = str(r["generation_id"])
        win = (r["win_index"], await image(r["win_key"]), 1.0)
        lose = (r["lose_index"], await image(r["lose_key"]), 0.0)
        first, second = (win, lose) if _chosen_first(gen, win[0], lose[0]) else (lose, win)
        values = {
            "caption": r["raw_prompt"], "jpg_0": first[1], "jpg_1": second[1],
            "label_0": first[2], "label_1": second[2], "model_0": r["model"],
            "model_1": r["model"], "user": r["user"], "final_prompt": r["final_prompt"],
            "generation_id": gen, "index_0": first[0], "index_1": second[0],
            "reason": r["reason"], "preset": r["preset_name"],
            "preset_version": r["preset_version"], "created_at": r["queued_at"],
        }  # fmt: skip
        for name in COLUMNS:
            columns[name].append(values[name])
    schema = pa.schema(
        [
            ("caption", pa.string()), ("jpg_0", pa.binary()), ("jpg_1", pa.binary()),
            ("label_0", pa.float64()), ("label_1", pa.float64()), ("model_0", pa.string()),
            ("model_1", pa.string()), ("user", pa.string()), ("final_prompt", pa.string()),
            ("generation_id", pa.string()), ("index_0", pa.int32()), ("index_1", pa.int32()),
            ("reason", pa.string()), ("preset", pa.string()), ("preset_version", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )  # fmt: skip
    if missing:
        raise NotFound(
            f"{len(missing)} originals are missing from the image store, so no pairs were "
            f"written: {', '.join(sorted(missing)[:5])}. Restore them and export again."
        )
    await asyncio.to_thread(pq.write_table, pa.table(columns, schema=schema), out)
    return len(rows)
