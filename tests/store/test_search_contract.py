"""Contract: what every search sees, and the Resource-level parameters, on every backend.

Spec: https://hl7.org/fhir/R4/search.html: searches see the current version of live resources
only (#return: "the set of resources that match", http.html#delete), ``_id``, ``_lastUpdated``,
``_tag``, ``_profile``, ``_security``, ``_source`` (#all), system-level search with ``_type``
(#all), and unsupported modifiers (#modifiers: "Servers SHALL reject any search request that
contains a search parameter with an unsupported modifier"). The other contract modules cover the
parameter types (scalars, text), references, includes and results. Expected ids are written out
by hand.
"""

from __future__ import annotations

import pytest

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.store.repository import Repository
from tests.store.search_fixtures import PARSER, expect_matches, ids, pairs, parse, resource, store
from tests.support.clock import FakeClock


def patient(id: str, family: str, **fields: object) -> dict[str, object]:
    return resource("Patient", id, name=[{"family": family}], **fields)


def test_parsed_query_has_no_compartment() -> None:
    """search.html#compartments: a parsed type-level query is not a compartment search, and
    ignored parameters are listed in ``unknown`` (a regression: they once landed in
    ``compartment``)."""
    query = PARSER.parse("Patient", pairs("name=x&not-a-parameter=1"))
    assert query.compartment is None
    assert query.unknown == ("not-a-parameter",)


async def test_deleted_resources_never_match(repo: Repository) -> None:
    """http.html#delete: a deleted resource is not found by search, by any parameter, and a
    resource created again after a delete matches its new content."""
    await store(repo, patient("gone", "Smith", gender="male"), patient("kept", "Smith"))
    await repo.delete("Patient", "gone")
    await expect_matches(
        repo,
        "Patient",
        [
            ("family=smith", {"kept"}),
            ("_id=gone", set()),
            ("gender=male", set()),
            ("gender:missing=true", {"kept"}),
            ("gender:not=female", {"kept"}),
            ("", {"kept"}),
        ],
    )
    assert await ids(repo, None, "_type=Patient") == ["Patient/kept"]
    await repo.update("Patient", "gone", patient("gone", "Jones"))
    await expect_matches(repo, "Patient", [("family=smith", {"kept"}), ("family=jones", {"gone"})])


async def test_updated_resource_matches_its_new_values_only(repo: Repository) -> None:
    """http.html#update: search sees the current version; old versions' values never match."""
    await store(repo, patient("p", "Alpha", gender="male", birthDate="1990"))
    await repo.update("Patient", "p", patient("p", "Beta", birthDate="2000"))
    await expect_matches(
        repo,
        "Patient",
        [
            ("family=alpha", set()),
            ("family=beta", {"p"}),
            ("gender=male", set()),
            ("gender:missing=true", {"p"}),
            ("birthdate=1990", set()),
            ("birthdate=2000", {"p"}),
        ],
    )


async def test_empty_search_returns_every_live_resource_of_the_type(repo: Repository) -> None:
    """search.html#return: no criteria match every resource of the type, and only that type."""
    await store(repo, patient("p1", "A"), patient("p2", "B"), resource("Organization", "o1"))
    await expect_matches(repo, "Patient", [("", {"p1", "p2"})])
    await expect_matches(repo, "Organization", [("", {"o1"})])
    await expect_matches(repo, "Practitioner", [("", set())])


async def test_clauses_and_values_combine(repo: Repository) -> None:
    """search.html#combining: different parameters AND, comma values OR, repeats AND."""
    await store(
        repo,
        patient("a", "Smith", gender="female", birthDate="1990"),
        patient("b", "Smith", gender="male", birthDate="1980"),
        patient("c", "Jones", gender="female", birthDate="1980"),
    )
    await expect_matches(
        repo,
        "Patient",
        [
            ("family=smith&gender=female", {"a"}),
            ("family=smith,jones&gender=female", {"a", "c"}),
            ("family=smith&family=jones", set()),
            ("gender=female&birthdate=1980", {"c"}),
            ("gender=female,male&birthdate=ge1985&family=smith", {"a"}),
        ],
    )


async def test_id(repo: Repository) -> None:
    """search.html#all: ``_id`` matches the logical id exactly (case-sensitive), OR values."""
    await store(repo, patient("a1", "X"), patient("A1", "X"), patient("b2", "X"))
    await expect_matches(
        repo,
        "Patient",
        [
            ("_id=a1", {"a1"}),
            ("_id=A1", {"A1"}),
            ("_id=a1,b2", {"a1", "b2"}),
            ("_id=a", set()),
            ("_id=a1&family=x", {"a1"}),
            ("_id=a1&_id=b2", set()),
            ("_id:not=a1", {"A1", "b2"}),
            ("_id:not=a1,b2&family=x", {"A1"}),
        ],
    )


