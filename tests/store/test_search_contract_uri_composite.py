"""Contract: uri and composite search on every backend.

Spec: https://hl7.org/fhir/R4/search.html#uri (exact and case-sensitive; ``:above``,
``:below``), #composite (``$``-joined parts evaluated on the same element) and #escaping
(``\\,`` and ``\\$`` are literal). LIKE wildcards in values are ordinary characters.
Expected ids are written out by hand.
"""

from __future__ import annotations

from decimal import Decimal

from healthbridge.store.repository import Repository
from tests.store.search_fixtures import expect_matches, resource, store

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


# -- uris ----------------------------------------------------------------------------------


async def test_uri_exact_above_below(repo: Repository) -> None:
    """search.html#uri: a uri matches exactly (case-sensitive, no prefix); ``:below`` matches
    uris that start with the value, ``:above`` uris the value starts with."""

    def valueset(id: str, url: str) -> dict[str, object]:
        return resource("ValueSet", id, status="active", url=url)

    await store(
        repo,
        valueset("v123", "http://acme.org/fhir/ValueSet/123"),
        valueset("v1234", "http://acme.org/fhir/ValueSet/1234"),
        valueset("root", "http://acme.org/fhir/"),
        valueset("upper", "http://Acme.org/fhir/ValueSet/123"),
        valueset("oid", "urn:oid:1.2.3"),
        valueset("comma", "http://acme.org/a,b"),
        valueset("percent", "http://acme.org/100%"),
    )
    await expect_matches(
        repo,
        "ValueSet",
        [
            ("url=http://acme.org/fhir/ValueSet/123", {"v123"}),
            ("url=http://acme.org/fhir/ValueSet/12", set()),
            ("url:below=http://acme.org/fhir/", {"v123", "v1234", "root"}),
            ("url:below=http://acme.org/fhir/ValueSet/123", {"v123", "v1234"}),
            ("url:above=http://acme.org/fhir/ValueSet/123/_history/5", {"v123", "root"}),
            ("url=urn:oid:1.2.3", {"oid"}),
            ("url=http://acme.org/a\\,b", {"comma"}),
            ("url=http://acme.org/a,urn:oid:1.2.3", {"oid"}),
            ("url:below=http://acme.org/1", {"percent"}),
            ("url:below=http://acme.org/fhir/ValueSet/_", set()),
            ("url:below=http://acme.org/%", set()),
        ],
    )


# -- composites ----------------------------------------------------------------------------


async def test_composite_parts_match_the_same_element(repo: Repository) -> None:
    """search.html#composite: ``code-value-quantity=code$value`` needs both on one element;
    ``component-code-value-quantity`` pairs each component's code with its own value."""

    def obs(id: str, code: str, **fields: object) -> dict[str, object]:
        coding = {"coding": [{"system": LOINC, "code": code}]}
        return resource("Observation", id, status="final", code=coding, **fields)

    def qty(value: str) -> dict[str, object]:
        return {"value": Decimal(value), "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}

    def component(code: str, value: str) -> dict[str, object]:
        return {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": qty(value)}

    await store(
        repo,
        obs("sys120", "8480-6", valueQuantity=qty("120")),
        obs("sys150", "8480-6", valueQuantity=qty("150")),
        obs("dia120", "8462-4", valueQuantity=qty("120")),
        obs("panel", "85354-9", component=[component("8480-6", "110"), component("8462-4", "150")]),
        obs(
            "concept",
            "12345-6",
            valueCodeableConcept={"coding": [{"system": SNOMED, "code": "260385009"}]},
        ),
        obs("string", "X", valueString="positive"),
        obs("dollar", "X", valueString="a$b"),
        obs("plain-a", "X", valueString="a"),
        obs("dated", "Y", valueDateTime="2020-01-01"),
    )
    await expect_matches(
        repo,
        "Observation",
        [
            (f"code-value-quantity={LOINC}|8480-6$gt130", {"sys150"}),
            ("code-value-quantity=8480-6$120", {"sys120"}),
            ("code-value-quantity=8480-6$gt130,8462-4$gt100", {"sys150", "dia120"}),
            (f"component-code-value-quantity={LOINC}|8462-4$gt140", {"panel"}),
            (f"component-code-value-quantity={LOINC}|8480-6$gt140", set()),
            (f"combo-code-value-quantity={LOINC}|8480-6$lt115", {"panel"}),
            (f"combo-code-value-quantity={LOINC}|8480-6$gt130", {"sys150"}),
            (f"code-value-concept={LOINC}|12345-6${SNOMED}|260385009", {"concept"}),
            (f"code-value-concept={LOINC}|12345-6${SNOMED}|1", set()),
            ("code-value-string=X$pos", {"string"}),
            ("code-value-string=X$a\\$b", {"dollar"}),
            ("code-value-string=X$a", {"dollar", "plain-a"}),
            ("code-value-date=Y$ge2020", {"dated"}),
            ("code-value-date=Y$lt2020", set()),
        ],
    )
