"""Shared fixtures: one fresh PostgreSQL database per test run.

The server is ``DATABASE_URL`` when set, else the one on 127.0.0.1:5432 if it answers, else an
embedded server in a temporary directory. The run creates its own database on it, migrates it to
head, and drops it at the end, so runs never see each other's data.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.db import Database, plain_url
from core.db.embedded import start_embedded
from core.db.migrate import upgrade

LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _local_server_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A URL on the test server with the right to create databases."""
    if configured := os.environ.get("DATABASE_URL"):
        yield plain_url(configured)
    elif _local_server_answers():
        yield LOCAL
    else:
        with tempfile.TemporaryDirectory(prefix="onbrand-pg-") as tmp:
            yield start_embedded(Path(tmp) / "pg", database="postgres")


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    server = base.rsplit("/", 1)[0]
    return f"{server}/{name}" + (f"?{query}" if query else "")


@pytest.fixture
async def scratch_db(pg_admin_url: str) -> AsyncIterator[Database]:
    """An empty database of its own: for tests that move the schema up and down or seed
    outside the shared one; dropped afterwards."""
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


@pytest.fixture(scope="session")
async def database_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A new, empty database for this run (dropped afterwards)."""
    name = f"onbrand_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(pg_admin_url, name)
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def migrated_db(database_url: str) -> AsyncIterator[Database]:
    """The run's database at the head revision."""
    db = Database(database_url)
    await upgrade(db)
    yield db
    await db.dispose()


@pytest.fixture
async def db(migrated_db: Database) -> Database:
    """The run's database, emptied before each test that asks for it."""
    async with migrated_db.engine.begin() as conn:
        tables = await conn.exec_driver_sql(
            "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        names = tables.scalar()
        if names:
            await conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    return migrated_db


@pytest.fixture
def provenance(tmp_path: Path) -> Iterator[Any]:
    """Signing keys and the watermark secret of their own (a local CA in tmp), used by every
    worker in the test; ``core.service.verify`` reads files back with them."""
    from core.provenance import setup
    from core.settings import Settings

    made = setup.from_settings(Settings(ONBRAND_DATA_DIR=tmp_path / "data"))  # type: ignore[call-arg]
    setup.configure(made)
    yield made
    setup.configure(None)
