"""Helpers for the search contract suite (https://hl7.org/fhir/R4/search.html).

The contract tests build small hand-made resource sets and write the expected ids out by hand;
nothing here computes an expectation (in particular nothing calls ``fhir.search.match``), so the
suite is an independent check of every backend's ``Repository.search``.

Queries are written as they appear in a URL, without percent-decoding (``%`` stays literal):
``"birthdate=ge2020&name=Müller"``; each ``&``-separated part is one ``(name, value)`` pair.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.store.repository import Repository, SearchPage, StoredResource

DEFINITIONS = load_definitions()
PARSER = SearchParser(DEFINITIONS)
MAX_PAGES = 200

Case = tuple[str, Iterable[str]]
"""A query string and the ids (``Type/id`` at system level) it must match."""


def pairs(querystring: str) -> list[tuple[str, str]]:
    """``"a=1&b=2"`` -> ``[("a", "1"), ("b", "2")]``; no percent-decoding."""
    out: list[tuple[str, str]] = []
    for part in querystring.split("&") if querystring else ():
        name, _, value = part.partition("=")
        out.append((name, value))
    return out


def parse(
    resource_type: str | None,
    querystring: str = "",
    *,
    compartment: tuple[str, str] | None = None,
) -> SearchQuery:
    """The parsed query; ``compartment`` makes it a compartment search
    (search.html#compartments: ``Patient/123/Observation?...``)."""
    query = PARSER.parse(resource_type, pairs(querystring))
    return dataclasses.replace(query, compartment=compartment)


def resource(resource_type: str, id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": resource_type, "id": id, **fields}


def person(id: str, families: tuple[str, ...] = (), birth: str | None = None) -> dict[str, Any]:
    """A Patient with one name per family and an optional birthDate."""
    fields: dict[str, Any] = {}
    if families:
        fields["name"] = [{"family": family} for family in families]
    if birth:
        fields["birthDate"] = birth
    return resource("Patient", id, **fields)


async def store(repo: Repository, *resources: dict[str, Any]) -> list[StoredResource]:
    """Create each resource under its own id, in order."""
    return [await repo.create(r["resourceType"], r, id=r["id"]) for r in resources]


def ref(stored: StoredResource) -> str:
    return f"{stored.resource_type}/{stored.id}"


def label(stored: StoredResource, system_level: bool) -> str:
    return ref(stored) if system_level else stored.id


async def all_pages(
    repo: Repository, query: SearchQuery, cursor: str | None = None
) -> list[SearchPage]:
    """Every page of ``query``, following ``next_cursor``."""
    pages = [await repo.search(query, cursor)]
    while pages[-1].next_cursor is not None:
        assert len(pages) < MAX_PAGES, "next_cursor never ends"
        pages.append(await repo.search(query, pages[-1].next_cursor))
    return pages


async def ids(repo: Repository, resource_type: str | None, querystring: str = "") -> list[str]:
    """The matches of every page, in result order (``Type/id`` at system level)."""
    query = parse(resource_type, querystring)
    pages = await all_pages(repo, query)
    return [label(s, resource_type is None) for page in pages for s in page.matches]


async def included(repo: Repository, resource_type: str, querystring: str) -> list[str]:
    """``Type/id`` of the included resources of every page."""
    pages = await all_pages(repo, parse(resource_type, querystring))
    return [ref(s) for page in pages for s in page.included]


async def expect_matches(
    repo: Repository, resource_type: str | None, cases: Sequence[Case]
) -> None:
    """Run every case and report all mismatches together (query, got, wanted)."""
    mismatches: list[str] = []
    for querystring, wanted in cases:
        try:
            got = await ids(repo, resource_type, querystring)
        except (FhirError, NotImplementedError, AttributeError, TypeError, ValueError) as exc:
            mismatches.append(f"{querystring}: raised {type(exc).__name__}: {exc}")
            continue
        if len(got) != len(set(got)):
            mismatches.append(f"{querystring}: duplicates in {got}")
        if set(got) != set(wanted):
            mismatches.append(f"{querystring}: got {sorted(got)}, wanted {sorted(wanted)}")
    assert mismatches == [], "\n".join(mismatches)
