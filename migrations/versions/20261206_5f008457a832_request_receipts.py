"""request receipts: platform requests already handled

Revision ID: 5f008457a832
Revises: 7c4e2a91d0b3
Create Date: 2026-12-06 14:20:00.000000

A replayed or retried Slack request and a Discord interaction delivered twice were processed
again (two generations, two variations). Each handled request's platform key (the SHA-256 of a
Slack trigger_id / event_id or a Discord interaction id) is now recorded in the same
transaction as the request's own writes; the primary key makes a copy lose the race, and
``seen_at`` lets old receipts be pruned.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "5f008457a832"
down_revision: str | Sequence[str] | None = "7c4e2a91d0b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The receipts table, keyed by (platform, kind, key), with an index on when it was seen."""
    op.create_table(
        "request_receipts",
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column(
            "seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("platform", "kind", "key", name=op.f("pk_request_receipts")),
    )
    op.create_index(
        op.f("ix_request_receipts_seen_at"), "request_receipts", ["seen_at"], unique=False
    )


def downgrade() -> None:
    """Back to handling every delivery."""
    op.drop_index(op.f("ix_request_receipts_seen_at"), table_name="request_receipts")
    op.drop_table("request_receipts")
