"""A generation's family: from its root (the first ``/imagine``) down through every variation,
upscale, reroll and edit made from it, with who, when and the feedback at each node.

One recursive statement walks up ``parent_id`` to the root and back down through
``ix_generations_parent_id``, at most ``MAX_DEPTH`` levels each way.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.memory.model import Scope
from core.memory.search import PSEUDONYM_SQL

MAX_DEPTH = 50

_FAMILY = """
WITH RECURSIVE up AS (
    SELECT id, parent_id, 0 AS depth FROM generations WHERE id = :gen
    UNION ALL
    SELECT p.id, p.parent_id, up.depth + 1
    FROM up JOIN generations p ON p.id = up.parent_id
    WHERE up.depth < :max_depth
),
root AS (SELECT id FROM up ORDER BY depth DESC LIMIT 1),
down AS (
    SELECT id, 0 AS depth FROM root
    UNION ALL
    SELECT c.id, down.depth + 1
    FROM down JOIN generations c ON c.parent_id = down.id
    WHERE down.depth < :max_depth
)
SELECT g.id, g.parent_id, g.source_index, g.kind, g.status, g.raw_prompt, g.queued_at,
       {pseudonym} AS "user", w.platform, w.external_id AS workspace,
       (SELECT count(*) FROM images im WHERE im.generation_id = g.id) AS images,
       coalesce((SELECT json_agg(json_build_object('kind', f.kind, 'index', im.index))
                 FROM feedback f LEFT JOIN images im ON im.id = f.image_id
                 WHERE f.generation_id = g.id), '[]'::json) AS feedback
FROM down
JOIN generations g ON g.id = down.id
JOIN users u ON u.id = g.user_id
JOIN workspaces w ON w.id = u.workspace_id
ORDER BY down.depth, g.queued_at, g.id
"""

_MARKS = {"favourite": "★", "like": "👍", "dislike": "👎", "approve": "✅"}


@dataclass
class Node:
    generation_id: uuid.UUID
    kind: str
    status: str
    prompt: str
    user: str
    created_at: datetime
    images: int
    from_index: int | None  # which image of the parent it was made from
    feedback: dict[tuple[str, int | None], int]  # (kind, image index or None: grid) → count
    children: list[Node] = field(default_factory=list)

    def feedback_text(self) -> str:
        return ", ".join(
            f"{_MARKS.get(kind, kind)}{'' if index is None else f' #{index}'}"
            + (f" ×{count}" if count > 1 else "")
            for (kind, index), count in sorted(
                self.feedback.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)
            )
        )

    def walk(self, depth: int = 0) -> list[tuple[int, Node]]:
        found = [(depth, self)]
        for child in self.children:
            found += child.walk(depth + 1)
        return found


async def family(session: AsyncSession, generation_id: uuid.UUID, scope: Scope) -> Node:
    """The tree that ``generation_id`` belongs to, from its root. Raises ``NotFound`` when the
    generation doesn't exist in ``scope`` (nodes from another workspace are left out)."""
    rows = (
        await session.execute(
            text(_FAMILY.format(pseudonym=PSEUDONYM_SQL)),
            {"gen": generation_id, "max_depth": MAX_DEPTH},
        )
    ).mappings()
    nodes: dict[uuid.UUID, Node] = {}
    root: Node | None = None
    for r in rows:
        if not scope.everywhere and (r["platform"], r["workspace"]) != (
            scope.platform,
            scope.workspace,
        ):
            continue
        node = Node(
            r["id"],
            r["kind"],
            r["status"],
            r["raw_prompt"],
            r["user"],
            r["queued_at"],
            r["images"],
            r["source_index"],
            dict(Counter((f["kind"], f["index"]) for f in r["feedback"])),
        )
        nodes[node.generation_id] = node
        parent = nodes.get(r["parent_id"]) if r["parent_id"] else None
        if parent is not None:
            parent.children.append(node)
        elif root is None:
            root = node
    if root is None or generation_id not in nodes:
        raise NotFound(f"There is no generation {generation_id} here; check the id.")
    return root
