"""Search index rows are written with each version (https://hl7.org/fhir/R4/search.html).

ARCHITECTURE.md section 3: the index tables hold the rows of exactly the current version of every
live resource, replaced in the same statement or transaction as the version itself, on SQLite and
PostgreSQL alike. Rows are read back with plain SQL and compared with what the indexer extracts.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import apsw
import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import Gone
from healthbridge.fhir.search import Indexer
from healthbridge.fhir.search.text import query_words
from healthbridge.store.keys import param_key, resource_key
from healthbridge.store.repository import Repository
from healthbridge.store.sql import migrate_async, open_repository, text_index
from healthbridge.store.sql.compiled import compile_statement
from healthbridge.store.sql.dialects import POSTGRESQL, SQLITE
from healthbridge.store.sql.indexing import IndexRows
from healthbridge.store.sql.tables import SEARCH_TABLES, resource
from healthbridge.store.sql.urls import parse_url
from tests.support import databases

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Height"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2020-03-04",
    "valueQuantity": {"value": 180, "unit": "cm", "system": "http://unitsofmeasure.org"},
}


async def _rows(url: str) -> Counter[tuple[str, tuple[Any, ...]]]:
    """Every index row in the database, as (table, row) with a count."""
    found: Counter[tuple[str, tuple[Any, ...]]] = Counter()
    if url.startswith("sqlite"):
        # apsw, not the stdlib sqlite3: two SQLite libraries in one process break each other's
        # POSIX file locks (closing one's descriptor drops the other's locks).
        with closing(apsw.Connection(str(parse_url(url).path))) as connection:
            for table in SEARCH_TABLES:
                for row in connection.execute(f"SELECT * FROM {table.name}"):
                    found[(table.name, tuple(row))] += 1
        return found
    connection = await asyncpg.connect(parse_url(url).dsn)
    try:
        for table in SEARCH_TABLES:
            for row in await connection.fetch(f"SELECT * FROM {table.name}"):
                found[(table.name, tuple(row))] += 1
    finally:
        await connection.close()
    return found


def _expected(*resources: tuple[str, str, dict[str, Any]]) -> Counter[tuple[str, tuple[Any, ...]]]:
    index = IndexRows(Indexer(load_definitions()))
    expected: Counter[tuple[str, tuple[Any, ...]]] = Counter()
    for resource_type, id, content in resources:
        for table, rows in index.rows(resource_type, id, content).tables.items():
            expected.update((table, row) for row in rows)
    return expected


@pytest.fixture
async def sql_repo(sql_url: str) -> AsyncIterator[Repository]:
    repo = await open_repository(sql_url)
    yield repo
    await repo.close()


async def test_create_writes_the_index_rows_of_the_resource(
    sql_url: str, sql_repo: Repository
) -> None:
    await sql_repo.create("Observation", OBSERVATION, id="o1")
    rows = await _rows(sql_url)
    assert rows == _expected(("Observation", "o1", OBSERVATION))
    code = param_key("Observation", "code")
    assert (
        rows[
            (
                "search_token",
                (code, resource_key("Observation", "o1"), "8302-2", "http://loinc.org"),
            )
        ]
        == 1
    )
    subject = param_key("Observation", "subject")
    target = resource_key("Patient", "p1")
    assert any(t == "search_reference" and r[0] == subject and r[2] == target for t, r in rows)


async def test_update_replaces_and_delete_removes_the_rows(
    sql_url: str, sql_repo: Repository
) -> None:
    await sql_repo.create("Observation", OBSERVATION, id="o1")
    await sql_repo.create("Observation", OBSERVATION, id="o2")
    changed = OBSERVATION | {"status": "amended", "subject": {"reference": "Patient/p2"}}
    await sql_repo.update("Observation", "o1", changed)
    assert await _rows(sql_url) == _expected(
        ("Observation", "o1", changed), ("Observation", "o2", OBSERVATION)
    )
    await sql_repo.delete("Observation", "o2")
    assert await _rows(sql_url) == _expected(("Observation", "o1", changed))


async def test_a_transaction_writes_rows_all_or_nothing(sql_url: str, sql_repo: Repository) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with sql_repo.transaction() as tx:
            await tx.create("Observation", OBSERVATION, id="o1")
            raise Boom
    assert await _rows(sql_url) == Counter()
    async with sql_repo.transaction() as tx:
        await tx.create("Observation", OBSERVATION, id="o1")
        await tx.update("Observation", "o1", OBSERVATION | {"status": "amended"})
    assert await _rows(sql_url) == _expected(
        ("Observation", "o1", OBSERVATION | {"status": "amended"})
    )


async def test_a_failed_create_writes_no_rows(sql_url: str, sql_repo: Repository) -> None:
    await sql_repo.create("Observation", OBSERVATION, id="o1")
    before = await _rows(sql_url)
    with pytest.raises(Exception, match="already exists"):
        await sql_repo.create("Observation", OBSERVATION | {"status": "amended"}, id="o1")
    assert await _rows(sql_url) == before


@pytest.fixture(params=databases.SQL_BACKEND_PARAMS)
async def r0001_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database migrated only to r0001 (before search indexes)."""
    if request.param == "sqlite":
        url = databases.sqlite_url(tmp_path)
        await migrate_async(url, "r0001")
        yield url
        return
    postgres: databases.PostgresDatabase = request.getfixturevalue("postgres_database")
    server = make_url(postgres.require()).set(database="postgres")
    name = f"healthbridge_r0001_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = server.set(database=name).render_as_string(hide_password=False)
        await migrate_async(url, "r0001")
        yield url
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_migrating_to_r0002_indexes_the_resources_already_stored(r0001_url: str) -> None:
    """Resources stored before the search tables existed get keys and index rows."""
    content = jsonformat.dumps(NARRATED | {"id": "o1"})
    insert = (
        "INSERT INTO resource (type, id, version_id, last_updated, deleted, method, content) "
        "VALUES ('Observation', ?, 1, 0, ?, 'create', ?)"
    )
    rows = [("o1", False, content), ("gone", True, b"")]
    if r0001_url.startswith("sqlite"):
        with closing(apsw.Connection(str(parse_url(r0001_url).path))) as connection:
            connection.executemany(insert, rows)
    else:
        connection = await asyncpg.connect(parse_url(r0001_url).dsn)
        try:
            await connection.executemany(insert.replace("?", "${}").format(1, 2, 3), rows)
        finally:
            await connection.close()
    await migrate_async(r0001_url)
    assert await _rows(r0001_url) == _expected(("Observation", "o1", NARRATED | {"id": "o1"}))
    assert await _text_hits(r0001_url, "narrative", "müller") == {"o1"}
    repo = await open_repository(r0001_url)
    try:
        await repo.create("Observation", OBSERVATION, id="o2")  # the new write path works on it
        with pytest.raises(Gone):
            await repo.read("Observation", "gone")
    finally:
        await repo.close()


