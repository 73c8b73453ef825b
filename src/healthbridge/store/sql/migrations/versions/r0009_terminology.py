"""Loaded code systems: ``term_system``, ``term_concept`` and the index tables ``term_edge``,
``term_property``, ``term_word``.

Large terminologies (LOINC, SNOMED CT, RxNorm, ICD-10-CM, CVX) loaded from their release files
(https://hl7.org/fhir/R4/terminology-service.html). See :mod:`healthbridge.store.terminology`
and the tables in :mod:`healthbridge.store.sql.tables`.

Revision ID: r0009
Revises: r0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "r0009"
down_revision: str | None = "r0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key_text() -> sa.types.TypeEngine[str]:
    """Keys compare by code point on both databases (as ``tables.KEY_TEXT``)."""
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def _keyed(name: str, *columns: str) -> None:
    """A table of (system_id, key text columns...) that are all its primary key."""
    op.create_table(
        name,
        sa.Column("system_id", sa.BigInteger(), nullable=False),
        *(sa.Column(column, _key_text(), nullable=False) for column in columns),
        sa.PrimaryKeyConstraint("system_id", *columns, name=f"pk_{name}"),
    )


def upgrade() -> None:
    op.create_table(
        "term_system",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("url", _key_text(), nullable=False),
        sa.Column("version", _key_text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.Column("finished", sa.BigInteger(), nullable=True),
        sa.Column("info", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_term_system"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_term_system_url_version_state", "term_system", ["url", "version", "state"], unique=True
    )
    op.create_table(
        "term_concept",
        sa.Column("system_id", sa.BigInteger(), nullable=False),
        sa.Column("code", _key_text(), nullable=False),
        sa.Column("display", sa.Text(), nullable=True),
        sa.Column("inactive", sa.Boolean(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("system_id", "code", name="pk_term_concept"),
    )
    _keyed("term_edge", "code", "parent")
    op.create_index(
        "ix_term_edge_system_id_parent_code", "term_edge", ["system_id", "parent", "code"]
    )
    _keyed("term_property", "property", "value", "code")
    _keyed("term_word", "word", "code")


def downgrade() -> None:
    op.drop_table("term_word")
    op.drop_table("term_property")
    op.drop_index("ix_term_edge_system_id_parent_code", table_name="term_edge")
    op.drop_table("term_edge")
    op.drop_table("term_concept")
    op.drop_index("ix_term_system_url_version_state", table_name="term_system")
    op.drop_table("term_system")
