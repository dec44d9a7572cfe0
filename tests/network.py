"""The network the tests may reach: this machine, plus the database server if it is elsewhere."""

from __future__ import annotations

import os
from urllib.parse import urlsplit


def allowed_hosts() -> list[str]:
    """127.0.0.1, plus the database server when DATABASE_URL names another one (pytest-socket)."""
    hosts = ["127.0.0.1"]
    if url := os.environ.get("DATABASE_URL"):
        host = urlsplit(url.replace("+asyncpg", "")).hostname
        if host and host not in hosts:
            hosts.append(host)
    return hosts
