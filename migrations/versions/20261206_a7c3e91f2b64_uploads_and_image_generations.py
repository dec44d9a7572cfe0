"""uploads, and generations that start from one

Revision ID: a7c3e91f2b64
Revises: 5f008457a832
Create Date: 2026-12-06 14:20:00.000000

Images in (issue 14): every image a user gives onbrand is checked, cleaned and stored by content
hash, and recorded as an ``uploads`` row (who, when, where, campaign, what). A generation that
starts from one points at it (``generations.upload_id``); its kind says how it uses it
(``image_prompt`` or ``product``), next to the existing ``parent_id`` lineage. Edits of a result
are generations too: ``zoom_out``, ``pan``, ``vary_region`` (parent and source index as for
upscales).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "a7c3e91f2b64"
down_revision: str | Sequence[str] | None = "5f008457a832"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = ("imagine", "variation", "upscale", "reroll")
NEW_KINDS = (*OLD_KINDS, "image_prompt", "product", "zoom_out", "pan", "vary_region")


def _kinds(kinds: Sequence[str]) -> str:
    return "kind IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


def upgrade() -> None:
    """The uploads table, the generations' link to one, and the new kinds."""
    op.create_table(
        "uploads",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("workspace_external_id", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=True),
        sa.Column("campaign_id", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=200), nullable=False),
        sa.Column("mime", sa.String(length=32), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("has_alpha", sa.Boolean(), nullable=False),
        sa.Column("notes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_uploads_campaign_id_campaigns"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_uploads_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )
    op.create_index(op.f("ix_uploads_campaign_id"), "uploads", ["campaign_id"], unique=False)
    op.create_index(op.f("ix_uploads_sha256"), "uploads", ["sha256"], unique=False)
    op.create_index(
        "ix_uploads_user_id_created_at", "uploads", ["user_id", "created_at"], unique=False
    )
    op.add_column("generations", sa.Column("upload_id", sa.BigInteger(), nullable=True))
    op.create_index(op.f("ix_generations_upload_id"), "generations", ["upload_id"], unique=False)
    op.create_foreign_key(
        op.f("fk_generations_upload_id_uploads"),
        "generations",
        "uploads",
        ["upload_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.drop_constraint(op.f("ck_generations_generation_kind"), "generations", type_="check")
    op.create_check_constraint(
        op.f("ck_generations_generation_kind"), "generations", _kinds(NEW_KINDS)
    )


def downgrade() -> None:
    """Generations of the new kinds go with the uploads (there is no old kind for them)."""
    op.execute(
        "DELETE FROM generations WHERE kind NOT IN ('imagine', 'variation', 'upscale', 'reroll') "
        "OR upload_id IS NOT NULL"
    )
    op.drop_constraint(op.f("ck_generations_generation_kind"), "generations", type_="check")
    op.create_check_constraint(
        op.f("ck_generations_generation_kind"), "generations", _kinds(OLD_KINDS)
    )
    op.drop_constraint(op.f("fk_generations_upload_id_uploads"), "generations", type_="foreignkey")
    op.drop_index(op.f("ix_generations_upload_id"), table_name="generations")
    op.drop_column("generations", "upload_id")
    op.drop_index("ix_uploads_user_id_created_at", table_name="uploads")
    op.drop_index(op.f("ix_uploads_sha256"), table_name="uploads")
    op.drop_index(op.f("ix_uploads_campaign_id"), table_name="uploads")
    op.drop_table("uploads")
