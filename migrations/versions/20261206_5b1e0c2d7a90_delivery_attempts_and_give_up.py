"""delivery attempts, back-off and giving up

Revision ID: 5b1e0c2d7a90
Revises: 3dffceae6278
Create Date: 2026-12-06 13:10:00.000000

A result whose channel is gone used to be re-posted on every sweep, and fifty of them kept newer
results from ever being posted. Each generation now counts its failed deliveries, waits before
the next (``delivery_retry_at``), and records why it was given up (``undeliverable``); the
partial index of undelivered results leaves the given-up ones out.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "5b1e0c2d7a90"
down_revision: str | Sequence[str] | None = "3dffceae6278"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Attempts, the next try and the reason for giving up; the index without given-up rows."""
    op.add_column(
        "generations",
        sa.Column("delivery_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "generations", sa.Column("delivery_retry_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("generations", sa.Column("undeliverable", sa.Text(), nullable=True))
    op.drop_index("ix_generations_undelivered", table_name="generations")
    op.create_index(
        "ix_generations_undelivered",
        "generations",
        ["finished_at"],
        unique=False,
        postgresql_where=sa.text("delivered_at IS NULL AND undeliverable IS NULL"),
    )


def downgrade() -> None:
    """Back to retrying every sweep."""
    op.drop_index("ix_generations_undelivered", table_name="generations")
    op.create_index(
        "ix_generations_undelivered",
        "generations",
        ["finished_at"],
        unique=False,
        postgresql_where=sa.text("delivered_at IS NULL AND status IN ('done', 'failed')"),
    )
    op.drop_column("generations", "undeliverable")
    op.drop_column("generations", "delivery_retry_at")
    op.drop_column("generations", "delivery_attempts")
