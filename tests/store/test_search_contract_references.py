"""Contract: reference search, chains, reverse chains (``_has``) and compartments, every backend.

Spec: https://hl7.org/fhir/R4/search.html#reference (``Type/id``, a bare id for any target type,
``:[type]``, absolute URLs, ``:identifier``), #chaining, #has and
https://hl7.org/fhir/R4/compartmentdefinition.html (search.html#compartments). A chain or
``_has`` only follows references to live resources of the named type. Expected ids are written
out by hand.
"""

from __future__ import annotations

import dataclasses

import pytest

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.store.repository import Repository
from tests.store.search_fixtures import expect_matches, ids, parse, resource, store

LOINC = "http://loinc.org"


def obs(id: str, code: str = "1234-5", **fields: object) -> dict[str, object]:
    coding = {"coding": [{"system": LOINC, "code": code}]}
    return resource("Observation", id, status="final", code=coding, **fields)


def to(reference: str) -> dict[str, str]:
    return {"reference": reference}


async def _subjects(repo: Repository) -> None:
    await store(
        repo,
        resource("Patient", "pa"),
        resource("Patient", "pb"),
        resource("Group", "ga", type="person", actual=True),
        resource("Group", "pa", type="person", actual=True),
        obs("to-pa", subject=to("Patient/pa")),
        obs("to-pb", subject=to("Patient/pb")),
        obs("to-ga", subject=to("Group/ga")),
        obs("to-group-pa", subject=to("Group/pa")),
        obs("absolute", subject=to("http://other.example/fhir/Patient/pa")),
        obs("versioned", subject=to("Patient/pa/_history/2")),
        obs("identifier", subject={"identifier": {"system": "http://mrn", "value": "123"}}),
        obs("urn", subject=to("urn:uuid:0c3a1e3e-2b4c-4a53-9b6e-0d9bd4a0a6f1")),
        obs("none"),
    )


async def test_reference_type_and_id(repo: Repository) -> None:
    """search.html#reference: ``Type/id``; a bare id means that id in any of the parameter's
    target types; ``:Type`` narrows it. A versioned reference and an absolute URL ending in
    ``Patient/pa`` refer to Patient pa (the agreed reading)."""
    await _subjects(repo)
    pa = {"to-pa", "absolute", "versioned"}
    await expect_matches(
        repo,
        "Observation",
        [
            ("subject=Patient/pa", pa),
            ("subject=pa", pa | {"to-group-pa"}),
            ("subject:Patient=pa", pa),
            ("subject:Group=pa", {"to-group-pa"}),
            ("subject:Group=ga", {"to-ga"}),
            ("subject=Group/ga", {"to-ga"}),
            ("patient=pa", pa),
            ("patient=Patient/pb", {"to-pb"}),
            ("subject=Patient/pa,Group/ga", pa | {"to-ga"}),
            ("subject=Patient/nobody", set()),
        ],
    )


async def test_reference_urls_identifiers_and_missing(repo: Repository) -> None:
    """search.html#reference: an absolute URL, a ``urn:uuid:`` and ``:identifier``
    (Reference.identifier); ``:missing`` is about the element."""
    await _subjects(repo)
    await expect_matches(
        repo,
        "Observation",
        [
            ("subject=http://other.example/fhir/Patient/pa", {"to-pa", "absolute", "versioned"}),
            ("subject=urn:uuid:0c3a1e3e-2b4c-4a53-9b6e-0d9bd4a0a6f1", {"urn"}),
            ("subject:identifier=http://mrn|123", {"identifier"}),
            ("subject:identifier=123", {"identifier"}),
            ("subject:identifier=http://mrn|124", set()),
            ("subject:missing=true", {"none"}),
        ],
    )


# -- chains --------------------------------------------------------------------------------