async def test_last_updated(repo: Repository, clock: FakeClock) -> None:
    """search.html#all: ``_lastUpdated`` is a date search on meta.lastUpdated (the server's
    instant, to the microsecond); an update moves it."""
    await store(repo, patient("first", "X"))  # 2026-01-01T12:00:00Z
    clock.advance(hours=1)
    await store(repo, patient("second", "X"))  # 13:00
    clock.advance(days=1)
    await store(repo, patient("third", "X"))  # 2026-01-02T13:00
    await expect_matches(
        repo,
        "Patient",
        [
            ("_lastUpdated=2026-01-01", {"first", "second"}),
            ("_lastUpdated=2026-01-01T12:00:00Z", {"first"}),
            ("_lastUpdated=2026-01-01T14:00:00+01:00", {"second"}),
            ("_lastUpdated=ge2026-01-01T13:00:00Z", {"second", "third"}),
            ("_lastUpdated=gt2026-01-01T12:00:00Z", {"second", "third"}),
            ("_lastUpdated=lt2026-01-01T13:00:00Z", {"first"}),
            ("_lastUpdated=le2026-01-01T13:00:00Z", {"first", "second"}),
            ("_lastUpdated=sa2026-01-01", {"third"}),
            ("_lastUpdated=eb2026-01-02", {"first", "second"}),
            ("_lastUpdated=ne2026-01-01", {"third"}),
            ("_lastUpdated=2025", set()),
        ],
    )
    clock.advance(days=30)
    await repo.update("Patient", "first", patient("first", "X"))
    await expect_matches(
        repo,
        "Patient",
        [("_lastUpdated=2026-01-01", {"second"}), ("_lastUpdated=2026-02", {"first"})],
    )


async def test_meta_tag_security_profile_source(repo: Repository) -> None:
    """search.html#all: ``_tag`` and ``_security`` are tokens on meta.tag/meta.security,
    ``_profile`` and ``_source`` uris on meta.profile/meta.source."""
    await store(
        repo,
        patient(
            "tagged",
            "X",
            meta={
                "tag": [
                    {"system": "http://tags", "code": "t1"},
                    {"system": "http://tags", "code": "t2"},
                ],
                "security": [{"system": "http://sec", "code": "R"}],
                "profile": ["http://example.org/StructureDefinition/p1"],
                "source": "http://source.example/a#1",
            },
        ),
        patient(
            "other",
            "X",
            meta={
                "tag": [{"code": "t1"}],
                "profile": ["http://example.org/StructureDefinition/p10"],
                "source": "http://source.example/b",
            },
        ),
        patient("plain", "X"),
    )
    await expect_matches(
        repo,
        "Patient",
        [
            ("_tag=t1", {"tagged", "other"}),
            ("_tag=http://tags|t1", {"tagged"}),
            ("_tag=|t1", {"other"}),
            ("_tag=http://tags|t1&_tag=http://tags|t2", {"tagged"}),
            ("_tag:not=t2", {"other", "plain"}),
            ("_tag:missing=true", {"plain"}),
            ("_security=http://sec|R", {"tagged"}),
            ("_security:missing=false", {"tagged"}),
            ("_profile=http://example.org/StructureDefinition/p1", {"tagged"}),
            ("_profile:below=http://example.org/StructureDefinition/p1", {"tagged", "other"}),
            ("_source=http://source.example/a#1", {"tagged"}),
            ("_source=http://source.example/a", set()),
            ("_source:below=http://source.example/", {"tagged", "other"}),
        ],
    )


async def test_system_level_search_with_type(repo: Repository) -> None:
    """search.html#all: a search across all types, narrowed by ``_type``; common parameters
    (``_id``, ``_tag``, ``_lastUpdated``) apply to every type."""
    tag = {"tag": [{"system": "http://tags", "code": "x"}]}
    await store(
        repo,
        patient("p1", "X", meta=tag),
        patient("p2", "X"),
        resource("Organization", "o1", meta=tag),
        resource("Practitioner", "p1", meta=tag),
    )
    await expect_matches(
        repo,
        None,
        [
            ("", {"Patient/p1", "Patient/p2", "Organization/o1", "Practitioner/p1"}),
            ("_type=Patient", {"Patient/p1", "Patient/p2"}),
            ("_type=Patient,Organization", {"Patient/p1", "Patient/p2", "Organization/o1"}),
            ("_tag=x", {"Patient/p1", "Organization/o1", "Practitioner/p1"}),
            ("_type=Patient,Practitioner&_tag=http://tags|x", {"Patient/p1", "Practitioner/p1"}),
            ("_id=p1", {"Patient/p1", "Practitioner/p1"}),
            ("_type=Observation", set()),
        ],
    )


async def test_terminology_modifiers_are_not_supported_yet(repo: Repository) -> None:
    """search.html#modifiers: token ``:above``/``:below``/``:in``/``:not-in`` need the
    terminology service; until it exists the server rejects them (not-supported, 400) naming
    the parameter, rather than answering wrongly."""
    await store(repo, resource("Observation", "o", status="final", code={"text": "x"}))
    for modifier in ("above", "below", "in", "not-in"):
        value = (
            "http://hl7.org/fhir/ValueSet/x" if modifier.endswith("in") else "http://loinc.org|1"
        )
        with pytest.raises(InvalidRequest) as caught:
            await repo.search(parse("Observation", f"code:{modifier}={value}"))
        issue = caught.value.issues[0]
        assert issue.code == "not-supported", modifier
        assert issue.expression in (("code",), (f"code:{modifier}",)), modifier
