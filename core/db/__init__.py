"""PostgreSQL: the system of record and the job queue."""

from core.db.database import Database, async_url, plain_url, resolve_database_url

__all__ = ["Database", "async_url", "plain_url", "resolve_database_url"]
