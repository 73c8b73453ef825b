"""Authorization server state: the ``record`` table of small JSON values with an expiry.

See :data:`healthbridge.store.sql.tables.record` and :mod:`healthbridge.store.records`.

Revision ID: r0007
Revises: r0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "r0007"
down_revision: str | None = "r0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key_text() -> sa.types.TypeEngine[str]:
    """Keys compare by code point on both databases (as ``tables.KEY_TEXT``)."""
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "record",
        sa.Column("kind", _key_text(), nullable=False),
        sa.Column("key", _key_text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("kind", "key", name="pk_record"),
    )
    op.create_index("ix_record_expires", "record", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_record_expires", table_name="record")
    op.drop_table("record")