async def _chain_world(repo: Repository) -> None:
    await store(
        repo,
        resource("Organization", "acme", name="Acme Health"),
        resource("Organization", "other", name="Other Care"),
        resource("Practitioner", "dr", name=[{"family": "Carter"}]),
        resource(
            "Patient",
            "alice",
            name=[{"family": "Alice"}],
            gender="female",
            managingOrganization=to("Organization/acme"),
            generalPractitioner=[to("Practitioner/dr")],
        ),
        resource(
            "Patient",
            "bob",
            name=[{"family": "Bob"}],
            gender="male",
            managingOrganization=to("Organization/other"),
        ),
        resource("Patient", "carol", name=[{"family": "Carol"}]),
        resource("Group", "alice-group", type="person", actual=True),
        resource(
            "Encounter",
            "e-alice",
            status="finished",
            subject=to("Patient/alice"),
            **{"class": {"code": "AMB"}},
        ),
        obs("o-alice", subject=to("Patient/alice")),
        obs("o-bob", subject=to("Patient/bob")),
        obs("o-group", subject=to("Group/alice-group")),
        obs("o-dangling", subject=to("Patient/ghost")),
        obs("o-carol", subject=to("Patient/carol")),
        obs("o-encounter", subject=to("Patient/bob"), encounter=to("Encounter/e-alice")),
    )


async def test_chain_one_two_and_three_links(repo: Repository) -> None:
    """search.html#chaining: ``subject:Patient.name=x`` follows subject to Patients named x,
    and chains nest (``subject:Patient.organization.name``); a dangling reference matches
    nothing."""
    await _chain_world(repo)
    await expect_matches(
        repo,
        "Observation",
        [
            ("subject:Patient.name=alice", {"o-alice"}),
            ("subject:Patient.gender=male", {"o-bob", "o-encounter"}),
            ("subject:Patient.name=alice,bob", {"o-alice", "o-bob", "o-encounter"}),
            ("subject:Patient.organization.name=acme", {"o-alice"}),
            ("subject:Patient.general-practitioner:Practitioner.name=carter", {"o-alice"}),
            ("encounter:Encounter.subject:Patient.organization.name=acme", {"o-encounter"}),
            ("subject:Patient.name=ghost", set()),
            ("subject:Patient.name=alice&subject:Patient.gender=female", {"o-alice"}),
            ("subject:Patient.name=alice&subject:Patient.gender=male", set()),
        ],
    )


async def test_chain_modifiers_apply_at_the_end_of_the_chain(repo: Repository) -> None:
    """search.html#chaining: the modifier belongs to the last link: ``subject:Patient.gender:not=
    male`` is "the subject is a Patient whose gender is not male", not "not (the subject is a
    male Patient)", so a Group subject or a dangling reference does not match."""
    await _chain_world(repo)
    await expect_matches(
        repo,
        "Observation",
        [
            ("subject:Patient.gender:not=male", {"o-alice", "o-carol"}),
            ("subject:Patient.gender:missing=true", {"o-carol"}),
            ("subject:Patient.organization:missing=true", {"o-carol"}),
            ("subject:Patient.name:exact=Alice", {"o-alice"}),
            ("subject:Patient.name:contains=LI", {"o-alice"}),
        ],
    )


async def test_chain_without_a_type_uses_the_single_target(repo: Repository) -> None:
    """search.html#chaining: the type may be left out when the parameter has one target type
    (``organization.name``); with several targets it must be named, else the request is
    invalid."""
    await _chain_world(repo)
    await expect_matches(repo, "Patient", [("organization.name=acme", {"alice"})])
    with pytest.raises(InvalidRequest):
        parse("Observation", "subject.name=alice")


