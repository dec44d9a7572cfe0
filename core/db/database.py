"""Connecting to PostgreSQL: URL resolution, the async engine and its session factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from core.db.embedded import start_embedded
from core.settings import Settings


def async_url(url: str) -> str:
    """Any PostgreSQL URL → the SQLAlchemy asyncpg form."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("a database URL looks like postgresql://user@host:5432/dbname")
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"onbrand needs PostgreSQL, not {scheme}://")


def plain_url(url: str) -> str:
    """Any PostgreSQL URL → the ``postgresql://`` form that asyncpg and psql take."""
    return "postgresql://" + async_url(url).partition("://")[2]


def resolve_database_url(settings: Settings) -> str:
    """``DATABASE_URL`` when set, else the embedded server in the data directory (started now)."""
    if settings.database_url is not None:
        return async_url(settings.database_url.get_secret_value())
    return async_url(start_embedded(settings.pg_dir))


class Database:
    """One async engine per process, and sessions that keep objects usable after commit."""

    def __init__(self, url: str, *, pool_size: int = 5, connect_timeout: float = 10.0) -> None:
        self.url = async_url(url)
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=10,
            pool_pre_ping=True,
            connect_args={"timeout": connect_timeout},
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dsn(self) -> str:
        """The URL for plain asyncpg (the queue library's driver)."""
        return plain_url(self.url)

    @property
    def display_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on any error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def ping(self) -> str:
        """The server's version string; raises if the server can't be reached."""
        async with self.engine.connect() as conn:
            version = await conn.scalar(text("SHOW server_version"))
        return str(version)

    async def dispose(self) -> None:
        await self.engine.dispose()
