"""The SQL schema, as SQLAlchemy Core tables (the same on SQLite and PostgreSQL).

Storage follows the FHIR RESTful API's versioning (https://hl7.org/fhir/R4/http.html#versioning):

* ``resource``: the current version of each resource, primary key (type, id).
* ``resource_history``: every version, primary key (type, id, version_id), with indexes on
  ``last_updated`` for system and type history (http.html#history).
* ``outbox``: one row per committed change, in commit order, for the event relay.
* ``audit_event`` and ``audit_head``: the hash-chained audit trail (:mod:`..audit`).

Instants are BIGINT microseconds since the Unix epoch (UTC), so ``_since``/``_at`` comparisons
are exact and identical on both databases. Content is BLOB/BYTEA holding the exact JSON bytes
served on read. ``resource.rkey`` is a 64-bit key of (type, id) that the search index tables
(below) refer to. Migrations live in
``migrations/versions`` and must produce exactly these tables (a test compares them).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
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

KEY_TEXT = Text().with_variant(Text(collation="C"), "postgresql")
"""Index text compared and sorted by code point (prefix ranges, ``_sort``) on both databases:
SQLite's default BINARY collation does that; PostgreSQL needs ``COLLATE "C"`` whatever the
database's locale."""

# SQLite only makes INTEGER PRIMARY KEY an auto-incrementing rowid alias.
_Sequence = BigInteger().with_variant(Integer(), "sqlite")


def _versions_table(name: str, *, one_per_resource: bool, extra: tuple[Index, ...] = ()) -> Table:
    """A table of resource versions: the current one per resource, or every one."""
    return Table(
        name,
        metadata,
        Column("type", KEY_TEXT, primary_key=True),
        Column("id", KEY_TEXT, primary_key=True),
        Column("version_id", Integer, primary_key=not one_per_resource, nullable=False),
        Column("last_updated", BigInteger, nullable=False),
        Column("deleted", Boolean, nullable=False),
        Column("method", Text, nullable=False),
        Column("content", LargeBinary, nullable=False),
        *(() if not one_per_resource else (Column("rkey", BigInteger, nullable=False),)),
        *extra,
    )


resource = _versions_table(
    "resource",
    one_per_resource=True,
    extra=(Index(None, "rkey", unique=True), Index(None, "type", "last_updated")),
)
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
    Column("actor", Text),  # who made the change (JSON, healthbridge.store.actor), for audit
    sqlite_autoincrement=True,
)


# --- search indexes (https://hl7.org/fhir/R4/search.html) ------------------------------------
#
# One table per search-parameter type. Every row carries ``pkey`` (the parameter: a 64-bit hash of
# resource type and code, see healthbridge.store.keys) and ``rkey`` (the resource: a 64-bit hash
# of type and id, also a unique column of ``resource``). Each table has two covering indexes: one
# leads with (pkey, value...) to find resources by value, one leads with (rkey, pkey) to test a
# resource found another way (and to delete a resource's rows when it changes). Only the current
# version of a live resource has rows; they are replaced in the same statement or transaction as
# the version they describe.

DOUBLE: Double[float] = Double(precision=53)


def _index_table(
    name: str, *columns: Column[object], value: tuple[str, ...], extra: tuple[Index, ...] = ()
) -> Table:
    return Table(
        name,
        metadata,
        Column("pkey", BigInteger, nullable=False),
        Column("rkey", BigInteger, nullable=False),
        *columns,
        Index(None, "pkey", *value, "rkey"),
        Index(None, "rkey", "pkey", *value),
        *extra,
    )


