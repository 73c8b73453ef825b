"""What the memory fake's search does beyond the shared contract suite
(https://hl7.org/fhir/R4/search.html): index rows cached per current version, the
MAX_INCLUDED cap and the ``:iterate`` depth, terminology modifiers and unsupported parameters
refused, cursors of decimal sort values, and the owner of a compartment being in it."""

from __future__ import annotations

import base64
import dataclasses
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.store.memory import MemoryRepository
from healthbridge.store.memory_search import INCLUDE_DEPTH, MemorySearch
from healthbridge.store.repository import MAX_INCLUDED, StoredResource

DEFINITIONS = load_definitions()
PARSER = SearchParser(DEFINITIONS)


def query(resource_type: str | None, querystring: str, **changes: Any) -> SearchQuery:
    pairs = [tuple(p.split("=", 1)) for p in querystring.split("&") if p]
    parsed = PARSER.parse(resource_type, pairs)  # type: ignore[arg-type]
    return dataclasses.replace(parsed, compartment=changes.get("compartment"))


def obs(id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **fields}


async def test_index_rows_are_cached_per_current_version() -> None:
    repo = MemoryRepository(definitions=DEFINITIONS)
    first = await repo.create("Patient", {"resourceType": "Patient", "gender": "male"}, id="p")
    by_type = {"Patient": {"p": first}}
    search = MemorySearch(DEFINITIONS, by_type)
    cached = search.cache.indexed(first)
    assert search.cache.indexed(first) is cached
    second, _ = await repo.update("Patient", "p", {"resourceType": "Patient", "id": "p"})
    by_type["Patient"]["p"] = second
    assert search.cache.indexed(second) is not cached
    assert search.matches(query("Patient", "gender=male")) == []
    assert (await repo.search(query("Patient", "gender:missing=true"))).matches == [second]


async def test_updates_and_deletes_are_seen_by_the_next_search() -> None:
    repo = MemoryRepository(definitions=DEFINITIONS)
    await repo.create("Patient", {"resourceType": "Patient", "gender": "male"}, id="p")
    assert len((await repo.search(query("Patient", "gender=male"))).matches) == 1
    await repo.update("Patient", "p", {"resourceType": "Patient", "id": "p", "gender": "female"})
    assert (await repo.search(query("Patient", "gender=male"))).matches == []
    await repo.delete("Patient", "p")
    assert (await repo.search(query("Patient", "gender=female"))).total == 0


async def test_included_resources_are_capped() -> None:
    """repository.py MAX_INCLUDED: beyond it the page says ``included_truncated``."""
    repo = MemoryRepository(definitions=DEFINITIONS)
    await repo.create("Patient", {"resourceType": "Patient"}, id="p")
    for i in range(MAX_INCLUDED + 1):
        await repo.create("Observation", obs(f"o{i}", subject={"reference": "Patient/p"}))
    page = await repo.search(query("Patient", "_revinclude=Observation:subject"))
    assert len(page.included) == MAX_INCLUDED
    assert page.included_truncated
    page = await repo.search(query("Patient", "_revinclude=Observation:subject&_count=0"))
    assert (page.included, page.included_truncated) == ([], False)


async def test_iterate_stops_at_the_depth_cap() -> None:
    """An included resource is at most INCLUDE_DEPTH include steps from a match."""
    repo = MemoryRepository(definitions=DEFINITIONS)
    for i in range(INCLUDE_DEPTH + 3):
        member = {"hasMember": [{"reference": f"Observation/o{i + 1}"}]}
        await repo.create("Observation", obs(f"o{i}", **member), id=f"o{i}")
    page = await repo.search(query("Observation", "_id=o0&_include:iterate=Observation:has-member"))
    assert [s.id for s in page.included] == [f"o{i}" for i in range(1, INCLUDE_DEPTH + 1)]
    once = await repo.search(query("Observation", "_id=o0&_include=Observation:has-member"))
    assert [s.id for s in once.included] == ["o1"]


