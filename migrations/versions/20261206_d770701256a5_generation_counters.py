"""generations carry their engagement counters (images, favourites, approvals, …), kept by triggers

Revision ID: d770701256a5
Revises: 6a7c3c4bf1f3
Create Date: 2026-12-06 19:50:00.000000

A campaign report's figures summed each generation's engagement from its raw rows: feedback
aggregated per image, the approved images (grid approvals reach every image of the grid) and the
images counted per generation, about 60 % of the summary's time for the flagship of ``python -m
bench report``. With the counts kept on the generation and in the covering index
``ix_generations_campaign_id_queued_at``, the figures read one index range scan.

The counters are kept current in the same transaction as the writes, by triggers on ``images``
and ``feedback`` that recompute the affected generations' counters from their rows (a generation
has at most 4 images and a few feedback rows: recounting is cheap and cannot drift, as deltas
could). ``onbrand_generation_counts`` first locks the generations (``FOR NO KEY UPDATE``, in id
order) and then counts in a separate statement: each statement of a plpgsql function takes a new
snapshot, so it sees what a transaction it waited for committed.

The lock is ``FOR NO KEY UPDATE`` rather than ``FOR UPDATE`` because the foreign key checks of
an image or feedback row hold ``FOR KEY SHARE`` on the generation, which ``FOR UPDATE`` waits
for: two writers on one generation would each wait for the other. For the same reason the report
scope trigger (migration 004631b64596), which runs before the row is written, now takes ``FOR NO
KEY UPDATE`` instead of ``FOR SHARE``: two writers that both held ``FOR SHARE`` would deadlock
when their counters trigger asks for more. It still sees a concurrent change of the generation
whole, and writers on one generation now queue there instead.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d770701256a5"
down_revision: str | Sequence[str] | None = "6a7c3c4bf1f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = (
    "image_count",
    "favourites",
    "favourited_images",
    "approved_images",
    "grid_favourites",
    "likes",
    "dislikes",
    "approvals",
)
# the index's INCLUDE list before this revision (cb34ec0e8e38)
INCLUDED = (
    "id",
    "kind",
    "status",
    "platform",
    "user_id",
    "preset_name",
    "preset_version",
    "started_at",
    "finished_at",
    "gpu_seconds",
)

# Per generation, from its rows (the report's definitions, docs/reports.md): images; image-level
# favourite rows and the images they are on; images approved directly or through an approval of
# the whole grid, each once; grid-level favourites; like, dislike and approve rows at any level.
# {where_images} / {where_feedback} restrict the rows read (nothing for the backfill).
COUNTS = """
SELECT x.generation_id,
       sum(x.image_count) AS image_count, sum(x.favourites) AS favourites,
       sum(x.favourited_images) AS favourited_images, sum(x.approved_images) AS approved_images,
       sum(x.grid_favourites) AS grid_favourites, sum(x.likes) AS likes,
       sum(x.dislikes) AS dislikes, sum(x.approvals) AS approvals