async def test_chain_follows_live_targets_only(repo: Repository) -> None:
    """search.html#chaining: the chained resource must exist; after Organization acme is
    deleted, nothing reaches it through the chain, and an update changes what matches."""
    await _chain_world(repo)
    await repo.delete("Organization", "acme")
    await repo.update(
        "Patient",
        "bob",
        resource(
            "Patient",
            "bob",
            name=[{"family": "Robert"}],
            managingOrganization=to("Organization/other"),
        ),
    )
    await expect_matches(
        repo,
        "Observation",
        [
            ("subject:Patient.organization.name=acme", set()),
            ("subject:Patient.name=bob", set()),
            ("subject:Patient.name=robert", {"o-bob", "o-encounter"}),
        ],
    )


# -- _has ----------------------------------------------------------------------------------


async def _has_world(repo: Repository) -> None:
    await store(
        repo,
        resource("Patient", "pa"),
        resource("Patient", "pb"),
        resource("Patient", "pc"),
        resource("Practitioner", "dr"),
        obs("o-pa", "1234-5", subject=to("Patient/pa")),
        obs("o-pb", "9999-9", subject=to("Patient/pb")),
        obs("o-pb2", "1234-5", subject=to("Patient/pb")),
        resource(
            "Provenance",
            "prov",
            target=[to("Observation/o-pa")],
            recorded="2020-01-01T00:00:00Z",
            agent=[{"who": to("Practitioner/dr")}],
        ),
    )


async def test_has_finds_resources_referred_to_by_matching_resources(repo: Repository) -> None:
    """search.html#has: ``Patient?_has:Observation:patient:code=x`` finds patients that an
    Observation with code x refers to through ``patient``."""
    await _has_world(repo)
    await expect_matches(
        repo,
        "Patient",
        [
            ("_has:Observation:patient:code=1234-5", {"pa", "pb"}),
            ("_has:Observation:patient:code=9999-9", {"pb"}),
            ("_has:Observation:subject:code=9999-9,0000-0", {"pb"}),
            ("_has:Observation:patient:code=1234-5&_has:Observation:patient:code=9999-9", {"pb"}),
            ("_has:Observation:patient:code=0000-0", set()),
            ("_has:Observation:patient:code:missing=false", {"pa", "pb"}),
            ("_has:Observation:patient:code:not=1234-5", {"pb"}),
        ],
    )


async def test_has_nests(repo: Repository) -> None:
    """search.html#has: ``_has`` nests: patients with an Observation that a Provenance by
    Practitioner dr targets."""
    await _has_world(repo)
    await expect_matches(
        repo,
        "Patient",
        [
            ("_has:Observation:patient:_has:Provenance:target:agent=Practitioner/dr", {"pa"}),
            ("_has:Observation:patient:_has:Provenance:target:agent=Practitioner/x", set()),
        ],
    )


async def test_has_ignores_deleted_referrers(repo: Repository) -> None:
    """search.html#has: only current, live resources refer: deleting o-pa removes pa."""
    await _has_world(repo)
    await repo.delete("Observation", "o-pa")
    await expect_matches(repo, "Patient", [("_has:Observation:patient:code=1234-5", {"pb"})])


# -- compartments --------------------------------------------------------------------------


async def _compartment_world(repo: Repository) -> None:
    await store(
        repo,
        resource("Patient", "pa"),
        resource("Patient", "pb", link=[{"other": to("Patient/pa"), "type": "seealso"}]),
        resource(
            "Encounter",
            "e1",
            status="finished",
            subject=to("Patient/pa"),
            **{"class": {"code": "AMB"}},
        ),
        obs("subject-pa", "1234-5", subject=to("Patient/pa")),
        obs("performer-pa", "9999-9", subject=to("Patient/pb"), performer=[to("Patient/pa")]),
        obs("subject-pb", "1234-5", subject=to("Patient/pb")),
        obs("in-e1", "1234-5", subject=to("Patient/pb"), encounter=to("Encounter/e1")),
    )


async def _compartment_ids(
    repo: Repository, owner: tuple[str, str], resource_type: str, querystring: str = ""
) -> set[str]:
    query = parse(resource_type, querystring, compartment=owner)
    page = await repo.search(query)
    assert page.next_cursor is None
    return {s.id for s in page.matches}


