"""The SQL schema, as SQLAlchemy Core tables (the same on SQLite and PostgreSQL).

Storage follows the FHIR RESTful API's versioning (https://hl7.org/fhir/R4/http.html#versioning):

* ``resource``: the current version of each resource, primary key (type, id).
* ``resource_history``: every version, primary key (type, id, version_id), with indexes on
  ``last_updated`` for system and type history (http.html#history).
* ``outbox``: one row per committed change, in commit order, for the event relay.

Instants are BIGINT microseconds since the Unix epoch (UTC), so ``_since``/``_at`` comparisons
are exact and identical on both databases. Content is BLOB/BYTEA holding the exact JSON bytes
served on read. Search index tables come in a later migration. Migrations live in
``migrations/versions`` and must produce exactly these tables (a test compares them).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only makes INTEGER PRIMARY KEY an auto-incrementing rowid alias.
_Sequence = BigInteger().with_variant(Integer(), "sqlite")


def _versions_table(name: str, *, one_per_resource: bool, extra: tuple[Index, ...] = ()) -> Table:
    """A table of resource versions: the current one per resource, or every one."""
    return Table(
        name,
        metadata,
        Column("type", Text, primary_key=True),
        Column("id", Text, primary_key=True),
        Column("version_id", Integer, primary_key=not one_per_resource, nullable=False),
        Column("last_updated", BigInteger, nullable=False),
        Column("deleted", Boolean, nullable=False),
        Column("method", Text, nullable=False),
        Column("content", LargeBinary, nullable=False),
        *extra,
    )


resource = _versions_table("resource", one_per_resource=True)
resource_history = _versions_table(
    "resource_history",
    one_per_resource=False,
    extra=(Index(None, "last_updated"), Index(None, "type", "last_updated")),
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", _Sequence, primary_key=True, autoincrement=True),
    Column("type", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("method", Text, nullable=False),
    Column("recorded", BigInteger, nullable=False),
    sqlite_autoincrement=True,
)
