"""Running Alembic from onbrand: upgrade, downgrade, and "are we current?" checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect, text

from core.db.database import Database
from core.errors import ConfigError


def _migrations_dir() -> Path:
    """The Alembic scripts: the package ``core.db.migrations`` (a wheel installs the top-level
    ``migrations/`` folder under that name and an editable install maps it: see setup.py), else
    the source tree's folder (a checkout on ``PYTHONPATH``, not installed)."""
    spec = importlib.util.find_spec("core.db.migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    source_tree = Path(__file__).resolve().parents[2] / "migrations"
    if source_tree.is_dir():
        return source_tree
    raise ConfigError("onbrand's migrations are missing from this installation: reinstall it")


MIGRATIONS_DIR = _migrations_dir()
_LOCK_ID = 0x0B_B4_A4_D0  # pg_advisory lock: one migrator at a time across processes


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def revisions_behind(revision: str) -> int | None:
    """How many revisions ``revision`` is behind head; ``None`` when the code doesn't know it."""
    script = ScriptDirectory.from_config(alembic_config())
    try:
        script.get_revision(revision)
    except CommandError:
        return None
    return sum(1 for _ in script.iterate_revisions("heads", revision))


async def missing_tables(db: Database) -> list[str]:
    """Tables of our models that the database lacks (a schema at head should have them all)."""
    from core.db.models import Base

    async with db.engine.connect() as conn:
        present = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    return sorted(set(Base.metadata.tables) - present)


async def upgrade(db: Database, revision: str = "head") -> None:
    await _run(db, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(db: Database, revision: str) -> None:
    await _run(db, lambda cfg: command.downgrade(cfg, revision))


async def current_revision(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )


async def _run(db: Database, fn: object) -> None:
    def in_sync(connection: Connection) -> None:
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        fn(cfg)  # type: ignore[operator]

    async with db.engine.begin() as conn:
        await conn.run_sync(in_sync)
