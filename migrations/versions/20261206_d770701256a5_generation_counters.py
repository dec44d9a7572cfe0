"""generations carry their engagement counters (images, favourites, approvals, …), kept by triggers

Revision ID: d770701256a5
Revises: e3b7a4c9d215
Create Date: 2026-12-06 19:50:00.000000

A campaign report's figures summed each generation's engagement from its raw rows: feedback
aggregated per image, the approved images (grid approvals reach every image of the grid) and the
images counted per generation: most of the figures' time for the flagship of ``python -m bench
report``. With the counts kept on the generation and in the covering index
``ix_generations_campaign_id_queued_at``, the figures read one index range scan.

The counters are kept current in the same transaction as the writes, by triggers on ``images``
(insert, delete, a change of ``generation_id``) and ``feedback`` (insert, delete, a change of
``generation_id``, ``image_id`` or ``kind``) that recount the affected generations from their rows
(a generation has at most 4 images and a few feedback rows: recounting is cheap and cannot drift,
as deltas could). ``onbrand_generation_counts`` first locks the generations and then counts in
separate statements: each statement of a plpgsql function takes a new snapshot, so the counts see
what a transaction it waited for committed (counting in the statement that takes the lock would
miss it).

The lock is ``FOR NO KEY UPDATE`` (what the UPDATE of the counters takes anyway), not ``FOR
UPDATE``, so the foreign key checks of rows that reference the generation (``FOR KEY SHARE``)
neither wait for it nor block it. The report scope trigger (migration 004631b64596), which runs
before an image or feedback row is written, now takes ``FOR NO KEY UPDATE`` too instead of ``FOR
SHARE``: two writers on one generation that both held ``FOR SHARE`` deadlocked when their counts
asked for the stronger lock. It still sees a concurrent change of the generation whole; writers
on one generation now queue there, before they write. (A delete or an update locks its row before
its trigger locks the generation: the same reaction removed and added at the very same moment
can still deadlock, and PostgreSQL then fails one of the two.)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d770701256a5"
down_revision: str | Sequence[str] | None = "e3b7a4c9d215"
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
BACKFILL = """
UPDATE generations g
SET image_count = c.image_count, favourites = c.favourites,
    favourited_images = c.favourited_images, approved_images = c.approved_images,
    grid_favourites = c.grid_favourites, likes = c.likes, dislikes = c.dislikes,
    approvals = c.approvals
FROM (
    SELECT generation_id,
           sum(image_count) AS image_count, sum(favourites) AS favourites,
           sum(favourited_images) AS favourited_images, sum(approved_images) AS approved_images,
           sum(grid_favourites) AS grid_favourites, sum(likes) AS likes,
           sum(dislikes) AS dislikes, sum(approvals) AS approvals
    FROM (
        SELECT generation_id, count(*) AS image_count, 0 AS favourites,
               0 AS favourited_images, 0 AS approved_images, 0 AS grid_favourites, 0 AS likes,
               0 AS dislikes, 0 AS approvals
        FROM images GROUP BY generation_id
        UNION ALL
        SELECT generation_id, 0,
               count(*) FILTER (WHERE kind = 'favourite' AND image_id IS NOT NULL),
               count(DISTINCT image_id) FILTER (WHERE kind = 'favourite'),
               0,
               count(*) FILTER (WHERE kind = 'favourite' AND image_id IS NULL),
               count(*) FILTER (WHERE kind = 'like'),
               count(*) FILTER (WHERE kind = 'dislike'),
               count(*) FILTER (WHERE kind = 'approve')
        FROM feedback GROUP BY generation_id
        UNION ALL
        SELECT generation_id, 0, 0, 0, count(*), 0, 0, 0, 0
        FROM (
            SELECT generation_id, image_id FROM feedback
            WHERE kind = 'approve' AND image_id IS NOT NULL
            UNION
            SELECT i.generation_id, i.id FROM images i
            WHERE EXISTS (SELECT 1 FROM feedback a
                          WHERE a.generation_id = i.generation_id AND a.kind = 'approve'
                            AND a.image_id IS NULL)
        ) ap
        GROUP BY generation_id
    ) x
    GROUP BY generation_id
) c
WHERE g.id = c.generation_id
"""

# Recounts the generations ``gids`` (distinct, not NULL): the same definitions, one generation
# at a time, in small statements whose plans plpgsql keeps (one big statement for all of them
# cost about twice as much per row written). A generation that is gone is skipped.
COUNTS_FUNCTION = """
CREATE FUNCTION onbrand_generation_counts(gids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    gid uuid;
    n_images int; n_favourites int; n_favourited int; n_approved int; n_grid_favourites int;
    n_likes int; n_dislikes int; n_approvals int; n_grid_approvals int;
BEGIN
    -- lock first, in id order (two writers meet in the same order); the counts below are new
    -- statements with new snapshots, so they see what a writer we waited for committed
    PERFORM 1 FROM generations WHERE id = ANY (gids) ORDER BY id FOR NO KEY UPDATE;
    FOREACH gid IN ARRAY gids LOOP
        SELECT count(*) INTO n_images FROM images WHERE generation_id = gid;
        SELECT count(*) FILTER (WHERE kind = 'favourite' AND image_id IS NOT NULL),
               count(DISTINCT image_id) FILTER (WHERE kind = 'favourite'),
               count(DISTINCT image_id) FILTER (WHERE kind = 'approve'),
               count(*) FILTER (WHERE kind = 'favourite' AND image_id IS NULL),
               count(*) FILTER (WHERE kind = 'like'),
               count(*) FILTER (WHERE kind = 'dislike'),
               count(*) FILTER (WHERE kind = 'approve'),
               count(*) FILTER (WHERE kind = 'approve' AND image_id IS NULL)
        INTO n_favourites, n_favourited, n_approved, n_grid_favourites, n_likes, n_dislikes,
             n_approvals, n_grid_approvals
        FROM feedback WHERE generation_id = gid;
        IF n_grid_approvals > 0 THEN  -- every image of the grid, and any approved elsewhere
            SELECT count(*) INTO n_approved FROM (
                SELECT id FROM images WHERE generation_id = gid
                UNION
                SELECT image_id FROM feedback
                WHERE generation_id = gid AND kind = 'approve' AND image_id IS NOT NULL
            ) a;
        END IF;
        UPDATE generations
        SET image_count = n_images, favourites = n_favourites, favourited_images = n_favourited,
            approved_images = n_approved, grid_favourites = n_grid_favourites, likes = n_likes,
            dislikes = n_dislikes, approvals = n_approvals
        WHERE id = gid
          AND (image_count, favourites, favourited_images, approved_images, grid_favourites,
               likes, dislikes, approvals)
              IS DISTINCT FROM (n_images, n_favourites, n_favourited, n_approved,
                                n_grid_favourites, n_likes, n_dislikes, n_approvals);
    END LOOP;
END $$
"""

FOLLOW_FUNCTION = """
CREATE FUNCTION onbrand_generation_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM onbrand_generation_counts(ARRAY[NEW.generation_id]);
    ELSIF TG_OP = 'DELETE' OR OLD.generation_id = NEW.generation_id THEN
        PERFORM onbrand_generation_counts(ARRAY[OLD.generation_id]);
    ELSE  -- moved: both generations
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