search_token = _index_table(
    "search_token",
    Column("code", KEY_TEXT),
    Column("system", KEY_TEXT),
    value=("code", "system"),
)
search_string = _index_table(
    "search_string",
    Column("normalized", KEY_TEXT, nullable=False),
    Column("exact", KEY_TEXT, nullable=False),
    value=("normalized",),
)
search_date = _index_table(
    "search_date",
    Column("lo", BigInteger, nullable=False),  # [lo, hi) microseconds UTC
    Column("hi", BigInteger, nullable=False),
    value=("lo", "hi"),
)
search_number = _index_table("search_number", Column("value", DOUBLE), value=("value",))
search_quantity = _index_table(
    "search_quantity",
    Column("value", DOUBLE),  # None for a Range; then lo/hi are its bounds
    Column("lo", DOUBLE),
    Column("hi", DOUBLE),
    Column("system", KEY_TEXT),
    Column("code", KEY_TEXT),
    Column("unit", KEY_TEXT),
    Column("canonical_code", KEY_TEXT),  # UCUM canonical form, when the system is UCUM
    Column("canonical_value", DOUBLE),
    value=("value",),
)
search_reference = _index_table(
    "search_reference",
    Column("target", BigInteger),  # rkey of the local Type/id referred to
    Column("url", KEY_TEXT),  # absolute, urn: or canonical reference
    Column("version", KEY_TEXT),
    value=("target",),
    extra=(Index(None, "pkey", "url"),),
)
search_uri = _index_table("search_uri", Column("uri", KEY_TEXT, nullable=False), value=("uri",))
search_composite = _index_table(
    "search_composite",
    # First component: a token (system, code) or a reference (code = "Type/id" or url).
    Column("a_system", KEY_TEXT),
    Column("a_code", KEY_TEXT),
    # Second component, in the columns of its type.
    Column("b_system", KEY_TEXT),  # token system, or quantity system
    Column("b_code", KEY_TEXT),  # token code, or quantity code
    Column("b_unit", KEY_TEXT),
    Column("b_value", DOUBLE),  # number or quantity value
    Column("b_lo", DOUBLE),  # quantity Range bounds
    Column("b_hi", DOUBLE),
    Column("b_start", BigInteger),  # date [start, end)
    Column("b_end", BigInteger),
    Column("b_string", KEY_TEXT),  # string, normalized
    Column("c_value", DOUBLE),  # a third (number) component
    value=("a_code",),
)
search_near = _index_table(
    "search_near",
    Column("latitude", DOUBLE, nullable=False),
    Column("longitude", DOUBLE, nullable=False),
    value=("latitude", "longitude"),
)

SEARCH_TABLES = (
    search_token,
    search_string,
    search_date,
    search_number,
    search_quantity,
    search_reference,
    search_uri,
    search_composite,
    search_near,
)

# --- background jobs (https://hl7.org/fhir/R4/async.html pattern: accepted, then polled) -----

job = Table(
    "job",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("state", Text, nullable=False),  # running | done | failed | cancelled
    Column("params", Text, nullable=False),  # JSON
    Column("cursor", Text),  # where a resumed run goes on from
    Column("processed", BigInteger, nullable=False),
    Column("total", BigInteger),
    Column("owner", Text),  # the server process running it
    Column("error", Text),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),  # heartbeat, microseconds UTC
    Index(None, "kind", "state"),
)

# --- authorization server state (healthbridge.store.records) ---------------------------------

record = Table(
    "record",
    metadata,
    Column("kind", KEY_TEXT, primary_key=True),
    Column("key", KEY_TEXT, primary_key=True),
    Column("value", Text, nullable=False),  # JSON
    Column("version", BigInteger, nullable=False),
    Column("expires", BigInteger),  # microseconds UTC; NULL: never
    Index(None, "expires"),
)

# --- the audit trail (https://hl7.org/fhir/R4/auditevent.html, IHE BALP; healthbridge.store.audit)

