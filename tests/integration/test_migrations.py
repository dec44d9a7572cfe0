"""The migrations and the models describe the same schema, and round-trip on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from core.db import Database
from core.db.migrate import current_revision, downgrade, head_revision, upgrade
from core.db.models import Base
from core.db.queue import include_name

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


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


@pytest.mark.slow
async def test_a_wheel_carries_the_migrations(scratch_db: Database, tmp_path: Path) -> None:
    """Built from a copy of the tree in a temporary directory and run from the unpacked wheel
    (not this checkout): ``onbrand migrate`` finds the scripts and brings a database to head."""
    source = tmp_path / "src"
    listed = await asyncio.to_thread(
        subprocess.run,
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    )  # fmt: skip
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    built = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("onbrand-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(unpacked)
    assert "core/db/migrations/env.py" in names
    assert "core/db/migrations/script.py.mako" in names
    assert sum(n.startswith("core/db/migrations/versions/2") for n in names) >= 4

    env = {k: v for k, v in os.environ.items() if not k.startswith("ONBRAND_")}
    env |= {"PYTHONPATH": str(unpacked), "DATABASE_URL": scratch_db.dsn}
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c",
         "import core, sys; from bots.cli import main; print(core.__file__, file=sys.stderr); "
         "sys.argv = ['onbrand', 'migrate']; main()"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert str(unpacked) in run.stderr, "ran the checkout, not the wheel"
    assert await current_revision(scratch_db) == head_revision()
