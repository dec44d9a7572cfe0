"""images carry their engagement (favourites, likes, dislikes, first favourite and approval)

Revision ID: de10912017cf
Revises: d770701256a5
Create Date: 2026-12-06 22:40:00.000000

A campaign report's picks (its top images, its approved images with their details, the contact
sheet) rebuilt every image's engagement from the campaign's feedback rows: for the flagship of
``python -m bench report`` 40,000 rows aggregated into 32,000 images before a single image was
picked, most of the picks' time. Now each image keeps its image-level ``favourites``, ``likes``
and ``dislikes``, its first favourite (``first_favourite_at``) and its first approval
(``approved_at``: of the image or of its whole grid), and each generation its grid-level likes
and dislikes (``grid_likes``, ``grid_dislikes``, beside ``grid_favourites``). The picks read the
approved images from a small partial index, the top images from the head of another, and the
approvers from a third; the figures' medians to the first favourite and to approval read the
same two indexes instead of the campaign's favourite and approval rows.

The counters are kept current in the same transaction as the writes by the generation counters'
function of migration d770701256a5, ``onbrand_generation_counts``, which this revision extends:
it already locks the generation (``FOR NO KEY UPDATE``) whenever an image or feedback row of it
is written, and now also recounts the images of the generation (at most four, and its few
feedback rows) and writes those whose counters changed. Same lock, same order: the generation
first, then its rows. An image counts the feedback rows on it that belong to its generation, as
the generation's counters count rows on their generation.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "de10912017cf"
down_revision: str | Sequence[str] | None = "d770701256a5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IMAGE_COUNTERS = ("favourites", "likes", "dislikes")
GRID_COUNTERS = ("grid_likes", "grid_dislikes")

# Every image with image-level feedback or an approval of its grid, and every generation with a
# grid-level like or dislike (the others keep the defaults: 0 and NULL).
BACKFILL = (
    """
UPDATE images i
SET favourites = c.favourites, likes = c.likes, dislikes = c.dislikes,
    first_favourite_at = c.first_favourite_at, approved_at = c.approved_at
FROM (
    SELECT i.id,
           count(*) FILTER (WHERE f.kind = 'favourite' AND f.image_id = i.id) AS favourites,
           count(*) FILTER (WHERE f.kind = 'like' AND f.image_id = i.id) AS likes,
           count(*) FILTER (WHERE f.kind = 'dislike' AND f.image_id = i.id) AS dislikes,
           min(f.created_at) FILTER (WHERE f.kind = 'favourite' AND f.image_id = i.id)
               AS first_favourite_at,
           min(f.created_at) FILTER (WHERE f.kind = 'approve') AS approved_at
    FROM feedback f
    JOIN images i ON i.generation_id = f.generation_id
     AND (f.image_id = i.id OR (f.image_id IS NULL AND f.kind = 'approve'))
    GROUP BY i.id
) c
WHERE i.id = c.id
""",
    """
