"""Code hierarchies (https://hl7.org/fhir/R4/codesystem.html) and value set contents
(https://hl7.org/fhir/R4/valueset.html) as the token search modifiers use them."""

from __future__ import annotations

from typing import Any

import pytest

from healthbridge.fhir.terminology.hierarchy import (
    Missing,
    NotExpandable,
    ancestors,
    descendants,
    value_set_pairs,
)

CS: dict[str, Any] = {
    "resourceType": "CodeSystem",
    "url": "urn:cs",
    "concept": [
        {"code": "root", "concept": [{"code": "mid", "concept": [{"code": "leaf"}]}]},
        {"code": "side", "property": [{"code": "parent", "valueCode": "root"}]},
        {"code": "top", "property": [{"code": "child", "valueCode": "root"}]},
    ],
}


def lookup(url: str) -> dict[str, Any] | None:
    return CS if url == "urn:cs" else None


def test_nesting_and_parent_child_properties_form_the_hierarchy() -> None:
    assert descendants(CS, "root") == {"root", "mid", "leaf", "side"}
    assert descendants(CS, "top") == {"top", "root", "mid", "leaf", "side"}
    assert ancestors(CS, "leaf") == {"leaf", "mid", "root", "top"}


def test_compose_with_filters_and_excludes() -> None:
    vs = {
        "compose": {
            "include": [
                {
                    "system": "urn:cs",
                    "filter": [{"property": "concept", "op": "is-a", "value": "root"}],
                }
            ],
            "exclude": [{"system": "urn:cs", "concept": [{"code": "side"}]}],
        }
    }
    assert value_set_pairs(vs, lookup) == {("urn:cs", c) for c in ("root", "mid", "leaf")}
    below = {
        "compose": {
            "include": [
                {
                    "system": "urn:cs",
                    "filter": [{"property": "concept", "op": "descendent-of", "value": "mid"}],
                }
            ]
        }
    }
    assert value_set_pairs(below, lookup) == {("urn:cs", "leaf")}


def test_a_stored_expansion_wins_and_unknowns_are_reported() -> None:
    expanded = {
        "expansion": {
            "contains": [{"system": "s", "code": "a", "contains": [{"system": "s", "code": "b"}]}]
        }
    }
    assert value_set_pairs(expanded, lookup) == {("s", "a"), ("s", "b")}
    with pytest.raises(NotExpandable):
        value_set_pairs({"compose": {"include": [{"system": "urn:other"}]}}, lookup)
    with pytest.raises(NotExpandable):
        value_set_pairs(
            {
                "compose": {
                    "include": [
                        {
                            "system": "urn:cs",
                            "filter": [{"property": "concept", "op": "regex", "value": "x"}],
                        }
                    ]
                }
            },
            lookup,
        )

    def missing(url: str) -> dict[str, Any] | None:
        raise Missing(url)

    with pytest.raises(Missing):
        value_set_pairs({"compose": {"include": [{"valueSet": ["urn:vs"]}]}}, missing)
