"""Contract: ``_sort`` on every backend.

Spec: https://hl7.org/fhir/R4/search.html#sort (several keys, ``-`` for descending). Agreed
semantics (repository.py and the search brief): per key, a resource sorts by its lowest value
ascending and its highest value descending (dates: lowest start, highest end); resources without
a value come last in both directions; ties, and searches without ``_sort``, go by ascending
``resource_key(type, id)``.
"""

from __future__ import annotations

from decimal import Decimal

from healthbridge.store.keys import resource_key
from healthbridge.store.repository import Repository
from tests.store.search_fixtures import ids, person, resource, store
from tests.support.clock import FakeClock


def by_key(resource_type: str, *names: str) -> list[str]:
    """Ties in the agreed order: ascending resource_key."""
    return sorted(names, key=lambda id: resource_key(resource_type, id))


async def _sortable(repo: Repository) -> None:
    await store(
        repo,
        person("a", ("Zeta",), "1990"),
        person("b", ("alpha",), "1980-05"),
        person("c", ("Beta",)),
        person("d", (), "1970"),
        person("e", ("Omega", "Delta")),
        person("f", ("Beta",), "1980-05"),
        person("g", ("Émile",)),
    )


async def test_sort_by_string_lowest_ascending_highest_descending(repo: Repository) -> None:
    """search.html#sort: ``_sort=family`` ascending by each resource's lowest (normalized)
    family, ``-family`` descending by its highest; no family sorts last; ties by key."""
    await _sortable(repo)
    beta = by_key("Patient", "c", "f")
    assert await ids(repo, "Patient", "_sort=family") == ["b", *beta, "e", "g", "a", "d"]
    assert await ids(repo, "Patient", "_sort=-family") == ["a", "e", "g", *beta, "b", "d"]


async def test_sort_strings_by_code_point_of_the_normalized_form(repo: Repository) -> None:
    """Agreed semantics for search.html#sort: strings sort by their normalized form (case and
    accents folded), code point by code point, the same on every backend (no locale collation:
    a space sorts before ``-``, which sorts before letters)."""
    families = {"s1": "ab", "s2": "a-c", "s3": "a c", "s4": "aa", "s5": "Ä b", "s6": "z", "s7": "É"}
    await store(repo, *(person(id, (family,)) for id, family in families.items()))
    assert await ids(repo, "Patient", "_sort=family") == ["s5", "s3", "s2", "s4", "s1", "s7", "s6"]
    assert await ids(repo, "Patient", "_sort=-family") == ["s6", "s7", "s1", "s4", "s2", "s3", "s5"]


async def test_sort_follows_updates(repo: Repository) -> None:
    """search.html#sort: a resource sorts by its current values."""
    await _sortable(repo)
    await repo.update("Patient", "b", person("b", ("Zz",), "1980-05"))
    await repo.delete("Patient", "a")
    beta = by_key("Patient", "c", "f")
    assert await ids(repo, "Patient", "_sort=family") == [*beta, "e", "g", "b", "d"]


async def test_sort_by_date(repo: Repository) -> None:
    """search.html#sort: dates sort by start ascending and by end descending; missing last."""
    await _sortable(repo)
    may, missing = by_key("Patient", "b", "f"), by_key("Patient", "c", "e", "g")
    assert await ids(repo, "Patient", "_sort=birthdate") == ["d", *may, "a", *missing]
    assert await ids(repo, "Patient", "_sort=-birthdate") == ["a", *may, "d", *missing]


async def test_sort_by_several_keys(repo: Repository) -> None:
    """search.html#sort: later keys order the ties of earlier ones, each in its own direction."""
    await _sortable(repo)
    assert await ids(repo, "Patient", "_sort=birthdate,-family") == [
        "d",
        "f",
        "b",
        "a",
        "e",
        "g",
        "c",
    ]
    assert await ids(repo, "Patient", "_sort=-birthdate,family") == [
        "a",
        "b",
        "f",
        "d",
        "c",
        "e",
        "g",
    ]


async def test_sort_by_id_and_last_updated(repo: Repository, clock: FakeClock) -> None:
    """search.html#sort: ``_id`` and ``_lastUpdated`` sort like any parameter; an update
    moves a resource to its new lastUpdated."""
    for id in ("m", "k", "z", "a"):
        clock.advance(seconds=1)
        await store(repo, person(id))
    clock.advance(seconds=1)
    await repo.update("Patient", "k", person("k", ("Changed",)))
    assert await ids(repo, "Patient", "_sort=_id") == ["a", "k", "m", "z"]
    assert await ids(repo, "Patient", "_sort=-_id") == ["z", "m", "k", "a"]
    assert await ids(repo, "Patient", "_sort=_lastUpdated") == ["m", "z", "a", "k"]
    assert await ids(repo, "Patient", "_sort=-_lastUpdated") == ["k", "a", "z", "m"]


