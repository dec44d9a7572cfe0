"""Receipts of platform requests already handled, in PostgreSQL (the ``Receipts`` port).

``record`` inserts the request's key (the digest of the platform's id) into
``request_receipts`` with ``ON CONFLICT DO NOTHING`` inside the unit of work's transaction, so
the receipt commits with the request's own writes (a generation and its job, feedback, a
cancel) or not at all: a crash between the two loses nothing, and a request that was refused
leaves no receipt. Two deliveries of one request at once race on the primary key: the second
insert waits for the first transaction and, when it commits, inserts nothing, so the second
delivery is the duplicate.

Receipts are kept for ``RECEIPT_RETENTION`` (a day): far past every redelivery window (Slack
retries within about 5 minutes and refuses a signature older than 5 minutes; a Discord
interaction token lives 15 minutes; a Socket Mode envelope is redelivered within minutes).
Each ``record`` prunes up to ``PRUNE_BATCH`` expired receipts, skipping rows another
transaction holds, so the table stays about a day of requests long with no sweep of its own.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import RequestReceipt
from core.domain import RequestKey

__all__ = ["PRUNE_BATCH", "RECEIPT_RETENTION", "SqlReceipts", "prune", "stored_key"]

RECEIPT_RETENTION = timedelta(hours=24)
PRUNE_BATCH = 100  # expired receipts removed per request at most


def stored_key(key: RequestKey) -> str:
    """The platform id as stored: its SHA-256 (hex). A Slack ``trigger_id`` is a short-lived
    credential (it opens a modal), so no id is kept as it is; the digest also fits the column
    whatever the platform sends (a long id, a NUL that PostgreSQL's text would refuse)."""
    return hashlib.sha256(key.id.encode("utf-8", "surrogatepass")).hexdigest()


class SqlReceipts:
    """``Receipts`` on the unit of work's session (its transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record(self, key: RequestKey) -> bool:
        inserted = await self._session.execute(
            insert(RequestReceipt)
            .values(platform=key.platform.value, kind=key.kind, key=stored_key(key))
            .on_conflict_do_nothing()
            .returning(RequestReceipt.key)
        )
        first_time = inserted.first() is not None
        await prune(self._session)
        return first_time


async def prune(
    session: AsyncSession, *, older_than: timedelta = RECEIPT_RETENTION, limit: int = PRUNE_BATCH
) -> int:
    """Delete up to ``limit`` receipts seen more than ``older_than`` ago (rows another
    transaction is deleting are skipped, never waited for); how many went."""
    expired = (
        select(RequestReceipt.platform, RequestReceipt.kind, RequestReceipt.key)
        .where(RequestReceipt.seen_at < func.now() - older_than)
        .order_by(RequestReceipt.seen_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    gone = await session.execute(
        delete(RequestReceipt)
        .where(
            tuple_(RequestReceipt.platform, RequestReceipt.kind, RequestReceipt.key).in_(expired)
        )
        .returning(RequestReceipt.key)
    )
    return len(gone.all())
