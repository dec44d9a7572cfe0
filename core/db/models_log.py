"""The tables of what happened around the work: the audit log, the platform requests already
handled, the words of every prompt. Split from ``core.db.models`` for size (which re-exports
them); the same ``Base`` and conventions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db.models import Base, _now


class SearchWord(Base):
    """The words of every prompt (3+ letters), for typo-tolerant search (``core.memory.search``).
    A trigger on ``generations`` adds them; with pg_trgm a trigram index finds near spellings."""

    __tablename__ = "search_words"

    word: Mapped[str] = mapped_column(String(64), primary_key=True)


class AuditLog(Base):
    """Who did what: bindings, campaign changes, blocked prompts."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = _now()
    actor: Mapped[str] = mapped_column(String(200))  # "platform:workspace:user"
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200), default="")
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="SET NULL"), index=True
    )
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class RequestReceipt(Base):
    """A platform request already handled (``core.db.receipts``): its platform, what kind of
    request and the digest of the platform's id for it; kept for ``RECEIPT_RETENTION``."""

    __tablename__ = "request_receipts"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the id, hex
    seen_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
