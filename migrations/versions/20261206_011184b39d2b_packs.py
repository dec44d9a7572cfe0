"""packs and pack_files: campaign packs made as queued jobs (kind ``pack``)

Revision ID: 011184b39d2b
Revises: 004631b64596
Create Date: 2026-12-06 17:15:00.000000

A pack is a generation of kind ``pack`` (parent and source index as for upscales) that makes
no images of its own: its zip and contact sheet are in the image store and recorded in
``packs``, one ``pack_files`` row per placement (method crop or extend, size, bytes, sha256).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "011184b39d2b"
down_revision: str | Sequence[str] | None = "004631b64596"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = (
    *("imagine", "variation", "upscale", "reroll"),
    *("image_prompt", "product", "zoom_out", "pan", "vary_region"),
)
NEW_KINDS = (*OLD_KINDS, "pack")


def _kinds(kinds: Sequence[str]) -> str:
    return "kind IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


def upgrade() -> None:
    op.create_table(
        "packs",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("generation_id", sa.UUID(), nullable=False),
        sa.Column("source_generation_id", sa.UUID(), nullable=False),
        sa.Column("source_index", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("placements", postgresql.ARRAY(sa.String(length=64)), nullable=False),
        sa.Column("folder", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=200), nullable=False),
        sa.Column("sheet_key", sa.String(length=200), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_packs_campaign_id_campaigns"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            name=op.f("fk_packs_generation_id_generations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_generation_id"],
            ["generations.id"],
            name=op.f("fk_packs_source_generation_id_generations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_packs_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_packs")),
        sa.UniqueConstraint("generation_id", name=op.f("uq_packs_generation_id")),
    )
    op.create_index(op.f("ix_packs_campaign_id"), "packs", ["campaign_id"], unique=False)
    op.create_index(
        op.f("ix_packs_source_generation_id"), "packs", ["source_generation_id"], unique=False
    )
    op.create_table(
        "pack_files",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("pack_id", sa.BigInteger(), nullable=False),
        sa.Column("placement", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["pack_id"], ["packs.id"], name=op.f("fk_pack_files_pack_id_packs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pack_files")),
        sa.UniqueConstraint("pack_id", "placement", name=op.f("uq_pack_files_pack_id_placement")),
    )
    op.drop_constraint(op.f("ck_generations_generation_kind"), "generations", type_="check")
    op.create_check_constraint(
        op.f("ck_generations_generation_kind"), "generations", _kinds(NEW_KINDS)
    )


def downgrade() -> None:
    """Pack generations go with their tables (there is no old kind for them)."""
    op.drop_table("pack_files")
    op.drop_index(op.f("ix_packs_source_generation_id"), table_name="packs")
    op.drop_index(op.f("ix_packs_campaign_id"), table_name="packs")
    op.drop_table("packs")
    op.execute("DELETE FROM generations WHERE kind = 'pack'")
    op.drop_constraint(op.f("ck_generations_generation_kind"), "generations", type_="check")
    op.create_check_constraint(
        op.f("ck_generations_generation_kind"), "generations", _kinds(OLD_KINDS)
    )
