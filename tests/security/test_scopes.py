"""SMART scope grammar (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
v2 permission letters, v1 read/write, wildcards, granular parameters, launch and identity
scopes, and malformed scopes refused."""

from __future__ import annotations

import pytest

from healthbridge.security.scopes import InvalidScope, narrowed, parse_scopes

TYPES = {"Observation", "Patient", "Condition"}
LAB = "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


def test_v2_resource_scopes_grant_their_letters_only() -> None:
    scopes = parse_scopes("patient/Observation.rs user/Patient.cud", TYPES)
    assert scopes.grants("patient", "Observation", "r") and scopes.grants(
        "patient", "Observation", "s"
    )
    assert not scopes.grants("patient", "Observation", "c")
    assert not scopes.grants("user", "Observation", "r")  # another context
    assert not scopes.grants("patient", "Condition", "r")  # another type
    assert scopes.grants("user", "Patient", "d") and not scopes.grants("user", "Patient", "r")
    assert scopes.contexts == {"patient", "user"}


def test_v1_scopes_map_to_v2_permissions() -> None:
    scopes = parse_scopes("patient/*.read user/Observation.write system/Patient.*")
    assert {p for p in "cruds" if scopes.grants("patient", "Condition", p)} == {"r", "s"}
    assert {p for p in "cruds" if scopes.grants("user", "Observation", p)} == {"c", "u", "d"}
    assert {p for p in "cruds" if scopes.grants("system", "Patient", p)} == set("cruds")
    assert all(s.v1 for s in scopes.resources)


def test_wildcard_type_covers_every_type() -> None:
    scopes = parse_scopes("user/*.cruds")
    assert scopes.grants("user", "Condition", "u") and scopes.unrestricted("user", "Patient", "c")


def test_granular_scopes_keep_their_filters() -> None:
    scopes = parse_scopes(
        f"patient/Observation.rs?{LAB} patient/Observation.rs?category=vital-signs"
    )
    granted = scopes.grants("patient", "Observation", "s")
    assert [s.filters for s in granted] == [
        (("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),),
        (("category", "vital-signs"),),
    ]
    assert not scopes.unrestricted("patient", "Observation", "s")


def test_launch_and_identity_scopes() -> None:
    scopes = parse_scopes(
        "launch launch/patient openid fhirUser offline_access patient/Patient.r unheard-of"
    )
    assert scopes.launch and scopes.launch_contexts == {"patient"}
    assert scopes.identity == {"openid", "fhirUser", "offline_access"} and scopes.offline
    assert scopes.unknown == ("unheard-of",)
    assert str(scopes) == (
        "patient/Patient.r launch launch/patient fhirUser offline_access openid unheard-of"
    )


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation.sr",  # letters out of order
        "patient/Observation.rr",  # repeated
        "patient/Observation.x",  # not a permission
        "patient/Observation.",  # none
        "patient/observation.rs",  # not a type name
        "patient/Spaceship.rs",  # not a FHIR type
        "patient/Observation.read?category=x",  # v1 scopes take no parameters
        "patient/Observation.rs?",  # empty parameters
        "patient/Observation.rs?=x",  # malformed parameters
        "launch/practitioner",  # not a launch context
    ],
)
def test_malformed_scopes_are_refused(text: str) -> None:
    with pytest.raises(InvalidScope):
        parse_scopes(text, TYPES)


def test_too_many_scopes_are_refused() -> None:
    with pytest.raises(InvalidScope):
        parse_scopes(" ".join(f"patient/Observation.rs?code={n}" for n in range(101)))


def test_narrowing_keeps_only_what_was_allowed() -> None:
    requested = parse_scopes("patient/Observation.rs patient/Condition.rs launch/patient")
    kept = narrowed(requested, ["patient/Condition.rs"])
    assert [s.text for s in kept.resources] == ["patient/Condition.rs"]
    assert kept.launch_contexts == {"patient"}
    assert not kept.grants("patient", "Observation", "r")
