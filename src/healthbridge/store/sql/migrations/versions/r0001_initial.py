"""Initial schema: resource, resource_history, outbox.

Versioned storage for the FHIR RESTful API (https://hl7.org/fhir/R4/http.html#versioning); see
:mod:`healthbridge.store.sql.tables`. Instants are BIGINT microseconds since the epoch (UTC).
Search index tables follow in a later revision.

Revision ID: r0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "r0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _version_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("last_updated", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "resource",
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        *_version_columns(),
        sa.PrimaryKeyConstraint("type", "id", name="pk_resource"),
    )
    op.create_table(
        "resource_history",
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        *_version_columns(),
        sa.PrimaryKeyConstraint("type", "id", "version_id", name="pk_resource_history"),
    )
    op.create_index("ix_resource_history_last_updated", "resource_history", ["last_updated"])
    op.create_index(
        "ix_resource_history_type_last_updated", "resource_history", ["type", "last_updated"]
    )
    op.create_table(
        "outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("recorded", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_index("ix_resource_history_type_last_updated", table_name="resource_history")
    op.drop_index("ix_resource_history_last_updated", table_name="resource_history")
    op.drop_table("resource_history")
    op.drop_table("resource")
