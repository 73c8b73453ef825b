"""Contract: ``_include`` and ``_revinclude`` on every backend.

Spec: https://hl7.org/fhir/R4/search.html#include: ``_include=Source:param[:Target]`` adds the
resources the page's matches (of type Source) refer to through ``param``; ``Source:*`` follows
every reference parameter; ``_revinclude=Source:param`` adds the resources of type Source that
refer to a match; ``:iterate`` applies an include to included resources too, until nothing new
is found. Agreed: only live resources are included, never one that is already a match, never
twice, at most MAX_INCLUDED per page (then ``included_truncated``).
"""

from __future__ import annotations

from healthbridge.store.repository import MAX_INCLUDED, Repository
from tests.store.search_fixtures import all_pages, included, parse, ref, resource, store

LOINC = "http://loinc.org"


def to(reference: str) -> dict[str, str]:
    return {"reference": reference}


def obs(id: str, code: str, **fields: object) -> dict[str, object]:
    coding = {"coding": [{"system": LOINC, "code": code}]}
    return resource("Observation", id, status="final", code=coding, **fields)


def provenance(id: str, *targets: str, agent: str | None = None) -> dict[str, object]:
    agents = [{"who": to(agent)}] if agent else [{"who": to("Organization/org")}]
    return resource(
        "Provenance",
        id,
        target=[to(t) for t in targets],
        recorded="2020-01-01T00:00:00Z",
        agent=agents,
    )


async def _world(repo: Repository) -> None:
    await store(
        repo,
        resource("Patient", "pa"),
        resource("Patient", "pb"),
        resource("Practitioner", "dr"),
        resource("Organization", "org"),
        obs(
            "o1",
            "A",
            subject=to("Patient/pa"),
            performer=[to("Practitioner/dr")],
            hasMember=[to("Observation/o3")],
        ),
        obs("o2", "A", subject=to("Patient/pb"), performer=[to("Organization/org")]),
        obs("o3", "B", subject=to("Patient/pa")),
        provenance("prov1", "Observation/o1", agent="Practitioner/dr"),
        provenance("prov2", "Observation/o3"),
        provenance("prov3", "Patient/pa"),
    )


async def _included(repo: Repository, resource_type: str, querystring: str) -> set[str]:
    found = await included(repo, resource_type, querystring)
    assert len(found) == len(set(found)), f"{querystring}: duplicates in {found}"
    return set(found)


async def test_include_targets_of_the_matches(repo: Repository) -> None:
    """search.html#include: ``_include=Observation:subject`` adds the matches' subjects, each
    once; ``:Practitioner`` keeps only targets of that type; ``Observation:*`` follows every
    reference parameter."""
    await _world(repo)
    cases = {
        "code=A&_include=Observation:subject": {"Patient/pa", "Patient/pb"},
        "code=A&_include=Observation:subject:Patient": {"Patient/pa", "Patient/pb"},
        "code=A&_include=Observation:subject:Group": set(),
        "code=A&_include=Observation:performer:Practitioner": {"Practitioner/dr"},
        "code=A&_include=Observation:performer": {"Practitioner/dr", "Organization/org"},
        "code=A&_include=Observation:*": {
            "Patient/pa",
            "Patient/pb",
            "Practitioner/dr",
            "Organization/org",
            "Observation/o3",
        },
        "_id=o1,o3&_include=Observation:subject": {"Patient/pa"},
        "code=A&_include=Observation:subject,Observation:performer": {
            "Patient/pa",
            "Patient/pb",
            "Practitioner/dr",
            "Organization/org",
        },
    }
    failures = {
        q: got
        for q, want in cases.items()
        if (got := await _included(repo, "Observation", q)) != want
    }
    assert failures == {}


async def test_include_never_repeats_a_match(repo: Repository) -> None:
    """search.html#include: a resource that is already a match is not also included."""
    await _world(repo)
    assert (
        await _included(repo, "Observation", "_id=o1,o3&_include=Observation:has-member") == set()
    )
    assert await _included(repo, "Observation", "_id=o1&_include=Observation:has-member") == {
        "Observation/o3"
    }


async def test_include_of_another_source_type_adds_nothing(repo: Repository) -> None:
    """search.html#include: the include's source type names the resources it applies to;
    ``Encounter:subject`` on an Observation search finds nothing to follow."""
    await _world(repo)
    assert await _included(repo, "Observation", "code=A&_include=Encounter:subject") == set()


