"""The R4 core profiles and base definitions shipped for profile validation
(https://hl7.org/fhir/R4/profiling.html, https://hl7.org/fhir/R4/extensibility.html)."""

from __future__ import annotations

from typing import Any

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.validation.core_structures import CORE, CoreStructures, core_profiles
from healthbridge.fhir.validation.profiles import ProfileValidator


def test_core_profiles_and_extensions_are_shipped_without_prose() -> None:
    profiles = core_profiles()
    assert {"vitalsigns", "bp", "bodyweight", "lipidprofile", "patient-birthPlace"} <= {
        url.removeprefix(CORE) for url in profiles
    }
    assert all(sd["derivation"] == "constraint" for sd in profiles.values())
    bp = profiles[CORE + "bp"]
    elements = bp["snapshot"]["element"]
    assert not any("definition" in e or "mapping" in e or "comment" in e for e in elements)
    assert any(e.get("sliceName") == "SystolicBP" for e in elements)
    assert "text" not in bp and "mapping" not in bp


def test_base_definitions_complete_a_differential_profile(definitions: Definitions) -> None:
    """A profile published with only a differential gets its snapshot from the base type."""
    core = CoreStructures(definitions)
    patient = core(CORE + "Patient")
    assert patient is not None and core(CORE + "Patient|4.0.1") is patient
    assert core(CORE + "Patient|5.0.0") is None and core(CORE + "NoSuchType") is None
    url = "http://example.org/StructureDefinition/named"
    profile: dict[str, Any] = {
        "resourceType": "StructureDefinition",
        "url": url,
        "type": "Patient",
        "kind": "resource",
        "derivation": "constraint",
        "baseDefinition": CORE + "Patient",
        "differential": {
            "element": [{"id": "Patient.name.family", "path": "Patient.name.family", "min": 1}]
        },
    }

    def lookup(wanted: str) -> dict[str, Any] | None:
        return profile if wanted == url else core(wanted)

    validator = ProfileValidator(definitions, lookup)
    issues = validator.validate({"resourceType": "Patient", "name": [{"given": ["A"]}]}, [url])
    assert [(i.severity, i.expression) for i in issues] == [("error", ("Patient.name[0].family",))]
