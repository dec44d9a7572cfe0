"""The schema: SQLAlchemy 2.0 typed models.

Alembic migrations in ``migrations/`` must describe exactly this (a test compares them).
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Computed,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.domain import FeedbackKind, GenerationKind, GenerationStatus

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


WATERMARK_ID_SQL = (
    "('x' || substr(md5(generation_id::text || ':' || \"index\"::text), 1, 10))::bit(40)::bigint"
)


def _enum(kind: type[enum.StrEnum], name: str) -> Enum:
    """A text column limited to the enum's values by a CHECK constraint (no PG enum type)."""
    return Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSONB,
        datetime: DateTime(timezone=True),
    }


SEARCH_DOC = (
    "setweight(to_tsvector('english'::regconfig, coalesce(raw_prompt, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(final_prompt, '')), 'B') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(preset_name, '')), 'C')"
)


# Indexes the migrations create only where the server offers their extension (pg_trgm's
# trigram index on the search lexicon: absent on the embedded server); the model comparison
# skips them.
OPTIONAL_INDEXES = frozenset({"ix_search_words_word_trgm"})
# Tables the migrations create only where the server offers their extension (pgvector's
# ``image_embeddings``, read and written in SQL by ``core.memory.vectors``): not models, and the
# model comparison skips them.
OPTIONAL_TABLES = frozenset({"image_embeddings"})


def _now() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())


# A generation's engagement counters (kept by triggers, see Generation) in the order of the
# covering index's INCLUDE list.
GENERATION_COUNTERS = (
    *("image_count", "favourites", "favourited_images", "approved_images"),
    *("grid_favourites", "likes", "dislikes", "approvals"),
)


def _counter() -> Mapped[int]:
    return mapped_column(Integer, default=0, server_default=text("0"))


class Workspace(Base):
    """A Slack workspace, a Discord guild, or the local CLI."""

    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = _now()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("workspace_id", "external_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = _now()


class PresetVersion(Base):
    """One version of a brand preset: its YAML text, keyed by content hash."""

    __tablename__ = "presets"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64))
    yaml_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    preset_name: Mapped[str] = mapped_column(String(64))
    starts_on: Mapped[date | None] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    gpu_budget_seconds: Mapped[float | None] = mapped_column(Float)
    rush: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    share_prompt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    require_approval: Mapped[list[str]] = mapped_column(
        ARRAY(String(16)), default=list, server_default=text("'{}'")
    )  # "pack", "export": refused for images no reviewer approved
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()