async def test_revinclude_resources_referring_to_the_matches(repo: Repository) -> None:
    """search.html#include: ``_revinclude=Provenance:target`` adds the Provenance resources
    whose target is a match; ``Provenance:*`` any reference parameter of Provenance."""
    await _world(repo)
    assert await _included(repo, "Observation", "_id=o1,o3&_revinclude=Provenance:target") == {
        "Provenance/prov1",
        "Provenance/prov2",
    }
    assert await _included(repo, "Patient", "_revinclude=Provenance:target") == {"Provenance/prov3"}
    assert await _included(repo, "Practitioner", "_id=dr&_revinclude=Provenance:*") == {
        "Provenance/prov1"
    }
    assert await _included(repo, "Patient", "_id=pb&_revinclude=Observation:subject") == {
        "Observation/o2"
    }


async def test_iterate_follows_included_resources(repo: Repository) -> None:
    """search.html#include: ``_include:iterate`` applies to what other includes added;
    ``_revinclude:iterate`` also to the matches."""
    await _world(repo)
    assert await _included(
        repo,
        "Provenance",
        "_id=prov1&_include=Provenance:target&_include:iterate=Observation:subject",
    ) == {"Observation/o1", "Patient/pa"}
    assert await _included(
        repo,
        "Observation",
        "_id=o1&_include=Observation:subject&_revinclude:iterate=Provenance:target",
    ) == {"Patient/pa", "Provenance/prov1", "Provenance/prov3"}
    assert await _included(
        repo,
        "Provenance",
        "_id=prov1&_include=Provenance:target&_include:iterate=Observation:has-member"
        "&_include:iterate=Observation:subject",
    ) == {"Observation/o1", "Observation/o3", "Patient/pa"}


async def test_include_skips_deleted_resources(repo: Repository) -> None:
    """Agreed: only live resources are included (a deleted target or referrer is left out)."""
    await _world(repo)
    await repo.delete("Practitioner", "dr")
    await repo.delete("Provenance", "prov2")
    assert await _included(repo, "Observation", "code=A&_include=Observation:performer") == {
        "Organization/org"
    }
    assert await _included(repo, "Observation", "_id=o1,o3&_revinclude=Provenance:target") == {
        "Provenance/prov1"
    }


async def test_includes_belong_to_their_page(repo: Repository) -> None:
    """search.html#include: each page carries the includes of its own matches."""
    await _world(repo)
    subjects = {"o1": "Patient/pa", "o2": "Patient/pb"}
    pages = await all_pages(
        repo, parse("Observation", "code=A&_count=1&_include=Observation:subject")
    )
    assert [len(p.matches) for p in pages] == [1, 1]
    for page in pages:
        assert [ref(s) for s in page.included] == [subjects[page.matches[0].id]]


async def test_included_resources_are_capped(repo: Repository) -> None:
    """Agreed: at most MAX_INCLUDED resources are included per page, and the page says so."""
    await store(repo, resource("Patient", "pa"))
    async with repo.transaction() as tx:
        for i in range(MAX_INCLUDED + 1):
            await tx.create("Observation", obs(f"o{i}", "A", subject=to("Patient/pa")), id=f"o{i}")
    page = await repo.search(parse("Patient", "_id=pa&_revinclude=Observation:subject"))
    assert [s.id for s in page.matches] == ["pa"]
    assert len(page.included) == MAX_INCLUDED
    assert len({s.id for s in page.included}) == MAX_INCLUDED
    assert page.included_truncated is True
    small = await repo.search(parse("Observation", "_id=o1&_include=Observation:subject"))
    assert small.included_truncated is False


async def test_iterate_stops_on_cycles_and_long_chains(repo: Repository) -> None:
    """search.html#include: ``:iterate`` repeats until nothing new is found; a cycle ends it,
    and a long chain is cut at the agreed depth (4) rather than followed forever."""

    def member(id: str, *members: str) -> dict[str, object]:
        return obs(id, "M", hasMember=[to(f"Observation/{m}") for m in members])

    await store(
        repo,
        member("c1", "c2"),
        member("c2", "c3"),
        member("c3", "c1"),
        *(member(f"d{i}", f"d{i + 1}") for i in range(1, 9)),
        member("d9"),
    )
    cycle = await _included(repo, "Observation", "_id=c1&_include:iterate=Observation:has-member")
    assert cycle == {"Observation/c2", "Observation/c3"}
    chain = await _included(repo, "Observation", "_id=d1&_include:iterate=Observation:has-member")
    assert chain == {f"Observation/d{i}" for i in range(2, 6)}  # four rounds from the match
