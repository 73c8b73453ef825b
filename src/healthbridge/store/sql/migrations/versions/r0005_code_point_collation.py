"""PostgreSQL: compare and sort index text by code point (``COLLATE "C"``).

Prefix ranges for string search and ``_sort`` on strings, tokens, uris and ids assume code
point order (https://hl7.org/fhir/R4/search.html#string), which SQLite's BINARY collation has
and a PostgreSQL database created with a language locale (en_US.UTF-8) does not. See
``KEY_TEXT`` in :mod:`healthbridge.store.sql.tables`. SQLite is unchanged.

Revision ID: r0005
Revises: r0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "r0005"
down_revision: str | None = "r0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {
    "resource": ("type", "id"),
    "resource_history": ("type", "id"),
    "search_token": ("code", "system"),
    "search_string": ("normalized", "exact"),
    "search_quantity": ("system", "code", "unit", "canonical_code"),
    "search_reference": ("url", "version"),
    "search_uri": ("uri",),
    "search_composite": ("a_system", "a_code", "b_system", "b_code", "b_unit", "b_string"),
}


def _alter(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        changes = ", ".join(f'ALTER COLUMN {c} TYPE TEXT COLLATE "{collation}"' for c in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _alter("C")


def downgrade() -> None:
    _alter("default")
