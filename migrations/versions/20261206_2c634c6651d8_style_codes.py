"""style_codes: governed sets of reference images (brand looks)

Revision ID: 2c634c6651d8
Revises: 128f1c562e5d
Create Date: 2026-12-06 17:10:00.000000

A style code (``core.service.styles``) is registered by an admin from image files, belongs to one
brand (and optionally one workspace), keeps its references as image-store keys with their
sha256s, and is retired rather than deleted (generations keep naming it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "2c634c6651d8"
down_revision: str | Sequence[str] | None = "128f1c562e5d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "style_codes",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("brand", sa.String(length=200), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=True),
        sa.Column("workspace_external_id", sa.String(length=64), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("images", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_style_codes")),
    )
    op.create_index(op.f("ix_style_codes_brand"), "style_codes", ["brand"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_style_codes_brand"), table_name="style_codes")
    op.drop_table("style_codes")