FROM (
    SELECT generation_id, count(*) AS image_count, 0 AS favourites, 0 AS favourited_images,
           0 AS approved_images, 0 AS grid_favourites, 0 AS likes, 0 AS dislikes, 0 AS approvals
    FROM images {where_images} GROUP BY generation_id
    UNION ALL
    SELECT generation_id, 0,
           count(*) FILTER (WHERE kind = 'favourite' AND image_id IS NOT NULL),
           count(DISTINCT image_id) FILTER (WHERE kind = 'favourite'),
           0,
           count(*) FILTER (WHERE kind = 'favourite' AND image_id IS NULL),
           count(*) FILTER (WHERE kind = 'like'),
           count(*) FILTER (WHERE kind = 'dislike'),
           count(*) FILTER (WHERE kind = 'approve')
    FROM feedback {where_feedback} GROUP BY generation_id
    UNION ALL
    SELECT generation_id, 0, 0, 0, count(*), 0, 0, 0, 0
    FROM (
        SELECT generation_id, image_id FROM feedback
        WHERE kind = 'approve' AND image_id IS NOT NULL {and_feedback}
        UNION
        SELECT i.generation_id, i.id FROM images i
        WHERE EXISTS (SELECT 1 FROM feedback a
                      WHERE a.generation_id = i.generation_id AND a.kind = 'approve'
                        AND a.image_id IS NULL) {and_images}
    ) ap
    GROUP BY generation_id
) x
GROUP BY x.generation_id
"""

_SET = ", ".join(f"{c} = c.{c}" for c in COUNTERS)
_CHANGED = "({}) IS DISTINCT FROM ({})".format(
    ", ".join(f"g.{c}" for c in COUNTERS), ", ".join(f"c.{c}" for c in COUNTERS)
)

BACKFILL = f"""
UPDATE generations g SET {_SET}
FROM ({COUNTS.format(where_images="", where_feedback="", and_feedback="", and_images="")}) c
WHERE g.id = c.generation_id
"""

# Recounts the generations ``gids`` (any order, NULLs and repeats ignored). A generation left
# without rows gets zeros (the outer join); one that is gone (deleted in this transaction) is
# skipped.
_OF_GIDS = COUNTS.format(
    where_images="WHERE generation_id = ANY (gids)",
    where_feedback="WHERE generation_id = ANY (gids)",
    and_feedback="AND generation_id = ANY (gids)",
    and_images="AND i.generation_id = ANY (gids)",
)
_ZEROED = ", ".join(f"coalesce(n.{c}, 0) AS {c}" for c in COUNTERS)
COUNTS_FUNCTION = f"""
CREATE FUNCTION onbrand_generation_counts(gids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- lock first, in id order (two writers meet in the same order); the recount below is a new
    -- statement with a new snapshot, so it sees what a writer we waited for committed
    PERFORM 1 FROM generations WHERE id = ANY (gids) ORDER BY id FOR NO KEY UPDATE;
    UPDATE generations g SET {_SET}
    FROM (
        SELECT t.id AS generation_id, {_ZEROED}
        FROM (SELECT DISTINCT id FROM unnest(gids) u(id) WHERE id IS NOT NULL) t
        LEFT JOIN ({_OF_GIDS}) n ON n.generation_id = t.id
    ) c
    WHERE g.id = c.generation_id AND {_CHANGED};
END $$
"""

FOLLOW_FUNCTION = """
CREATE FUNCTION onbrand_generation_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM onbrand_generation_counts(ARRAY[NEW.generation_id]);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM onbrand_generation_counts(ARRAY[OLD.generation_id]);
    ELSE
        PERFORM onbrand_generation_counts(ARRAY[OLD.generation_id, NEW.generation_id]);
    END IF;
    RETURN NULL;
END $$
"""


def _scope_function(lock: str) -> str:
    """Migration 004631b64596's report scope function, taking ``lock`` on the generation."""
    return f"""
CREATE OR REPLACE FUNCTION onbrand_report_scope() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT g.campaign_id, g.queued_at INTO NEW.campaign_id, NEW.generation_queued_at
    FROM generations g WHERE g.id = NEW.generation_id {lock};
    RETURN NEW;
END $$
"""


def _covering_index(include: Sequence[str]) -> None:
    op.drop_index("ix_generations_campaign_id_queued_at", table_name="generations")
    op.create_index(
        "ix_generations_campaign_id_queued_at",
        "generations",
        ["campaign_id", "queued_at"],
        unique=False,
        postgresql_include=list(include),
    )


def upgrade() -> None:
    for name in COUNTERS:
        op.add_column(
            "generations",
            sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False),
        )
    op.execute(BACKFILL)
    op.execute(_scope_function("FOR NO KEY UPDATE"))
    op.execute(COUNTS_FUNCTION)
    op.execute(FOLLOW_FUNCTION)
    op.execute(
        "CREATE TRIGGER images_generation_counts AFTER INSERT OR DELETE OR UPDATE OF "
        "generation_id ON images FOR EACH ROW EXECUTE FUNCTION onbrand_generation_counts_follow()"
    )
    op.execute(
        "CREATE TRIGGER feedback_generation_counts AFTER INSERT OR DELETE OR UPDATE OF "
        "generation_id, image_id, kind ON feedback "
        "FOR EACH ROW EXECUTE FUNCTION onbrand_generation_counts_follow()"
    )
    _covering_index(INCLUDED + COUNTERS)


def downgrade() -> None:
    _covering_index(INCLUDED)
    op.execute("DROP TRIGGER IF EXISTS feedback_generation_counts ON feedback")
    op.execute("DROP TRIGGER IF EXISTS images_generation_counts ON images")
    op.execute("DROP FUNCTION IF EXISTS onbrand_generation_counts_follow()")
    op.execute("DROP FUNCTION IF EXISTS onbrand_generation_counts(uuid[])")
    op.execute(_scope_function("FOR SHARE"))
    for name in reversed(COUNTERS):
        op.drop_column("generations", name)