class ChannelBinding(Base):
    """A channel's campaign and preset; a locked binding can't be overridden by flags."""

    __tablename__ = "channel_bindings"
    __table_args__ = (UniqueConstraint("platform", "workspace_external_id", "channel_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    workspace_external_id: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    preset_name: Mapped[str] = mapped_column(String(64))
    locked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()


class Generation(Base):
    """One request (1–4 images) with its lineage, parameters, status and timings."""

    __tablename__ = "generations"
    __table_args__ = (
        Index("ix_generations_status_queued_at", "status", "queued_at"),
        # Covering: campaign reports read these columns without touching the table.
        Index(
            "ix_generations_campaign_id_queued_at",
            "campaign_id",
            "queued_at",
            postgresql_include=[
                "id",
                "kind",
                "status",
                "platform",
                "user_id",
                "preset_name",
                "preset_version",
                "started_at",
                "finished_at",
                "gpu_seconds",
                *GENERATION_COUNTERS,
            ],
        ),
        Index("ix_generations_user_id_queued_at", "user_id", "queued_at"),
        Index(
            "ix_generations_undelivered",
            "finished_at",
            postgresql_where=text("delivered_at IS NULL AND undeliverable IS NULL"),
        ),
        # Reports count given-up results: few rows, so a small partial index.
        Index(
            "ix_generations_campaign_given_up",
            "campaign_id",
            "queued_at",
            postgresql_where=text("undeliverable IS NOT NULL"),
        ),
        # Search (core.memory): the weighted document.
        Index("ix_generations_search_doc", "search_doc", postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("generations.id", ondelete="SET NULL"), index=True
    )
    source_index: Mapped[int | None] = mapped_column(Integer)  # which parent image U/V used
    kind: Mapped[GenerationKind] = mapped_column(_enum(GenerationKind, "generation_kind"))
    platform: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    preset_id: Mapped[int] = mapped_column(ForeignKey("presets.id", ondelete="RESTRICT"))
    preset_name: Mapped[str] = mapped_column(String(64))
    preset_version: Mapped[str] = mapped_column(String(64))
    raw_prompt: Mapped[str] = mapped_column(Text)
    final_prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[GenerationStatus] = mapped_column(
        _enum(GenerationStatus, "generation_status"), default=GenerationStatus.QUEUED
    )
    progress: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    queued_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    gpu_seconds: Mapped[float | None] = mapped_column(Float)
    reply_target: Mapped[dict[str, Any]] = mapped_column(JSONB)
    delivered_at: Mapped[datetime | None]
    # Posting the result: when the first try began, failed tries so far, when to try again, and
    # why it was given up (a channel that is gone, or too many failures), which ends the tries.
    delivery_began_at: Mapped[datetime | None]
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    delivery_retry_at: Mapped[datetime | None]
    undeliverable: Mapped[str | None] = mapped_column(Text)
    # The upload this generation starts from (an image prompt, a product shot), if any.
    upload_id: Mapped[int | None] = mapped_column(
        ForeignKey("uploads.id", ondelete="RESTRICT"), index=True
    )
    # What keyword search reads: prompt (A), final prompt (B), preset (C); PostgreSQL keeps it.
    search_doc: Mapped[Any] = mapped_column(TSVECTOR, Computed(SEARCH_DOC, persisted=True))
    # Engagement counters (GENERATION_COUNTERS), recounted from the generation's images and
    # feedback by triggers in the same transaction (migration d770701256a5); never written by
    # the application. Campaign reports sum them (docs/reports.md).
    image_count: Mapped[int] = _counter()
    favourites: Mapped[int] = _counter()  # image-level favourite rows
    favourited_images: Mapped[int] = _counter()  # images with one or more of them
    approved_images: Mapped[int] = _counter()  # approved directly or with their grid, once
    grid_favourites: Mapped[int] = _counter()
    likes: Mapped[int] = _counter()  # like, dislike and approve rows: image- and grid-level
    dislikes: Mapped[int] = _counter()
    approvals: Mapped[int] = _counter()
    grid_likes: Mapped[int] = _counter()  # grid-level like and dislike rows (de10912017cf)
    grid_dislikes: Mapped[int] = _counter()


class Upload(Base):
    """An image a user gave onbrand (checked, cleaned, stored by content hash): who, when,
    where (platform, workspace, channel), for which campaign, and what it is."""

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    platform: Mapped[str] = mapped_column(String(16))
    workspace_external_id: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str | None] = mapped_column(String(64))
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="SET NULL"), index=True
    )
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    storage_key: Mapped[str] = mapped_column(String(200))
    mime: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)  # as uploaded
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    has_alpha: Mapped[bool] = mapped_column(Boolean)
    notes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = _now()


