"""Search indexes: ``resource.rkey`` and one index table per search-parameter type.

https://hl7.org/fhir/R4/search.html; see :mod:`healthbridge.store.sql.tables` for the layout and
:mod:`healthbridge.store.sql.indexing` for the rows. Resources stored before this revision get
their key and their index rows here, in batches (a data migration through the same indexer the
write path uses).

Revision ID: r0002
Revises: r0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "r0002"
down_revision: str | None = "r0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000
_DOUBLE: sa.Double[float] = sa.Double(precision=53)
_TABLES: dict[str, list[tuple[str, Any, bool]]] = {
    # name: [(column, type, nullable)], value columns after pkey and rkey
    "search_token": [("code", sa.Text(), True), ("system", sa.Text(), True)],
    "search_string": [("normalized", sa.Text(), False), ("exact", sa.Text(), False)],
    "search_date": [("lo", sa.BigInteger(), False), ("hi", sa.BigInteger(), False)],
    "search_number": [("value", _DOUBLE, True)],
    "search_quantity": [
        ("value", _DOUBLE, True),
        ("lo", _DOUBLE, True),
        ("hi", _DOUBLE, True),
        ("system", sa.Text(), True),
        ("code", sa.Text(), True),
        ("unit", sa.Text(), True),
        ("canonical_code", sa.Text(), True),
        ("canonical_value", _DOUBLE, True),
    ],
    "search_reference": [
        ("target", sa.BigInteger(), True),
        ("url", sa.Text(), True),
        ("version", sa.Text(), True),
    ],
    "search_uri": [("uri", sa.Text(), False)],
    "search_composite": [
        ("a_system", sa.Text(), True),
        ("a_code", sa.Text(), True),
        ("b_system", sa.Text(), True),
        ("b_code", sa.Text(), True),
        ("b_unit", sa.Text(), True),
        ("b_value", _DOUBLE, True),
        ("b_lo", _DOUBLE, True),
        ("b_hi", _DOUBLE, True),
        ("b_start", sa.BigInteger(), True),
        ("b_end", sa.BigInteger(), True),
        ("b_string", sa.Text(), True),
        ("c_value", _DOUBLE, True),
    ],
    "search_near": [("latitude", _DOUBLE, False), ("longitude", _DOUBLE, False)],
}
_VALUE_INDEX = {
    "search_token": ["code", "system"],
    "search_string": ["normalized"],
    "search_date": ["lo", "hi"],
    "search_number": ["value"],
    "search_quantity": ["value"],
    "search_reference": ["target"],
    "search_uri": ["uri"],
    "search_composite": ["a_code"],
    "search_near": ["latitude", "longitude"],
}


def _index_name(table: str, columns: list[str]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def _create_search_tables() -> None:
    for name, columns in _TABLES.items():
        op.create_table(
            name,
            sa.Column("pkey", sa.BigInteger(), nullable=False),
            sa.Column("rkey", sa.BigInteger(), nullable=False),
            *(sa.Column(column, kind, nullable=nullable) for column, kind, nullable in columns),
        )
        value = _VALUE_INDEX[name]
        for index in (["pkey", *value, "rkey"], ["rkey", "pkey", *value]):
            op.create_index(_index_name(name, index), name, index)
    op.create_index(
        _index_name("search_reference", ["pkey", "url"]), "search_reference", ["pkey", "url"]
    )


def _backfill() -> None:
    """Keys and index rows for the resources stored before this revision."""
    from healthbridge.fhir import jsonformat
    from healthbridge.fhir.definitions import load_definitions
    from healthbridge.fhir.search import Indexer
    from healthbridge.store.keys import resource_key
    from healthbridge.store.sql.indexing import IndexRows

    bind = op.get_bind()
    index = IndexRows(Indexer(load_definitions()))
    resource = sa.table(
        "resource",
        sa.column("type"),
        sa.column("id"),
        sa.column("deleted"),
        sa.column("content"),
        sa.column("rkey"),
    )
    tables = {
        name: sa.table(name, *(sa.column(c) for c in ("pkey", "rkey", *(c[0] for c in cols))))
        for name, cols in _TABLES.items()
    }
    set_key = (
        resource.update()
        .where(resource.c.type == sa.bindparam("t"), resource.c.id == sa.bindparam("i"))
        .values(rkey=sa.bindparam("k"))
    )
    after: tuple[str, str] = ("", "")
    while True:
        rows = bind.execute(
            sa.select(resource.c.type, resource.c.id, resource.c.deleted, resource.c.content)
            .where(sa.tuple_(resource.c.type, resource.c.id) > sa.tuple_(*after))
            .order_by(resource.c.type, resource.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        keys = [{"t": t, "i": i, "k": resource_key(t, i)} for t, i, _, _ in rows]
        bind.execute(set_key, keys)
        for resource_type, id, deleted, content in rows:
            if deleted:
                continue
            decoded = jsonformat.loads(bytes(content))
            for name, table_rows in index.rows(resource_type, id, decoded).tables.items():
                columns = ["pkey", "rkey", *(c[0] for c in _TABLES[name])]
                bind.execute(
                    tables[name].insert(), [dict(zip(columns, r, strict=False)) for r in table_rows]
                )
        after = (rows[-1][0], rows[-1][1])


def upgrade() -> None:
    op.add_column("resource", sa.Column("rkey", sa.BigInteger(), nullable=True))
    _create_search_tables()
    _backfill()
    with op.batch_alter_table("resource") as batch:
        batch.alter_column("rkey", existing_type=sa.BigInteger(), nullable=False)
    op.create_index("ix_resource_rkey", "resource", ["rkey"], unique=True)
    op.create_index("ix_resource_type_last_updated", "resource", ["type", "last_updated"])


def downgrade() -> None:
    op.drop_index("ix_resource_type_last_updated", table_name="resource")
    op.drop_index("ix_resource_rkey", table_name="resource")
    for name in reversed(list(_TABLES)):
        op.drop_table(name)
    with op.batch_alter_table("resource") as batch:
        batch.drop_column("rkey")