NARRATED: dict[str, Any] = OBSERVATION | {
    "text": {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Body height of Jos&eacute; '
        "<b>Müller</b></div>",
    },
    "note": [{"text": "measured standing"}],
}


async def _text_hits(url: str, column: text_index.Field, query: str) -> set[str]:
    """Ids of resources whose ``column`` holds every word of ``query``, through the same
    predicate the search planner uses."""
    dialect = SQLITE if url.startswith("sqlite") else POSTGRESQL
    condition = text_index.text_condition(dialect, resource.c.rkey, column, query_words(query))
    statement = compile_statement(select(resource.c.id).where(condition), dialect)
    args = statement.bind()
    if dialect is SQLITE:
        with closing(apsw.Connection(str(parse_url(url).path))) as connection:
            return {row[0] for row in connection.execute(statement.sql, args)}
    connection = await asyncpg.connect(parse_url(url).dsn)
    try:
        return {row[0] for row in await connection.fetch(statement.sql, *args)}
    finally:
        await connection.close()


async def test_the_text_index_follows_each_version(sql_url: str, sql_repo: Repository) -> None:
    """_text searches the narrative, _content every string; both case and accent blind."""
    await sql_repo.create("Observation", NARRATED, id="o1")
    await sql_repo.create("Observation", OBSERVATION, id="o2")
    assert await _text_hits(sql_url, "narrative", "jose MULLER") == {"o1"}
    assert await _text_hits(sql_url, "narrative", "standing") == set()
    assert await _text_hits(sql_url, "content", "Standing height") == {"o1"}
    assert await _text_hits(sql_url, "content", "final") == {"o1", "o2"}
    await sql_repo.update("Observation", "o1", OBSERVATION)
    assert await _text_hits(sql_url, "narrative", "muller") == set()
    await sql_repo.delete("Observation", "o2")
    assert await _text_hits(sql_url, "content", "final") == {"o1"}