async def test_patient_compartment(repo: Repository) -> None:
    """compartmentdefinition-patient.html: an Observation is in Patient pa's compartment when
    its subject or performer refers to pa; other criteria still apply."""
    await _compartment_world(repo)
    owner = ("Patient", "pa")
    assert await _compartment_ids(repo, owner, "Observation") == {"subject-pa", "performer-pa"}
    assert await _compartment_ids(repo, owner, "Observation", "code=1234-5") == {"subject-pa"}
    assert await _compartment_ids(repo, owner, "Encounter") == {"e1"}
    assert await _compartment_ids(repo, owner, "Patient") >= {"pb"}
    assert await _compartment_ids(repo, ("Patient", "nobody"), "Observation") == set()


async def test_encounter_compartment_includes_the_encounter_itself(repo: Repository) -> None:
    """compartmentdefinition-encounter.html: ``{def}``: the Encounter itself is in its own
    compartment, as are Observations whose encounter is e1."""
    await _compartment_world(repo)
    owner = ("Encounter", "e1")
    assert await _compartment_ids(repo, owner, "Encounter") == {"e1"}
    assert await _compartment_ids(repo, owner, "Observation") == {"in-e1"}


async def test_compartment_of_a_deleted_member(repo: Repository) -> None:
    """search.html#compartments: deleted resources leave the compartment."""
    await _compartment_world(repo)
    await repo.delete("Observation", "subject-pa")
    owner = ("Patient", "pa")
    assert await _compartment_ids(repo, owner, "Observation") == {"performer-pa"}
    assert await ids(repo, "Observation", "subject=Patient/pa") == []


async def _within_ids(
    repo: Repository,
    within: tuple[str, frozenset[str]],
    resource_type: str | None,
    querystring: str = "",
    compartment: tuple[str, str] | None = None,
) -> set[str]:
    query = dataclasses.replace(
        parse(resource_type, querystring, compartment=compartment), within=within
    )
    page = await repo.search(query)
    assert page.next_cursor is None
    return {f"{s.resource_type}/{s.id}" for s in page.matches}


async def test_within_several_compartments(repo: Repository) -> None:
    """``SearchQuery.within`` (access control's confinement to a set of patients): members of
    the compartment of any of the owners (an OR over them), ANDed with the rest, a named
    compartment included; no owners, no results."""
    await _compartment_world(repo)
    await store(repo, resource("Patient", "pc"), obs("subject-pc", subject=to("Patient/pc")))
    both = ("Patient", frozenset({"pa", "pc"}))
    assert await _within_ids(repo, both, "Observation") == {
        "Observation/subject-pa",
        "Observation/performer-pa",
        "Observation/subject-pc",
    }
    assert await _within_ids(repo, both, "Observation", "code=1234-5") == {
        "Observation/subject-pa",
        "Observation/subject-pc",
    }
    assert await _within_ids(repo, both, "Patient") == {"Patient/pa", "Patient/pb", "Patient/pc"}
    assert await _within_ids(repo, ("Patient", frozenset({"pc"})), "Patient") == {"Patient/pc"}
    assert await _within_ids(repo, ("Patient", frozenset()), "Observation") == set()
    assert await _within_ids(repo, ("Patient", frozenset()), "Patient") == set()
    every = await _within_ids(repo, both, None, "_type=Observation,Encounter")
    assert every == {
        "Observation/subject-pa",
        "Observation/performer-pa",
        "Observation/subject-pc",
        "Encounter/e1",
    }
    in_e1 = await _within_ids(repo, both, "Observation", compartment=("Encounter", "e1"))
    assert in_e1 == set()  # in-e1 is pb's, and pb is not among the owners
    pb = ("Patient", frozenset({"pb"}))
    in_e1 = await _within_ids(repo, pb, "Observation", compartment=("Encounter", "e1"))
    assert in_e1 == {"Observation/in-e1"}
