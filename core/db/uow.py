"""``UnitOfWork`` on PostgreSQL: one session, one transaction, records, queue and receipts
together.

The queue runs on the very asyncpg connection under the session, so ``add_generation`` and
``enqueue`` land in one PostgreSQL transaction: ``commit`` keeps both, anything else drops both.
The request's receipt (``core.db.receipts``) is written on the same session.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.database import Database
from core.db.outage import fault_of, unavailable
from core.db.queue import PgJobQueue
from core.db.receipts import SqlReceipts
from core.db.repository import SqlRepository
from core.errors import DatabaseUnavailable
from core.ports import JobQueue, Receipts, Repository, UnitOfWorkFactory

__all__ = ["SqlUnitOfWork", "sql_uow_factory"]


class SqlUnitOfWork:
    """``async with SqlUnitOfWork(db) as uow: …; await uow.commit()``; no commit, no changes.

    ``commit`` may be called more than once: work after a commit is a new transaction that the
    exit rolls back unless it is committed too.
    """

    repo: Repository  # a SqlRepository on the session
    queue: JobQueue  # a PgJobQueue on the session's asyncpg connection
    receipts: Receipts  # SqlReceipts on the session

    def __init__(self, db: Database) -> None:
        self._db = db
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        if self._session is not None:
            raise RuntimeError("this unit of work is already open")
        session = self._db.sessions()
        try:
            async with contextlib.AsyncExitStack() as opening:
                opening.push_async_callback(session.close)  # unless the transaction begins
                raw = await self._begin(session)
                opening.pop_all()
        except Exception as exc:  # a database outage becomes "try again in a moment"
            if (fault := fault_of(exc)) is None:
                raise
            raise unavailable(fault) from exc
        self._session = session
        self.repo = SqlRepository(session)
        self.queue = PgJobQueue(raw)
        self.receipts = SqlReceipts(session)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        exc = exc_info[1] if len(exc_info) > 1 else None
        fault = fault_of(exc) if isinstance(exc, BaseException) else None
        try:
            try:
                await session.rollback()  # a no-op for the part that was committed
            finally:
                await session.close()
        except Exception:  # on a lost connection the cleanup fails too: the fault is the news
            if fault is None:
                raise
        if fault is not None and not isinstance(exc, DatabaseUnavailable):
            # What was not committed is gone; the user is told to try again, typed.
            raise unavailable(fault) from exc  # type: ignore[misc]  # exc is the fault here

    async def commit(self) -> None:
        if self._session is None:
            raise RuntimeError("commit outside of `async with`")
        await self._session.commit()
        # The next transaction may run on another pooled connection: the queue must follow it.
        self.queue = PgJobQueue(await self._begin(self._session))

    @staticmethod
    async def _begin(session: AsyncSession) -> object:
        """Open the transaction now and return the asyncpg connection that carries it.

        SQLAlchemy's asyncpg adapter sends BEGIN only with its first statement; the queue talks
        to the connection directly, so without this its first write would autocommit.
        """
        connection = await session.connection()
        await connection.execute(text("SELECT 1"))
        raw = await connection.get_raw_connection()
        return raw.driver_connection


def sql_uow_factory(db: Database) -> UnitOfWorkFactory:
    """A fresh ``SqlUnitOfWork`` per call, on ``db``'s connection pool."""

    def factory() -> SqlUnitOfWork:
        return SqlUnitOfWork(db)

    return factory
