"""SQL-specific behaviour of search (https://hl7.org/fhir/R4/search.html) on SQLite and
PostgreSQL: the statement timeout (TooCostly, 400), the administrators' EXPLAIN, cursors whose
parts were tampered with, and system-level searches whose key lists span every type."""

from __future__ import annotations

import asyncio
import base64
import json

import msgspec
import pytest

from healthbridge.fhir.errors import InvalidRequest, TooCostly
from healthbridge.store.keys import param_key
from healthbridge.store.sql.compiled import Statement
from healthbridge.store.sql.repository import SqlRepository
from tests.store.search_fixtures import parse, resource, store
from tests.store.sql_search.conftest import OpenRepo, open_engine

SLOW = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000000) "
    "SELECT count(*) FROM c",
    "postgresql": "SELECT pg_sleep(2)",
}


def observation(id: str, patient: str, code: str, date: str) -> dict[str, object]:
    return resource(
        "Observation",
        id,
        status="final",
        code={"coding": [{"system": "http://loinc.org", "code": code}]},
        subject={"reference": f"Patient/{patient}"},
        effectiveDateTime=date,
    )


async def _patients_with_observations(repo: SqlRepository, patients: int = 3) -> None:
    for p in range(patients):
        await store(repo, resource("Patient", f"p{p}", name=[{"family": f"Smith{p}"}]))
        for o in range(4):
            await store(repo, observation(f"p{p}-o{o}", f"p{p}", f"c{o % 2}", f"202{o}-05-01"))


async def test_a_statement_past_the_timeout_is_too_costly(sql_url: str) -> None:
    """Every search statement runs under the engine's bounded snapshot: SQLite interrupts it from
    the progress handler, PostgreSQL cancels it by ``statement_timeout``; both say TooCostly."""
    engine = await open_engine(sql_url)
    try:
        slow = Statement(SLOW[engine.dialect.name], (), {})
        with pytest.raises(TooCostly) as raised:
            async with engine.bounded_snapshot(0.05) as reader:
                await reader.fetch_all(slow, ())
        assert isinstance(raised.value, InvalidRequest)  # 400
        assert raised.value.issues[0].code == "too-costly"
        # The connection is usable again, and the timeout applied to that snapshot only.
        async with engine.bounded_snapshot(10) as reader:
            assert await reader.fetch_all(Statement("SELECT 1", (), {}), ()) == [(1,)]
    finally:
        await engine.close()


# Index rows for 300,000 Observations with code c1 (no resources behind them): counting them
# takes PostgreSQL far longer than its shortest statement timeout (1 ms).
_MANY_ROWS = (
    "INSERT INTO search_token (pkey, rkey, code, system) "
    "SELECT $1::bigint, g, 'c1', 'http://loinc.org' FROM generate_series(1, 300000) AS g"
)


async def test_a_search_past_its_timeout_is_too_costly(open_repo: OpenRepo) -> None:
    repo = await open_repo(search_timeout_s=0.0)
    await _patients_with_observations(repo, 10)
    if repo._engine.dialect.name == "postgresql":
        async with repo._engine.unit_of_work() as session:
            many = Statement(_MANY_ROWS, ("pkey",), {})
            await session.execute([(many, (param_key("Observation", "code"),))])
    with pytest.raises(TooCostly):
        await repo.search(parse("Observation", "code=c1&_sort=-date&_total=accurate"))
    # Nothing was left open: reads and cheap searches go on.
    assert (await repo.read("Patient", "p1")).id == "p1"


async def test_explain_shows_the_sql_and_an_index_driven_plan(sql_repo: SqlRepository) -> None:
    await _patients_with_observations(sql_repo)
    text = await sql_repo.explain(parse("Observation", "patient=p1&code=c1&date=ge2021"))
    sql, _, plan = text.partition("-- plan")
    assert sql.startswith("-- SQL\nSELECT")
    assert "-- parameters" in sql
    assert "ix_search_reference_" in plan and "ix_search_token_" in plan
    counted = await sql_repo.explain(parse("Observation", "code=c1&_summary=count"))
    assert "count(*)" in counted.lower()


def _cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


async def test_tampered_cursors_are_invalid_requests(sql_repo: SqlRepository) -> None:
    await _patients_with_observations(sql_repo)
    query = parse("Observation", "_count=2&_sort=-date,value-quantity")
    page = await sql_repo.search(query)
    assert page.next_cursor is not None
    mark, values = msgspec.json.decode(
        base64.urlsafe_b64decode(page.next_cursor + "=" * (-len(page.next_cursor) % 4))
    )
    date, quantity, rkey = values
    assert isinstance(date, int) and quantity == "inf" and isinstance(rkey, int)
    bad = [
        _cursor([mark, [str(date), quantity, rkey]]),  # a date that is not an integer
        _cursor([mark, [date, 5, rkey]]),  # a number not written as its repr
        _cursor([mark, [date, "nan", rkey]]),
        _cursor([mark, [date, quantity, 2**64]]),  # no 64-bit key
        _cursor([mark, [date, quantity]]),
        _cursor([mark, [date, quantity, rkey, 1]]),
        _cursor([mark, {"a": 1}]),
        _cursor([mark]),
        _cursor("x" * 10),
        "A" * 5000,
        "%%%",
    ]
    for cursor in bad:
        with pytest.raises(InvalidRequest) as raised:
            await sql_repo.search(query, cursor)
        assert raised.value.issues[0].expression == ("_cursor",), cursor
    rest = await sql_repo.search(query, _cursor([mark, [date, quantity, rkey]]))
    assert [s.id for s in rest.matches] == [
        s.id for s in (await sql_repo.search(query, page.next_cursor)).matches
    ]


async def test_system_level_searches_span_every_type(sql_repo: SqlRepository) -> None:
    """search.html#all: ``_id`` and ``_lastUpdated`` without ``_type`` look at every type (the
    key list of ``_id`` holds one key per type, bound as one parameter)."""
    await _patients_with_observations(sql_repo, 1)
    await store(sql_repo, resource("Organization", "p0"))
    found = await sql_repo.search(parse(None, "_id=p0,p0-o1"))
    assert sorted(f"{s.resource_type}/{s.id}" for s in found.matches) == [
        "Observation/p0-o1",
        "Organization/p0",
        "Patient/p0",
    ]
    typed = await sql_repo.search(parse(None, "_id=p0&_type=Organization,Group"))
    assert [s.resource_type for s in typed.matches] == ["Organization"]
    everything = await sql_repo.search(parse(None, "_lastUpdated=gt2000&_total=accurate"))
    assert everything.total == 6


async def test_a_long_search_does_not_stall_other_requests(sql_url: str) -> None:
    """While one search statement runs for a while, point reads on the same server go on (on
    SQLite the search runs on its own connection in a worker thread)."""
    engine = await open_engine(sql_url)
    slow = Statement(SLOW[engine.dialect.name].replace("50000000", "3000000"), (), {})
    try:

        async def search() -> None:
            async with engine.bounded_snapshot(30) as reader:
                await reader.fetch_all(slow, ())

        running = asyncio.create_task(search())
        await asyncio.sleep(0.05)  # the search is under way
        assert await engine.fetch_one(Statement("SELECT 1", (), {}), ()) == (1,)
        assert not running.done()  # the read was answered while the search still ran
        await running
    finally:
        await engine.close()
