"""generations.delivery_began_at: when the first attempt to post the result began

Revision ID: b41c7e09d2a6
Revises: de10912017cf
Create Date: 2026-12-07 01:30:00.000000

A post whose answer is lost (a 5xx, a dropped connection, a crash before ``delivered_at`` is
written) may have reached the channel. The delivery sets this column when it first tries; a later
attempt that finds it set asks the platform whether the message is there before posting again
(``core.delivery.sweep``, ``bots/slack/once.py``). Nullable, no default: existing rows are
untouched and the ``ALTER`` is instant.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b41c7e09d2a6"
down_revision: str | Sequence[str] | None = "de10912017cf"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "generations", sa.Column("delivery_began_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("generations", "delivery_began_at")
