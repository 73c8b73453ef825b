"""The pure terminology pieces: CodeSystem resources as concepts
(https://hl7.org/fhir/R4/codesystem.html), the concept index with the ValueSet filter operators
(https://hl7.org/fhir/R4/valueset.html#filters), the word matching of $expand ``filter``,
ConceptMap translation (conceptmap-operation-translate.html), operation Parameters
(https://hl7.org/fhir/R4/parameters.html) and the shipped R4 core content."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.terminology.code_system import code_system_info, concepts, is_abstract
from healthbridge.fhir.terminology.concept_index import ConceptIndex, UnsupportedFilter
from healthbridge.fhir.terminology.core import core_terminology
from healthbridge.fhir.terminology.parameters import Inputs, typed_value
from healthbridge.fhir.terminology.translate import translate
from healthbridge.fhir.terminology.words import matches, words
from healthbridge.store.terminology import ConceptFilter

CS: dict[str, Any] = {
    "resourceType": "CodeSystem",
    "url": "urn:cs",
    "version": "3",
    "caseSensitive": False,
    "property": [{"code": "weight", "type": "decimal"}, {"code": "status", "type": "code"}],
    "concept": [
        {
            "code": "root",
            "display": "Root",
            "property": [{"code": "notSelectable", "valueBoolean": True}],
            "concept": [
                {
                    "code": "mid",
                    "display": "Middle thing",
                    "designation": [{"language": "fr", "value": "Milieu"}],
                    "concept": [
                        {"code": "leaf", "property": [{"code": "weight", "valueDecimal": 2.5}]}
                    ],
                }
            ],
        },
        {"code": "side", "property": [{"code": "parent", "valueCode": "root"}]},
        {"code": "old", "property": [{"code": "status", "valueCode": "retired"}]},
    ],
}


def test_code_system_resources_become_concepts() -> None:
    info = code_system_info(CS)
    assert (info.url, info.version, info.case_sensitive) == ("urn:cs", "3", False)
    assert [p.code for p in info.properties] == ["weight", "status"]
    found = {c.code: c for c in concepts(CS)}
    assert found["leaf"].parents == ("mid",) and found["side"].parents == ("root",)
    assert found["leaf"].properties[0].value == Decimal("2.5")
    assert found["mid"].designations[0].language == "fr"
    assert found["old"].inactive and not found["mid"].inactive
    assert is_abstract(found["root"]) and not is_abstract(found["mid"])


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (("concept", "is-a", "root"), ["leaf", "mid", "root", "side"]),
        (("concept", "descendent-of", "root"), ["leaf", "mid", "side"]),
        (("concept", "generalizes", "leaf"), ["leaf", "mid", "root"]),
        (("concept", "is-not-a", "mid"), ["root", "side"]),
        (("weight", "exists", "true"), ["leaf"]),
        (("weight", "=", "2.5"), ["leaf"]),
        (("display", "regex", "M.*"), ["mid"]),
    ],
)
def test_index_filters(rule: tuple[str, str, str], expected: list[str]) -> None:
    index = ConceptIndex(concepts(CS))
    assert index.select([ConceptFilter(*rule)]) == expected  # type: ignore[arg-type]


def test_index_hierarchy_and_text() -> None:
    index = ConceptIndex(concepts(CS))
    assert index.subsumes("root", "leaf") and not index.subsumes("leaf", "root")
    assert index.children("root") == ["mid", "side"]
    assert index.select(text="milie") == ["mid"]  # a designation
    assert "old" not in index.select() and "old" in index.select(active_only=False)
    with pytest.raises(UnsupportedFilter):
        index.select([ConceptFilter("concept", "regex", "(")])


def test_words_match_prefixes_case_insensitively() -> None:
    assert words("Heart-failure, LEFT (acute)") == ["heart", "failure", "left", "acute"]
    assert matches(["hea", "fail"], ["Heart failure"])
    assert not matches(["eart"], ["Heart failure"])
    assert matches(["card"], [None, "Cardiac"])


def test_translate_forward_reverse_and_unmapped() -> None:
    concept_map = {
        "url": "urn:map",
        "group": [
            {
                "source": "urn:a",
                "target": "urn:b",
                "element": [{"code": "x", "target": [{"code": "y", "equivalence": "wider"}]}],
                "unmapped": {"mode": "provided"},
            }
        ],
    }
    forward = translate([concept_map], "urn:a", "x")
    assert [(m.system, m.code, m.equivalence) for m in forward] == [("urn:b", "y", "wider")]
    back = translate([concept_map], "urn:b", "y", reverse=True)
    assert [(m.system, m.code, m.equivalence) for m in back] == [("urn:a", "x", "narrower")]
    same = translate([concept_map], "urn:a", "z")
    assert [(m.code, m.equivalence) for m in same] == [("z", "equal")]
    assert translate([concept_map], "urn:a", "x", "urn:other") == []


def test_parameters_from_query_and_body() -> None:
    query = Inputs.from_query([("code", "a"), ("count", "5"), ("_format", "json")])
    assert query.text("code") == "a" and query.number("count") == 5 and not query.has("_format")
    body = Inputs.from_parameters(
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "coding", "valueCoding": {"system": "s", "code": "c"}},
                {"name": "activeOnly", "valueBoolean": False},
            ],
        }
    )
    assert body.coding("coding") == {"system": "s", "code": "c"}
    assert body.flag("activeOnly") is False
    with pytest.raises(InvalidRequest):
        Inputs.from_query([("count", "-1")]).number("count")
    with pytest.raises(InvalidRequest):
        Inputs.from_parameters({"resourceType": "Patient"})
    assert typed_value(("s", "c")) == {"valueCoding": {"system": "s", "code": "c"}}
    assert typed_value(True) == {"valueBoolean": True}


def test_core_content_ships_code_systems_value_sets_and_maps() -> None:
    core = core_terminology()
    assert len(core.code_systems) > 1000 and len(core.value_sets) > 1000
    found = core.code_system("http://hl7.org/fhir/administrative-gender")
    assert found is not None
    info, index = found
    assert info.source == "core" and sorted(index.concepts) == [
        "female",
        "male",
        "other",
        "unknown",
    ]
    assert "http://hl7.org/fhir/ConceptMap/101" in core.concept_maps
