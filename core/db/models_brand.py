"""The tables of what a brand makes from an image and reuses: campaign packs and their files
(``core.db.packs``) and style codes (``core.db.styles``). Split from ``core.db.models`` for size;
the same ``Base`` and conventions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db.models import Base, _now


class Pack(Base):
    """A campaign pack made by a ``pack`` generation (core.jobs.packs): its source image, the
    zip and contact sheet in the image store, who asked and when."""

    __tablename__ = "packs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    generation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("generations.id", ondelete="CASCADE"), unique=True
    )
    source_generation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("generations.id", ondelete="CASCADE"), index=True
    )
    source_index: Mapped[int] = mapped_column(Integer)
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="SET NULL"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    placements: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    folder: Mapped[str] = mapped_column(String(64))  # the zip's top folder (the campaign's)
    storage_key: Mapped[str] = mapped_column(String(200))  # the zip
    sheet_key: Mapped[str] = mapped_column(String(200))  # the contact sheet (PNG)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()


class PackFile(Base):
    """One placement's file in a pack: how it was made (crop or extend), its size and hash."""

    __tablename__ = "pack_files"
    __table_args__ = (UniqueConstraint("pack_id", "placement"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    pack_id: Mapped[int] = mapped_column(ForeignKey("packs.id", ondelete="CASCADE"))
    placement: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(200))  # inside the zip
    method: Mapped[str] = mapped_column(String(64))  # "crop, lanczos", "extend …"
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class StyleCode(Base):
    """A governed set of reference images (``core.service.styles``): its code (a content hash,
    ``core.brand.styles.style_code``), the brand it belongs to and, when limited, the one
    workspace that may use it; the references as image-store keys with their sha256s."""

    __tablename__ = "style_codes"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    brand: Mapped[str] = mapped_column(String(200), index=True)
    platform: Mapped[str | None] = mapped_column(String(16))  # with workspace: the only one
    workspace_external_id: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200), default="")
    images: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)  # [{sha256, key}]
    created_by: Mapped[str] = mapped_column(String(200))  # "platform:workspace:user"
    created_at: Mapped[datetime] = _now()
    retired_at: Mapped[datetime | None]
    retired_by: Mapped[str | None] = mapped_column(String(200))
