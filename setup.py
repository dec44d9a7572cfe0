"""Packaging detail that pyproject.toml cannot say: the Alembic scripts in the top-level
``migrations/`` folder install as the package ``core.db.migrations``, so a wheel carries them
and ``core.db.migrate`` finds them (in the source tree and in an editable install they are the
top-level folder itself). Everything else about the distribution lives in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["core*", "bots*"]),
        "core.db.migrations",
        "core.db.migrations.versions",
    ],
    package_dir={"core.db.migrations": "migrations"},
)