UPDATE generations g SET grid_likes = c.likes, grid_dislikes = c.dislikes
FROM (
    SELECT generation_id, count(*) FILTER (WHERE kind = 'like') AS likes,
           count(*) FILTER (WHERE kind = 'dislike') AS dislikes
    FROM feedback WHERE image_id IS NULL AND kind IN ('like', 'dislike')
    GROUP BY generation_id
) c
WHERE g.id = c.generation_id
""",
)

# d770701256a5's function plus the grid's likes and dislikes and the images' counters.
_COUNTS = """
CREATE OR REPLACE FUNCTION onbrand_generation_counts(gids uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    gid uuid;
    n_images int; n_favourites int; n_favourited int; n_approved int; n_grid_favourites int;
    n_likes int; n_dislikes int; n_approvals int; n_grid_approvals int;{declare}
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
               count(*) FILTER (WHERE kind = 'approve' AND image_id IS NULL){select}
        INTO n_favourites, n_favourited, n_approved, n_grid_favourites, n_likes, n_dislikes,
             n_approvals, n_grid_approvals{into}
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
            dislikes = n_dislikes, approvals = n_approvals{set}
        WHERE id = gid
          AND (image_count, favourites, favourited_images, approved_images, grid_favourites,
               likes, dislikes, approvals{columns})
              IS DISTINCT FROM (n_images, n_favourites, n_favourited, n_approved,
                                n_grid_favourites, n_likes, n_dislikes,
                                n_approvals{values});{images}
    END LOOP;
END $$
"""

# Each image of the generation: the image-level favourite, like and dislike rows on it and its
# first favourite and first approval (of the image, or of the whole grid); only images whose
# counters changed are written.
_IMAGES = """
        UPDATE images im
        SET favourites = c.favourites, likes = c.likes, dislikes = c.dislikes,
            first_favourite_at = c.first_favourite_at, approved_at = c.approved_at
        FROM (
            SELECT i.id,
                   count(f.kind) FILTER (WHERE f.kind = 'favourite' AND f.image_id = i.id)
                       AS favourites,
                   count(f.kind) FILTER (WHERE f.kind = 'like' AND f.image_id = i.id) AS likes,
                   count(f.kind) FILTER (WHERE f.kind = 'dislike' AND f.image_id = i.id)
                       AS dislikes,
                   min(f.created_at) FILTER (WHERE f.kind = 'favourite' AND f.image_id = i.id)
                       AS first_favourite_at,
                   min(f.created_at) FILTER (WHERE f.kind = 'approve') AS approved_at
            FROM images i
            LEFT JOIN feedback f ON f.generation_id = gid
                 AND (f.image_id = i.id OR (f.image_id IS NULL AND f.kind = 'approve'))
            WHERE i.generation_id = gid
            GROUP BY i.id
        ) c
        WHERE im.id = c.id
          AND (im.favourites, im.likes, im.dislikes, im.first_favourite_at, im.approved_at)
              IS DISTINCT FROM (c.favourites, c.likes, c.dislikes, c.first_favourite_at,
                                c.approved_at);"""

COUNTS_FUNCTION = _COUNTS.format(
    declare=" n_grid_likes int; n_grid_dislikes int;",
    select=""",
               count(*) FILTER (WHERE kind = 'like' AND image_id IS NULL),
               count(*) FILTER (WHERE kind = 'dislike' AND image_id IS NULL)""",
    into=", n_grid_likes, n_grid_dislikes",
    set=", grid_likes = n_grid_likes,\n            grid_dislikes = n_grid_dislikes",
    columns=", grid_likes, grid_dislikes",
    values=", n_grid_likes, n_grid_dislikes",
    images="\n" + _IMAGES,
)
# d770701256a5's function as it was
PREVIOUS_COUNTS_FUNCTION = _COUNTS.format(
    declare="", select="", into="", set="", columns="", values="", images=""
)


def upgrade() -> None:
    for name in IMAGE_COUNTERS:
        op.add_column(
            "images", sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    for name in ("first_favourite_at", "approved_at"):
        op.add_column("images", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    for name in GRID_COUNTERS:
        op.add_column(
            "generations",
            sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False),
        )
    for sql in BACKFILL:
        op.execute(sql)
    op.execute(COUNTS_FUNCTION)
    # the approved images of a campaign with what the report shows of them (index only)
    op.create_index(
        "ix_images_campaign_approved",
        "images",
        ["campaign_id", "generation_queued_at"],
        unique=False,
        postgresql_include=[
            *("id", "generation_id", "index", "width", "height", "palette_score"),
            *("storage_key", "favourites", "likes", "dislikes", "approved_at"),
        ],
        postgresql_where=sa.text("approved_at IS NOT NULL"),
    )
    # a campaign's favourited images, most favourited first (read backwards): the top images
    # and the times to a first favourite
    op.create_index(
        "ix_images_campaign_top",
        "images",
        ["campaign_id", "favourites", "likes"],
        unique=False,
        postgresql_include=["id", "generation_id", "generation_queued_at", "first_favourite_at"],
        postgresql_where=sa.text("favourites > 0"),
    )
    # who approved what in a campaign
    op.create_index(
        "ix_feedback_campaign_approvals",
        "feedback",
        ["campaign_id", "generation_queued_at"],
        unique=False,
        postgresql_include=["generation_id", "image_id", "user_id", "created_at"],
        postgresql_where=sa.text("kind = 'approve'"),
    )


def downgrade() -> None:
    op.drop_index("ix_feedback_campaign_approvals", table_name="feedback")
    op.drop_index("ix_images_campaign_top", table_name="images")
    op.drop_index("ix_images_campaign_approved", table_name="images")
    op.execute(PREVIOUS_COUNTS_FUNCTION)
    for name in reversed(GRID_COUNTERS):
        op.drop_column("generations", name)
    op.drop_column("images", "approved_at")
    op.drop_column("images", "first_favourite_at")
    for name in reversed(IMAGE_COUNTERS):
        op.drop_column("images", name)
