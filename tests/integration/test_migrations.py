"""The migrations and the models describe the same schema, and round-trip on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from core.db import Database
from core.db.migrate import current_revision, downgrade, head_revision, upgrade
from core.db.models import Base
from core.queue import include_name
from tests.conftest import _with_database

pytestmark = pytest.mark.integration


@pytest.fixture
async def scratch_db(pg_admin_url: str) -> AsyncIterator[Database]:
    """An empty database of its own: these tests move the schema up and down."""
    name = f"onbrand_mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    db = Database(_with_database(pg_admin_url, name))
    try:
        yield db
    finally:
        await db.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": include_name}
    )
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_downgrade_upgrade_round_trip(scratch_db: Database) -> None:
    await upgrade(scratch_db)
    assert await current_revision(scratch_db) == head_revision()
    async with scratch_db.engine.connect() as conn:
        assert set(Base.metadata.tables) <= await conn.run_sync(_tables)

    await downgrade(scratch_db, "base")
    assert await current_revision(scratch_db) is None
    async with scratch_db.engine.connect() as conn:
        assert await conn.run_sync(_tables) <= {"alembic_version"}

    await upgrade(scratch_db)
    assert await current_revision(scratch_db) == head_revision()


async def test_models_match_migrations(scratch_db: Database) -> None:
    await upgrade(scratch_db)
    async with scratch_db.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == [], f"models and migrations differ; write a migration for: {diff}"


async def test_upgrade_is_idempotent_and_safe_to_run_twice(scratch_db: Database) -> None:
    await upgrade(scratch_db)
    await upgrade(scratch_db)
    assert await current_revision(scratch_db) == head_revision()
