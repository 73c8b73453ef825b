"""The point statements of the SQL backend, compiled once per dialect.

Reads (https://hl7.org/fhir/R4/http.html#read, #vread), the read of the current version that
writers start with (locking in a unit of work, plain for a lock-free single change), the outbox
feed, and the version writes of :mod:`.writes`.
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, or_, select

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


_PG_READ_VERSIONS = Statement(
    "SELECT "
    + ", ".join(f"h.{name}" for name in VERSION_COLUMNS)
    + " FROM unnest($1::text[], $2::text[], $3::int[]) AS k(type, id, version_id)"
    " JOIN resource_history h"
    " ON h.type = k.type AND h.id = k.id AND h.version_id = k.version_id",
    ("types", "ids", "versions"),
    {},
)


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
        self._read_versions: dict[int, Statement] = {}
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

    def read_versions(self, count: int) -> Statement:
        """Versions of ``resource_history``, each found by its primary key. PostgreSQL: one
        statement whatever the count, over three arrays (``:types``, ``:ids``, ``:versions``):
        a WHERE of a few hundred ORs took 160-700 ms to plan and run under load. SQLite:
        ``(:type0, :id0, :version0)``... ORed (one statement per count: callers pad to a power
        of two)."""
        if self.dialect.writes_in_one_statement:
            return _PG_READ_VERSIONS
        statement = self._read_versions.get(count)
        if statement is None:
            h = resource_history.c
            wanted = [
                and_(
                    h.type == bindparam(f"type{i}"),
                    h.id == bindparam(f"id{i}"),
                    h.version_id == bindparam(f"version{i}"),
                )
                for i in range(count)
            ]
            query = select_versions(resource_history).where(or_(*wanted))
            statement = self._read_versions[count] = compile_statement(query, self.dialect)
        return statement
