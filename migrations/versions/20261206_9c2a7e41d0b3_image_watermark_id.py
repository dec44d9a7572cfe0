"""the watermark id of every image; campaigns that let the prompt travel

Revision ID: 9c2a7e41d0b3
Revises: a7c3e91f2b64
Create Date: 2026-12-06 14:55:00.000000

Every stored image carries an invisible watermark whose payload is a 40-bit id (plus a MAC). The
id is the first 10 hex digits of ``md5('<generation uuid>:<index>')``, computed by PostgreSQL as a
stored generated column (no writer has to remember it, existing rows get theirs) and indexed, so
``onbrand verify`` finds an image from a stripped, re-encoded copy.

``campaigns.share_prompt``: whether the prompt goes into the images' IPTC ``AIPromptInformation``
(off by default: launch campaigns are often confidential).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9c2a7e41d0b3"
down_revision: str | Sequence[str] | None = "a7c3e91f2b64"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WATERMARK_ID_SQL = (
    "('x' || substr(md5(generation_id::text || ':' || \"index\"::text), 1, 10))::bit(40)::bigint"
)


def upgrade() -> None:
    op.add_column(
        "images",
        sa.Column(
            "watermark_id",
            sa.BigInteger(),
            sa.Computed(WATERMARK_ID_SQL, persisted=True),
            nullable=False,
        ),
    )
    op.create_index("ix_images_watermark_id", "images", ["watermark_id"], unique=False)
    op.add_column(
        "campaigns",
        sa.Column("share_prompt", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("campaigns", "share_prompt")
    op.drop_index("ix_images_watermark_id", table_name="images")
    op.drop_column("images", "watermark_id")
