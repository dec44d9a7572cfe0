"""images.clean_key: the logo-free master of an image, for campaign packs

Revision ID: 128f1c562e5d
Revises: c5e8a1b2d347
Create Date: 2026-12-06 17:05:00.000000

A finished original carries the preset's visible logo (and "AI" badge) and its invisible
watermark. A campaign pack puts the logo on each placement again, so it is made from the clean
pixels of the image, stored beside the original in the image store (a plain PNG, unsigned, never
served) when the preset draws a logo or badge. NULL: no clean master (older images, presets
without logo or badge): a pack then starts from the original.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "128f1c562e5d"
down_revision: str | Sequence[str] | None = "c5e8a1b2d347"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("images", sa.Column("clean_key", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("images", "clean_key")