audit_event = Table(
    "audit_event",
    metadata,
    # Numbered 1, 2, 3... by the appender (no gaps), so a deleted row shows.
    Column("seq", _Sequence, primary_key=True, autoincrement=False),
    Column("recorded", BigInteger, nullable=False),  # microseconds UTC
    Column("type", Text, nullable=False),  # AuditEvent.type code
    Column("subtype", Text),
    Column("action", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("patient", Text),  # Patient id
    Column("agent", Text),  # the user: fhirUser reference, or the subject
    Column("client", Text),  # OAuth client id
    Column("source_seq", BigInteger),  # the outbox event it describes (relayed once)
    Column("content", LargeBinary, nullable=False),  # the AuditEvent JSON, id = seq
    Column("digest", LargeBinary, nullable=False),  # SHA-256 of the columns and content
    Column("chain", LargeBinary, nullable=False),  # HMAC(key, previous chain, seq, digest)
    Index(None, "source_seq", unique=True),
    Index(None, "patient", "recorded"),
    Index(None, "agent", "recorded"),
    Index(None, "type", "recorded"),
    Index(None, "recorded"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("seq", BigInteger, nullable=False),  # the last row's
    Column("chain", LargeBinary, nullable=False),
)

# --- loaded code systems (https://hl7.org/fhir/R4/terminology-service.html;
# healthbridge.store.terminology, healthbridge.store.sql.terminology) -------------------------

term_system = Table(
    "term_system",
    metadata,
    Column("id", _Sequence, primary_key=True, autoincrement=True),
    Column("url", KEY_TEXT, nullable=False),
    Column("version", KEY_TEXT, nullable=False),
    Column("state", Text, nullable=False),  # loading | complete
    Column("fingerprint", Text, nullable=False),  # digest of the release files
    Column("done", BigInteger, nullable=False),  # concepts stored so far
    Column("finished", BigInteger),  # load order of complete versions (newest: highest)
    Column("info", Text, nullable=False),  # CodeSystemInfo as JSON
    Index(None, "url", "version", "state", unique=True),
    sqlite_autoincrement=True,
)
term_concept = Table(
    "term_concept",
    metadata,
    Column("system_id", BigInteger, primary_key=True),
    Column("code", KEY_TEXT, primary_key=True),
    Column("display", Text),
    Column("inactive", Boolean, nullable=False),
    Column("data", Text, nullable=False),  # definition, designations, properties, parents (JSON)
)
term_edge = Table(  # is-a: code -> parent (walked by recursive queries both ways)
    "term_edge",
    metadata,
    Column("system_id", BigInteger, primary_key=True),
    Column("code", KEY_TEXT, primary_key=True),
    Column("parent", KEY_TEXT, primary_key=True),
    Index(None, "system_id", "parent", "code"),
)
term_property = Table(  # property values as filters compare them (concept_index.value_text)
    "term_property",
    metadata,
    Column("system_id", BigInteger, primary_key=True),
    Column("property", KEY_TEXT, primary_key=True),
    Column("value", KEY_TEXT, primary_key=True),
    Column("code", KEY_TEXT, primary_key=True),
)
term_word = Table(  # words of displays and designations (fhir.terminology.words), prefix ranges
    "term_word",
    metadata,
    Column("system_id", BigInteger, primary_key=True),
    Column("word", KEY_TEXT, primary_key=True),
    Column("code", KEY_TEXT, primary_key=True),
)

# --- subscription notifications (https://hl7.org/fhir/uv/subscriptions-backport/;
# healthbridge.store.subscriptions, healthbridge.store.sql.subscriptions) ---------------------

subscription_state = Table(
    "subscription_state",
    metadata,
    Column("subscription_id", KEY_TEXT, primary_key=True),
    Column("status", Text, nullable=False),  # requested | active | error | off
    Column("events_since_start", BigInteger, nullable=False),  # the last event number given
    Column("error", Text),
    Column("failures", BigInteger, nullable=False),  # consecutive
    Column("last_delivered", BigInteger, nullable=False),  # event number; 0: none
    Column("next_attempt", BigInteger),  # when the head may be claimed; NULL: nothing pending
    Index(None, "status", "next_attempt"),
)
subscription_delivery = Table(
    "subscription_delivery",
    metadata,
    Column("id", _Sequence, primary_key=True, autoincrement=True),
    Column("subscription_id", KEY_TEXT, nullable=False),
    Column("event_number", BigInteger, nullable=False),
    Column("outbox_seq", BigInteger, nullable=False),
    Column("focus_type", Text, nullable=False),
    Column("focus_id", Text, nullable=False),
    Column("focus_version", BigInteger, nullable=False),
    Column("extra", Text, nullable=False),  # JSON
    Column("recorded", BigInteger, nullable=False),
    Column("state", Text, nullable=False),  # pending | delivered | dead
    Column("attempts", BigInteger, nullable=False),
    Column("due", BigInteger, nullable=False),
    Column("owner", Text),  # the worker holding the lease
    Column("lease_until", BigInteger),
    Column("error", Text),
    Column("delivered", BigInteger),
    Index(None, "subscription_id", "event_number", unique=True),
    Index(None, "outbox_seq", "subscription_id", unique=True),  # one event per change
    Index(None, "subscription_id", "state", "event_number"),  # the head: lowest pending
    sqlite_autoincrement=True,
)
subscription_cursor = Table(  # how far each dispatcher matched the outbox
    "subscription_cursor",
    metadata,
    Column("name", KEY_TEXT, primary_key=True),
    Column("after_seq", BigInteger, nullable=False),
)
