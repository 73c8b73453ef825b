"""The point statements of the SQL backend, compiled once per dialect.

Reads (https://hl7.org/fhir/R4/http.html#read, #vread), the read of the current version that
writers start with (locking in a unit of work, plain for a lock-free single change), the outbox
feed, and the version writes of :mod:`.writes`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select

from healthbridge.store.sql.bulk_writes import BulkCreates
from healthbridge.store.sql.compiled import (
    OUTBOX_COLUMNS,
    VERSION_COLUMNS,
    Statement,
    compile_statement,
    key_filter,
    select_versions,
)
from healthbridge.store.sql.dialects import Dialect
from healthbridge.store.sql.tables import outbox, resource, resource_history
from healthbridge.store.sql.writes import VersionWrites

SCHEMA_REVISION = "SELECT version_num FROM alembic_version"  # Alembic's own table


_VERSION_OF_KEY = (
    " JOIN resource_history h ON h.type = k.type AND h.id = k.id AND h.version_id = k.v"
)
_SELECT_VERSIONS = "SELECT " + ", ".join(f"h.{name}" for name in VERSION_COLUMNS)
_PG_READ_VERSIONS = Statement(
    _SELECT_VERSIONS
    + " FROM unnest($1::text[], $2::text[], $3::int[]) AS k(type, id, v)"
    + _VERSION_OF_KEY,
    ("types", "ids", "versions"),
    {},
)
_SQLITE_READ_VERSIONS = Statement(
    _SELECT_VERSIONS
    + " FROM (SELECT value ->> 0 AS type, value ->> 1 AS id, value ->> 2 AS v FROM json_each(?)) k"
    + _VERSION_OF_KEY,
    ("keys",),
    {},
)
"""Versions by (type, id, version id), one statement whatever their number, each found by the
primary key: PostgreSQL over three arrays (a WHERE of a few hundred ORs took 160-700 ms to plan
and run under load), SQLite over one JSON array (https://sqlite.org/json1.html#jeach)."""


class Statements:
    """The compiled statements for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        c = compile_statement
        self.read_current = c(select_versions(resource).where(*key_filter(resource)), dialect)
        current = select(resource.c.version_id, resource.c.last_updated, resource.c.deleted).where(
            *key_filter(resource)
        )
        self.current = c(current, dialect)
        self.lock_current = c(current.with_for_update(), dialect)
        self.read_version = c(
            select_versions(resource_history).where(
                *key_filter(resource_history),
                resource_history.c.version_id == bindparam("version_id"),
            ),
            dialect,
        )
        self.outbox_since = c(
            select(*(outbox.c[name] for name in OUTBOX_COLUMNS))
            .where(outbox.c.seq > bindparam("after"))
            .order_by(outbox.c.seq)
            .limit(bindparam("limit")),
            dialect,
        )
        self.ping = c(select(1), dialect)
        self.writes = VersionWrites(dialect)
        self.bulk = BulkCreates(dialect)
        # The hot paths bind these positionally as (type, id).
        key = ("type", "id")
        assert self.read_current.names == self.current.names == self.lock_current.names == key

    def read_versions(self, keys: Sequence[tuple[str, str, int]]) -> tuple[Statement, Any]:
        """The statement and arguments reading the versions ``keys`` (type, id, version id)."""
        if self.dialect.writes_in_one_statement:
            types, ids, versions = (list(column) for column in zip(*keys, strict=True))
            return _PG_READ_VERSIONS, (types, ids, versions)
        return _SQLITE_READ_VERSIONS, (json.dumps(list(keys)),)
