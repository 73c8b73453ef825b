"""Building small FHIR NPM package files for the tests (https://hl7.org/fhir/packages.html)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BASE = "http://example.org/fhir/test-ig"
EXTENSION = f"{BASE}/StructureDefinition/favorite-color"
PROFILE = f"{BASE}/StructureDefinition/colorful-patient"
CODES = f"{BASE}/CodeSystem/colors"
VALUE_SET = f"{BASE}/ValueSet/colors"
PARAMETER = f"{BASE}/SearchParameter/patient-favorite-color"


def manifest(
    name: str = "example.fhir.test-ig", version: str = "1.0.0", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "fhirVersions": ["4.0.1"],
        "dependencies": {"hl7.fhir.r4.core": "4.0.1"},
        "canonical": BASE,
        "title": "Test IG",
        **extra,
    }


def patient(id: str, color: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": id,
        "birthDate": "1970-01-01",
        "extension": [
            {
                "url": EXTENSION,
                "valueCodeableConcept": {"coding": [{"system": CODES, "code": color}]},
            }
        ],
    }


def conformance(version: str = "1.0.0") -> dict[str, dict[str, Any]]:
    """A profile, an extension, a CodeSystem, a ValueSet and a SearchParameter, by file name."""
    common = {"version": version, "status": "active"}
    structure = {"resourceType": "StructureDefinition", "fhirVersion": "4.0.1", "abstract": False}
    return {
        "StructureDefinition-colorful-patient.json": {
            **structure,
            **common,
            "id": "colorful-patient",
            "url": PROFILE,
            "name": "ColorfulPatient",
            "kind": "resource",
            "type": "Patient",
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
            "derivation": "constraint",
            "differential": {
                "element": [{"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}]
            },
        },
        "StructureDefinition-favorite-color.json": {
            **structure,
            **common,
            "id": "favorite-color",
            "url": EXTENSION,
            "name": "FavoriteColor",
            "kind": "complex-type",
            "type": "Extension",
            "context": [{"type": "element", "expression": "Patient"}],
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
            "derivation": "constraint",
            "differential": {
                "element": [{"id": "Extension.url", "path": "Extension.url", "fixedUri": EXTENSION}]
            },
        },
        "CodeSystem-colors.json": {
            "resourceType": "CodeSystem",
            **common,
            "id": "colors",
            "url": CODES,
            "name": "Colors",
            "content": "complete",
            "concept": [{"code": "blue", "display": "Blue"}, {"code": "red", "display": "Red"}],
        },
        "ValueSet-colors.json": {
            "resourceType": "ValueSet",
            **common,
            "id": "colors",
            "url": VALUE_SET,
            "name": "Colors",
            "compose": {"include": [{"system": CODES}]},
        },
        "SearchParameter-patient-favorite-color.json": {
            "resourceType": "SearchParameter",
            **common,
            "id": "patient-favorite-color",
            "url": PARAMETER,
            "name": "FavoriteColor",
            "description": "A patient's favorite color",
            "code": "favorite-color",
            "base": ["Patient"],
            "type": "token",
            "expression": f"Patient.extension.where(url = '{EXTENSION}').value",
        },
    }


def examples() -> dict[str, dict[str, Any]]:
    return {
        "Patient-blue.json": patient("blue", "blue"),
        "Patient-red.json": patient("red", "red"),
    }


def build(
    path: Path,
    files: Mapping[str, Any] | None = None,
    example_files: Mapping[str, Any] | None = None,
    *,
    package_json: Any = None,
    raw: Mapping[str, bytes] | None = None,
) -> Path:
    """A package file at ``path``: package.json, ``files`` in package/, ``example_files`` in
    package/example/ (dicts are written as JSON, bytes as they are), and ``raw`` members by
    their full names."""
    members: dict[str, bytes] = {
        "package/package.json": json.dumps(package_json or manifest()).encode(),
    }
    for folder, given in (("package", files), ("package/example", example_files)):
        for name, value in (given or {}).items():
            data = value if isinstance(value, bytes) else json.dumps(value).encode()
            members[f"{folder}/{name}"] = data
    members.update(raw or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def sample_package(path: Path, version: str = "1.0.0") -> Path:
    return build(path, conformance(version), examples(), package_json=manifest(version=version))
