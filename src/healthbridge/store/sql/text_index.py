"""The full-text index behind ``_text`` and ``_content`` (https://hl7.org/fhir/R4/search.html#text).

One row per live resource holds the words of its narrative and of its whole content
(:mod:`healthbridge.fhir.search.text`). This is the one index whose storage differs by database,
so all of it lives here, beside :mod:`.dialects`:

* SQLite: an FTS5 virtual table (https://sqlite.org/fts5.html), ``rowid`` = the resource key,
  ``detail=column`` (word queries need no positions). It keeps a copy of the words: contentless
  tables with deletes need SQLite 3.43, newer than the stdlib ``sqlite3`` that migrations use;
* PostgreSQL: a table of two ``tsvector`` columns with GIN indexes
  (https://www.postgresql.org/docs/current/textsearch.html). The words are sent as ``tsvector``
  literals and searched with ``tsquery`` literals (``w1 & w2``): they are letters and digits
  only, normalised here, so PostgreSQL parses nothing itself.

Rows are replaced with each version, in the same statement or transaction, like the other index
tables. :func:`text_condition` is the search predicate: every word of the value, in one column.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    MetaData,
    Table,
    bindparam,
    cast,
    exists,
    literal,
    select,
    text,
)
from sqlalchemy import column as sql_column
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import TSQUERY, TSVECTOR
from sqlalchemy.sql.dml import Delete
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import CTE

from healthbridge.fhir.search.text import TextField
from healthbridge.store.sql.dialects import Dialect

Field = TextField
TABLE = "search_text"

SQLITE_DDL = (
    f"CREATE VIRTUAL TABLE {TABLE} USING fts5(narrative, content, detail=column, "
    "columnsize=0, tokenize='unicode61 remove_diacritics 0')",
)
POSTGRES_DDL = (
    f"CREATE TABLE {TABLE} (rkey BIGINT PRIMARY KEY, narrative TSVECTOR NOT NULL, "
    "content TSVECTOR NOT NULL)",
    f"CREATE INDEX ix_{TABLE}_narrative ON {TABLE} USING GIN (narrative)",
    f"CREATE INDEX ix_{TABLE}_content ON {TABLE} USING GIN (content)",
)

# PostgreSQL's table, for building statements (kept out of tables.metadata: SQLite's differs).
_pg = Table(
    TABLE,
    MetaData(),
    Column("rkey", BigInteger, primary_key=True),
    Column("narrative", TSVECTOR),
    Column("content", TSVECTOR),
)


def ddl(dialect_name: str) -> tuple[str, ...]:
    return SQLITE_DDL if dialect_name == "sqlite" else POSTGRES_DDL


def _vector(name: str) -> ColumnElement[Any]:
    """The words, already normalised and split here, as a ``tsvector`` literal: PostgreSQL
    only sorts and deduplicates them (``to_tsvector`` re-parsing them was most of the cost of
    writing a resource)."""
    return cast(bindparam(name), TSVECTOR)


def postgres_ctes(written: CTE, *, replace: bool) -> list[CTE]:
    """WITH clauses of PostgreSQL's one write statement: if ``written`` wrote, upsert the text
    row of a live version or delete that of a delete. (A DELETE and an INSERT of the same key in
    one statement would collide: sibling clauses run in an unspecified order on one snapshot.)"""
    wrote = exists(select(written.c.version_id))
    present = bindparam("text_present", type_=Boolean)
    ctes: list[CTE] = []
    if replace:
        delete: Delete = _pg.delete().where(_pg.c.rkey == bindparam("rkey"), wrote, ~present)
        ctes.append(delete.cte("d_search_text"))
    rows = select(
        bindparam("rkey", type_=BigInteger), _vector("text_narrative"), _vector("text_content")
    ).where(wrote, present)
    insert = postgresql.insert(_pg).from_select(["rkey", "narrative", "content"], rows)
    upsert = insert.on_conflict_do_update(
        index_elements=["rkey"],
        set_={"narrative": insert.excluded.narrative, "content": insert.excluded.content},
    )
    ctes.append(upsert.cte("i_search_text"))
    return ctes


SQLITE_DELETE = f"DELETE FROM {TABLE} WHERE rowid = ?"
SQLITE_INSERT = f"INSERT INTO {TABLE} (rowid, narrative, content) VALUES (?, ?, ?)"


def fts5_query(column: Field, words: list[str]) -> str:
    """An FTS5 query for every one of ``words`` (letters and digits only) in ``column``."""
    return f"{{{column}}} : (" + " AND ".join(f'"{word}"' for word in words) + ")"


def text_condition(
    dialect: Dialect, rkey: ColumnElement[Any], column: Field, words: list[str]
) -> ColumnElement[bool]:
    """``rkey`` is a resource whose ``column`` text holds every one of ``words``."""
    if dialect.name == "sqlite":
        match: BindParameter[str] = bindparam("q", fts5_query(column, words), unique=True)
        hits = text(f"SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH :q").bindparams(match)
        return rkey.in_(hits.columns(sql_column("rowid", BigInteger)))
    query = cast(literal(" & ".join(words)), TSQUERY)
    return rkey.in_(select(_pg.c.rkey).where(_pg.c[column].op("@@")(query)))


POSTGRES_DELETE = f"DELETE FROM {TABLE} WHERE rkey = $1"
POSTGRES_INSERT = (
    f"INSERT INTO {TABLE} (rkey, narrative, content) VALUES ($1, $2::tsvector, $3::tsvector)"
)


def delete_sql(dialect: Dialect) -> str:
    """Delete the text row of one resource (parameter: its key)."""
    return SQLITE_DELETE if dialect.name == "sqlite" else POSTGRES_DELETE


def insert_sql(dialect: Dialect) -> str:
    """Insert the text row of one resource (parameters: key, narrative words, content words)."""
    return SQLITE_INSERT if dialect.name == "sqlite" else POSTGRES_INSERT
