"""install pgqueuer queue schema

Revision ID: 187852b7cdb9
Revises: ec4c148c9ec3
Create Date: 2026-11-26 10:54:06.948679

The job queue's tables, enum, trigger and notify function, exactly as the installed pgqueuer
renders them (``pgq install`` / ``pgq uninstall``), named by pgqueuer's settings (``PGQUEUER_*``
environment variables). pgqueuer's SQL holds several statements and a dollar-quoted function body,
so it goes to the server in one simple-protocol call on the migration's own asyncpg connection,
inside the migration's transaction. A later pgqueuer release that changes its schema needs its own
revision that converges it (``Queries.apply_upgrade``, what ``pgq upgrade`` runs).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment

try:
    from sqlalchemy.util import await_
except ImportError:  # SQLAlchemy 2.0 names it await_only
    from sqlalchemy.util import await_only as await_

# revision identifiers, used by Alembic.
revision: str = "187852b7cdb9"
down_revision: str | Sequence[str] | None = "ec4c148c9ec3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _execute_script(sql: str) -> None:
    if context.is_offline_mode():
        op.execute(sql)
        return
    # The asyncpg adapter opens its transaction on the first statement it runs; make sure it is
    # open so that pgqueuer's DDL commits or rolls back with the rest of the migration.
    op.execute(sa.text("SELECT 1"))
    raw = op.get_bind().connection.driver_connection
    assert raw is not None
    assert raw.is_in_transaction()
    await_(raw.execute(sql))


def upgrade() -> None:
    """Upgrade schema."""
    _execute_script(QueryBuilderEnvironment().build_install_query(create_schema=True))


def downgrade() -> None:
    """Downgrade schema."""
    _execute_script(QueryBuilderEnvironment().build_uninstall_query())
