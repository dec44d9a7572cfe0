"""campaigns.require_approval: what needs a reviewer's approval first (pack, export)

Revision ID: c5e8a1b2d347
Revises: a7d3e91f4c20
Create Date: 2026-12-06 15:40:00.000000

A campaign that lists ``pack`` refuses campaign packs (``onbrand pack``) of images no reviewer
approved; ``export`` is reserved for approved-exports. Existing campaigns require nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c5e8a1b2d347"
down_revision: str | Sequence[str] | None = "a7d3e91f4c20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "campaigns",
        sa.Column(
            "require_approval",
            postgresql.ARRAY(sa.String(length=16)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("campaigns", "require_approval")