async def test_sort_by_token_quantity_and_period(repo: Repository) -> None:
    """search.html#sort: tokens by code, quantities by value, Periods by start ascending and
    end descending."""
    await store(
        repo,
        resource("Patient", "female", gender="female"),
        resource("Patient", "male", gender="male"),
        resource("Patient", "other", gender="other"),
        resource("Patient", "unknown"),
    )
    assert await ids(repo, "Patient", "_sort=gender") == ["female", "male", "other", "unknown"]
    assert await ids(repo, "Patient", "_sort=-gender") == ["other", "male", "female", "unknown"]

    def obs(id: str, **fields: object) -> dict[str, object]:
        return resource("Observation", id, status="final", code={"text": "x"}, **fields)

    await store(
        repo,
        obs("q5", valueQuantity={"value": Decimal("5")}, effectiveDateTime="2020-06-01"),
        obs(
            "q1",
            valueQuantity={"value": Decimal("1")},
            effectivePeriod={"start": "2020-01-01", "end": "2020-12-31"},
        ),
        obs(
            "q3",
            valueQuantity={"value": Decimal("3")},
            effectivePeriod={"start": "2019-06-01", "end": "2021-01-01"},
        ),
        obs("none"),
    )
    assert await ids(repo, "Observation", "_sort=value-quantity") == ["q1", "q3", "q5", "none"]
    assert await ids(repo, "Observation", "_sort=-value-quantity") == ["q5", "q3", "q1", "none"]
    assert await ids(repo, "Observation", "_sort=date") == ["q3", "q1", "q5", "none"]
    assert await ids(repo, "Observation", "_sort=-date") == ["q3", "q1", "q5", "none"]


async def test_default_order_is_ascending_resource_key(repo: Repository) -> None:
    """Agreed semantics: without ``_sort`` results come in ascending resource_key order."""
    names = [f"p{i:02}" for i in range(12)]
    await store(repo, *(person(id) for id in names))
    assert await ids(repo, "Patient") == by_key("Patient", *names)


async def test_sort_by_reference_uri_and_repeated_numbers(repo: Repository) -> None:
    """Agreed semantics for search.html#sort: a reference sorts by its target's resource_key
    (a url-only reference counts as missing); uris by code point; a repeating number by its
    lowest value ascending and its highest descending."""

    def obs(id: str, subject: str | None) -> dict[str, object]:
        fields = {"subject": {"reference": subject}} if subject else {}
        return resource("Observation", id, status="final", code={"text": "x"}, **fields)

    await store(
        repo,
        obs("s-a", "Patient/a"),
        obs("s-b", "Patient/b"),
        obs("s-a2", "Patient/a"),
        obs("s-url", "urn:uuid:6a0f3f5e-77c5-4c0a-9c2e-1b1f0f7a8b9c"),
        obs("s-none", None),
    )
    targets = sorted(("a", "b"), key=lambda id: resource_key("Patient", id))
    group = {"a": by_key("Observation", "s-a", "s-a2"), "b": ["s-b"]}
    missing = by_key("Observation", "s-url", "s-none")
    ascending = [*group[targets[0]], *group[targets[1]], *missing]
    descending = [*group[targets[1]], *group[targets[0]], *missing]
    assert await ids(repo, "Observation", "_sort=subject") == ascending
    assert await ids(repo, "Observation", "_sort=-subject") == descending

    await store(
        repo,
        *(
            resource("ValueSet", id, status="active", **({"url": url} if url else {}))
            for id, url in (("vb", "http://b"), ("va", "http://a"), ("vu", "urn:x"), ("vn", None))
        ),
    )
    assert await ids(repo, "ValueSet", "_sort=url") == ["va", "vb", "vu", "vn"]
    assert await ids(repo, "ValueSet", "_sort=-url") == ["vu", "vb", "va", "vn"]

    def risk(id: str, *values: str) -> dict[str, object]:
        predictions = [{"probabilityDecimal": Decimal(v)} for v in values]
        return resource(
            "RiskAssessment",
            id,
            status="final",
            subject={"reference": "Patient/a"},
            **({"prediction": predictions} if predictions else {}),
        )

    await store(repo, risk("r1", "10", "90"), risk("r2", "50"), risk("r3", "5"), risk("r4"))
    assert await ids(repo, "RiskAssessment", "_sort=probability") == ["r3", "r1", "r2", "r4"]
    assert await ids(repo, "RiskAssessment", "_sort=-probability") == ["r1", "r2", "r3", "r4"]
