"""The typical searches are index-driven (https://hl7.org/fhir/R4/search.html; ARCHITECTURE.md
section 3): SQLite's plans for them, which the planner's statement shape decides (PostgreSQL
plans from statistics and is checked by hand, see the planner's report), never scan the
``resource`` table or an index table: they look resources up by key and probe the
(rkey, pkey, ...) indexes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from healthbridge.store.instants import system_clock
from healthbridge.store.sql import migrate
from healthbridge.store.sql.repository import SqlRepository
from tests.store.search_fixtures import parse, resource, store
from tests.store.sql_search.conftest import open_engine
from tests.support import databases

TYPICAL = [
    ("Observation", "patient=p1&code=c1&date=ge2020", ["ix_search_reference_pkey_target_rkey"]),
    ("Observation", "code=c1&_summary=count", ["ix_search_token_pkey_code_system_rkey"]),
    ("Patient", "name=smi", ["ix_search_string_pkey_normalized_rkey"]),
    ("Observation", "subject:Patient.name=smi", ["ix_search_string_pkey_normalized_rkey"]),
    ("Patient", "_has:Observation:patient:code=c1", ["ix_search_token_pkey_code_system_rkey"]),
    ("Observation", "patient=p1&_sort=-date", ["ix_search_date_rkey_pkey_lo_hi"]),
    ("Observation", "_id=p1-o1,p1-o2", ["ix_resource_rkey"]),
    ("Observation", "_include=Observation:subject&patient=p1", ["ix_resource_rkey"]),
]


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[SqlRepository]:
    url = databases.sqlite_url(tmp_path)
    migrate(url)
    repo = SqlRepository(await open_engine(url), system_clock)
    for p in range(20):
        await store(repo, resource("Patient", f"p{p}", name=[{"family": f"Smith{p}"}]))
        for o in range(5):
            code = {"coding": [{"system": "http://loinc.org", "code": f"c{o % 2}"}]}
            await store(
                repo,
                resource(
                    "Observation",
                    f"p{p}-o{o}",
                    status="final",
                    code=code,
                    subject={"reference": f"Patient/p{p}"},
                    effectiveDateTime=f"202{o}-01-01",
                ),
            )
    try:
        yield repo
    finally:
        await repo.close()


async def test_typical_searches_use_indexes(repo: SqlRepository) -> None:
    problems = []
    for resource_type, querystring, indexes in TYPICAL:
        explained = await repo.explain(parse(resource_type, querystring))
        plan = explained.partition("-- plan")[2]
        scans = [
            line for line in plan.splitlines() if "SCAN resource" in line or "SCAN search_" in line
        ]
        missing = [index for index in indexes if index not in plan]
        if scans or missing:
            problems.append(f"{resource_type}?{querystring}: {scans} {missing}\n{plan}")
    assert problems == [], "\n".join(problems)
