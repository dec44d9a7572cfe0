"""image_embeddings carry their image's workspace, campaign and queued_at (filtered vector search)

Revision ID: e3b7a4c9d215
Revises: 6a7c3c4bf1f3
Create Date: 2026-12-06 20:00:00.000000

A filtered vector search ("more like this in campaign X") reads the HNSW index in order and
keeps the rows that pass the filters. Checked through images → generations → users, every
candidate costs four index probes; at 200,000 vectors that made ``--like --campaign`` 258 ms at
p95 (``python -m bench search``). With the workspace, campaign and queued_at copied onto the
embedding row the check reads the row the scan visits anyway, and a selective filter can skip
the graph altogether: the campaign's own vectors through the B-tree index below, compared
exactly (``core.memory.vectors``).

The copies are kept as the report scope on images is (migration 004631b64596): a new embedding
reads them from its image (``FOR SHARE``), and an image whose copies change (its generation
moved campaign) passes the change on. A user never changes workspace. The vector column is
stored inline (``STORAGE MAIN``): a 512-wide vector is 2 KB, just over the TOAST threshold, and
out of line every exact comparison would fetch it from the TOAST table first.

Only where the embeddings table exists (pgvector was there at migration 6a7c3c4bf1f3).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e3b7a4c9d215"
down_revision: str | Sequence[str] | None = "6a7c3c4bf1f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCOPE_FUNCTION = """
CREATE FUNCTION onbrand_embedding_scope() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT u.workspace_id, im.campaign_id, im.generation_queued_at
    INTO NEW.workspace_id, NEW.campaign_id, NEW.generation_queued_at
    FROM images im
    JOIN generations g ON g.id = im.generation_id
    JOIN users u ON u.id = g.user_id
    WHERE im.id = NEW.image_id FOR SHARE OF im;
    RETURN NEW;
END $$
"""

FOLLOW_FUNCTION = """
CREATE FUNCTION onbrand_embedding_scope_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE image_embeddings
    SET campaign_id = NEW.campaign_id, generation_queued_at = NEW.generation_queued_at
    WHERE image_id = NEW.id;
    RETURN NULL;
END $$
"""


def _has_table() -> bool:
    found = op.get_bind().scalar(sa.text("SELECT to_regclass('image_embeddings') IS NOT NULL"))
    return bool(found)


def upgrade() -> None:
    if not _has_table():
        return
    op.execute(
        "ALTER TABLE image_embeddings ADD COLUMN workspace_id INTEGER, "
        "ADD COLUMN campaign_id INTEGER, ADD COLUMN generation_queued_at TIMESTAMPTZ, "
        "ALTER COLUMN embedding SET STORAGE MAIN"
    )
    op.execute(
        "UPDATE image_embeddings e SET workspace_id = u.workspace_id, "
        "campaign_id = im.campaign_id, generation_queued_at = im.generation_queued_at "
        "FROM images im JOIN generations g ON g.id = im.generation_id "
        "JOIN users u ON u.id = g.user_id WHERE im.id = e.image_id"
    )
    op.execute(
        "CREATE INDEX ix_image_embeddings_scope ON image_embeddings "
        "(model, workspace_id, campaign_id, generation_queued_at)"
    )
    op.execute(SCOPE_FUNCTION)
    op.execute(FOLLOW_FUNCTION)
    op.execute(
        "CREATE TRIGGER image_embeddings_scope BEFORE INSERT OR UPDATE OF image_id, "
        "workspace_id, campaign_id, generation_queued_at ON image_embeddings "
        "FOR EACH ROW EXECUTE FUNCTION onbrand_embedding_scope()"
    )
    op.execute(
        "CREATE TRIGGER images_embedding_scope AFTER UPDATE OF campaign_id, "
        "generation_queued_at ON images FOR EACH ROW "
        "WHEN (OLD.campaign_id IS DISTINCT FROM NEW.campaign_id "
        "OR OLD.generation_queued_at IS DISTINCT FROM NEW.generation_queued_at) "
        "EXECUTE FUNCTION onbrand_embedding_scope_follow()"
    )


def downgrade() -> None:
    if not _has_table():
        return
    op.execute("DROP TRIGGER IF EXISTS images_embedding_scope ON images")
    op.execute("DROP TRIGGER IF EXISTS image_embeddings_scope ON image_embeddings")
    op.execute("DROP FUNCTION IF EXISTS onbrand_embedding_scope_follow()")
    op.execute("DROP FUNCTION IF EXISTS onbrand_embedding_scope()")
    op.execute("DROP INDEX IF EXISTS ix_image_embeddings_scope")
    op.execute(
        "ALTER TABLE image_embeddings DROP COLUMN workspace_id, DROP COLUMN campaign_id, "
        "DROP COLUMN generation_queued_at, ALTER COLUMN embedding SET STORAGE EXTERNAL"
    )
