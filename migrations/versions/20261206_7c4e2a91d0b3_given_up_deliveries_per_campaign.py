"""given-up deliveries per campaign, for reports

Revision ID: 7c4e2a91d0b3
Revises: 5b1e0c2d7a90
Create Date: 2026-12-06 14:30:00.000000

Campaign reports count the results that were never delivered (``undeliverable`` set). Given-up
rows are rare, so a partial index on (campaign, queued_at) over just those rows makes the count an
index probe of a few entries instead of a visit to every generation of the campaign (the report's
covering index leaves ``undeliverable`` out on purpose).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7c4e2a91d0b3"
down_revision: str | Sequence[str] | None = "5b1e0c2d7a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The partial index of given-up results by campaign and time."""
    op.create_index(
        "ix_generations_campaign_given_up",
        "generations",
        ["campaign_id", "queued_at"],
        unique=False,
        postgresql_where=sa.text("undeliverable IS NOT NULL"),
    )


def downgrade() -> None:
    """Reports would count given-up results by visiting every generation again."""
    op.drop_index("ix_generations_campaign_given_up", table_name="generations")