@pytest.mark.parametrize(
    "querystring",
    [
        "code:in=http://hl7.org/fhir/ValueSet/observation-codes",
        "code:not-in=http://hl7.org/fhir/ValueSet/observation-codes",
        "code:above=http://loinc.org|8867-4",
        "code:below=http://loinc.org|8867-4",
        "_text:exact=anything",
        "_content:missing=true",
        "subject:Patient._text:contains=anything",
    ],
)
async def test_unsupported_clauses_are_invalid_requests(querystring: str) -> None:
    """Terminology modifiers and unindexed parameters: InvalidRequest (not-supported)
    naming the parameter, never a silent empty result."""
    repo = MemoryRepository(definitions=DEFINITIONS)
    with pytest.raises(InvalidRequest) as raised:
        await repo.search(query("Observation", querystring))
    issue = raised.value.issues[0]
    assert issue.code == "not-supported"
    assert issue.expression == (querystring.split("=", maxsplit=1)[0],)


async def test_full_text_matches_words() -> None:
    """search.html#text: every word of a value occurs in the narrative (``_text``) or
    anywhere in the resource (``_content``); values OR."""
    repo = MemoryRepository(definitions=DEFINITIONS)
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Blood <b>pressure</b> high</p></div>'
    await repo.create("Observation", obs("a", text={"status": "generated", "div": div}), id="a")
    await repo.create("Observation", obs("b", note=[{"text": "Pressure is fine"}]), id="b")

    async def found(querystring: str) -> set[str]:
        return {s.id for s in (await repo.search(query("Observation", querystring))).matches}

    assert await found("_text=pressure blood") == {"a"}
    assert await found("_text=fine") == set()
    assert await found("_content=PRESSURE") == {"a", "b"}
    assert await found("_content=fine,high") == {"a", "b"}
    assert await found("_content=blood fine") == set()
    with pytest.raises(InvalidRequest) as raised:
        await repo.search(query("Observation", "_text=..."))
    assert raised.value.issues[0].expression == ("_text",)


async def test_decimal_sort_values_survive_the_cursor() -> None:
    """search.html#sort by a quantity: pages continue after decimal values exactly."""
    repo = MemoryRepository(definitions=DEFINITIONS)
    values = ["72.50", "72.5", "72.49", "100", "-3", "0.001"]
    for i, value in enumerate(values):
        await repo.create("Observation", obs(f"o{i}", valueQuantity={"value": Decimal(value)}))
    q = query("Observation", "_sort=-value-quantity&_count=1")
    seen: list[StoredResource] = []
    cursor = None
    while True:
        page = await repo.search(q, cursor)
        seen += page.matches
        cursor = page.next_cursor
        if cursor is None:
            break
        payload = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=="))
        payload[1][0] = "NaN"
        forged = base64.urlsafe_b64encode(msgspec.json.encode(payload)).decode()
        with pytest.raises(InvalidRequest):
            await repo.search(q, forged)
    got = [msgspec.json.decode(s.content)["valueQuantity"]["value"] for s in seen]
    assert got[:2] == [100, 72.5] and got[-1] == -3 and len(got) == len(values)


async def test_compartment_owner_is_in_its_own_compartment() -> None:
    """compartmentdefinition.html: the owner belongs to its compartment, also where the
    definition lists only a link parameter (Patient: ``link``)."""
    repo = MemoryRepository(definitions=DEFINITIONS)
    await repo.create("Patient", {"resourceType": "Patient"}, id="pa")
    linked = {
        "resourceType": "Patient",
        "link": [{"other": {"reference": "Patient/pa"}, "type": "seealso"}],
    }
    await repo.create("Patient", linked, id="pb")
    await repo.create("Patient", {"resourceType": "Patient"}, id="pc")
    page = await repo.search(query("Patient", "", compartment=("Patient", "pa")))
    assert {s.id for s in page.matches} == {"pa", "pb"}


async def test_system_level_search_sorts_across_types() -> None:
    repo = MemoryRepository(definitions=DEFINITIONS)
    await repo.create("Patient", {"resourceType": "Patient"}, id="p")
    await repo.create("Observation", obs("o"), id="o")
    await repo.create("Organization", {"resourceType": "Organization"}, id="g")
    page = await repo.search(query(None, "_sort=-_lastUpdated&_type=Patient,Organization"))
    assert [s.id for s in page.matches] == ["g", "p"]
