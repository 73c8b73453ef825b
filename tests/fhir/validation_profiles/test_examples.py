"""Every example of the IPS 2.0.0 and Genomics Reporting 3.0.0 packages conforms to the profiles
it claims (https://hl7.org/fhir/R4/profiling.html; the packages' own validation reports, in
package/other/validation-oo.json, list no errors for any of them), and Synthea vital signs
conform to the R4 vital signs profiles (https://hl7.org/fhir/R4/observation-vitalsigns.html).
Read from ../shared/data; skipped when it is missing."""

from __future__ import annotations

import tarfile
from collections import Counter
from typing import Any

import pytest

from healthbridge.fhir import jsonformat
from healthbridge.fhir.validation.profiles import ProfileValidator, claimed_profiles
from tests.fhir.conftest import shared_file
from tests.fhir.validation_profiles.conftest import GENOMICS, IPS, Packages, describe, errors

pytestmark = pytest.mark.shared_data

CORE_SD = "http://hl7.org/fhir/StructureDefinition/"
#: LOINC code -> the R4 vital signs profile for it (observation-vitalsigns.html#vitals-table)
VITALS = {
    "29463-7": "bodyweight",
    "8302-2": "bodyheight",
    "85354-9": "bp",
    "8867-4": "heartrate",
    "9279-1": "resprate",
    "39156-5": "bmi",
    "8310-5": "bodytemp",
    "9843-4": "headcircum",
    "2708-6": "oxygensat",
}


def _failures(validator: ProfileValidator, examples: dict[str, Any]) -> dict[str, str]:
    failures: dict[str, str] = {}
    for name, example in sorted(examples.items()):
        found = errors(validator.validate(example, claimed_profiles(example)))
        if found:
            failures[name] = describe(found)
    return failures


@pytest.mark.parametrize("package", [IPS, GENOMICS])
def test_every_example_conforms_to_its_profiles(
    package: str, packages: Packages, profile_validator: ProfileValidator
) -> None:
    examples = packages.examples[package]
    assert len(examples) > 40
    assert _failures(profile_validator, examples) == {}


def test_examples_are_checked_against_nested_profiles(
    packages: Packages, profile_validator: ProfileValidator
) -> None:
    """A document Bundle's entries are checked against the profiles its slices require: the
    must-support report reaches into the Composition of the IPS Bundle."""
    bundle = packages.examples[IPS]["Bundle-bundle-minimal.json"]
    issues = profile_validator.validate(bundle, claimed_profiles(bundle))
    notes = [i.diagnostics for i in issues if i.severity == "information"]
    assert any("Composition-uv-ips" in note and "must-support" in note for note in notes)


def _synthea_vital_signs(limit: int) -> list[dict[str, Any]]:
    path = shared_file("synthea/synthea-r4-100-patients.tar.gz")
    found: list[dict[str, Any]] = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None or not member.name.endswith(".json"):
                continue
            for entry in jsonformat.loads(handle.read())["entry"]:
                resource = entry["resource"]
                if resource["resourceType"] != "Observation":
                    continue
                categories = [
                    c.get("code") for cat in resource.get("category", ()) for c in cat["coding"]
                ]
                if "vital-signs" in categories:
                    found.append(resource)
            if len(found) >= limit:
                return found
    return found


def test_synthea_vital_signs_conform_to_the_core_profiles(
    profile_validator: ProfileValidator,
) -> None:
    checked: Counter[str] = Counter()
    failures: dict[str, str] = {}
    for observation in _synthea_vital_signs(300):
        code = observation["code"]["coding"][0]["code"]
        profiles = [CORE_SD + "vitalsigns"]
        if code in VITALS:
            profiles.append(CORE_SD + VITALS[code])
        found = errors(profile_validator.validate(observation, profiles))
        if found:
            failures[observation["id"]] = describe(found)
        checked[VITALS.get(code, "vitalsigns")] += 1
    assert failures == {}
    assert {"bodyweight", "bodyheight", "bmi"} <= set(checked)