class Message(Base):
    """A chat message we posted for a generation: lets reactions and edits find it."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("platform", "channel_id", "message_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    generation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("generations.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = mapped_column(String(16))
    channel_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))  # "status" (queued/progress) or "result"
    created_at: Mapped[datetime] = _now()


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("generation_id", "index"),
        # Deduplicated (one entry per generation): campaign reports count images through it.
        Index("ix_images_generation_id", "generation_id"),
        Index("ix_images_unhashed", "id", postgresql_where=text("phash IS NULL")),
        # Campaign reports: the campaign's images in one range scan (see report_scope below).
        Index(
            "ix_images_campaign_id_report",
            "campaign_id",
            "generation_queued_at",
            postgresql_include=["generation_id"],
        ),
        # Campaign reports: the approved images (index only), the favourited ones (read backwards)
        Index(
            "ix_images_campaign_approved",
            "campaign_id",
            "generation_queued_at",
            postgresql_include=[
                *("id", "generation_id", "index", "width", "height", "palette_score"),
                *("storage_key", "favourites", "likes", "dislikes", "approved_at"),
            ],
            postgresql_where=text("approved_at IS NOT NULL"),
        ),
        Index(
            "ix_images_campaign_top",
            "campaign_id",
            "favourites",
            "likes",
            postgresql_include=[
                "id",
                "generation_id",
                "generation_queued_at",
                "first_favourite_at",
            ],
            postgresql_where=text("favourites > 0"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    generation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("generations.id", ondelete="CASCADE")
    )
    index: Mapped[int] = mapped_column(Integer)  # 1-based, as on the buttons
    storage_key: Mapped[str] = mapped_column(String(200))
    # The logo-free master (before logo, badge and invisible watermark; an unsigned PNG that is
    # never served): what campaign packs are made from. NULL when the preset draws no logo or
    # badge (the original then serves) and for images made before it existed.
    clean_key: Mapped[str | None] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    palette_score: Mapped[float | None] = mapped_column(Float)
    # 64-bit perceptual hash of the original (core.memory.phash); NULL until indexed.
    phash: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _now()
    # The 40-bit id the invisible watermark carries (core.provenance.watermark.image_id_of
    # computes the same), so verify finds an image from its mark alone.
    watermark_id: Mapped[int] = mapped_column(
        BigInteger, Computed(WATERMARK_ID_SQL, persisted=True), index=True
    )
    # The report scope: copies of the generation's campaign_id and queued_at, kept current by
    # triggers (migration 004631b64596); never written by the application.
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    generation_queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Engagement: image-level rows on it (of its generation), first favourite, first approval (of
    # it or its grid); recounted by triggers (migration de10912017cf), never written by the app.
    favourites: Mapped[int] = _counter()
    likes: Mapped[int] = _counter()
    dislikes: Mapped[int] = _counter()
    first_favourite_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Feedback(Base):
    """A reaction or approval; one per user, target and kind."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint(
            "user_id", "generation_id", "image_id", "kind", postgresql_nulls_not_distinct=True
        ),
        Index(
            "ix_feedback_generation_id",
            "generation_id",
            postgresql_include=["image_id", "user_id", "kind", "created_at"],
        ),
        Index("ix_feedback_image_id_kind", "image_id", "kind"),
        # Campaign reports: the campaign's feedback in one range scan (report scope, as images)
        Index(
            "ix_feedback_campaign_id_report",
            "campaign_id",
            "generation_queued_at",
            postgresql_include=["generation_id", "image_id", "user_id", "kind", "created_at"],
        ),
        # near-duplicate checks (core.memory.duplicates) start from the approvals
        Index(  # campaign reports: who approved what
            "ix_feedback_campaign_approvals",
            "campaign_id",
            "generation_queued_at",
            postgresql_include=["generation_id", "image_id", "user_id", "created_at"],
            postgresql_where=text("kind = 'approve'"),
        ),
        Index(
            "ix_feedback_approvals",
            "generation_id",
            "image_id",
            postgresql_where=text("kind = 'approve'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    generation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("generations.id", ondelete="CASCADE")
    )
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[FeedbackKind] = mapped_column(_enum(FeedbackKind, "feedback_kind"))
    emoji: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = _now()
    # The report scope, as on images (trigger-kept copies of the generation's).
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    generation_queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# The tables of what a brand makes from one image and reuses (packs, style codes) are in
# core.db.models_brand; importing it here puts them on Base.metadata wherever the schema is read.
from core.db import models_brand as _brand  # noqa: E402, F401
from core.db.models_log import AuditLog as AuditLog  # noqa: E402
from core.db.models_log import RequestReceipt as RequestReceipt  # noqa: E402
from core.db.models_log import SearchWord as SearchWord  # noqa: E402
