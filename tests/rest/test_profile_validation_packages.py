"""Profile validation with real packages: the IPS 2.0.0 package installed with the package
installer (https://hl7.org/fhir/packages.html) into a SQLite database the server then opens, as
``healthbridge packages install`` followed by ``serve`` does, and Synthea bundles whose US Core
claims the server cannot check (https://hl7.org/fhir/R4/profiling.html). Read from
../shared/data; skipped when it is absent."""

from __future__ import annotations

import asyncio
import copy
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.validation import Validator
from healthbridge.packages import InstallOptions, PackageInstaller
from healthbridge.rest.service import FhirService
from healthbridge.store.sql import open_repository
from tests.fhir.validation_profiles.conftest import IPS, read_package
from tests.rest.conftest import make_client
from tests.rest.test_profile_validation import count, errors, issues, patient
from tests.support.databases import sqlite_url

pytestmark = pytest.mark.shared_data
IPS_PATIENT = "http://hl7.org/fhir/uv/ips/StructureDefinition/Patient-uv-ips"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


# -- IPS 2.0.0, installed with the package installer ---------------------------------------------


@pytest.fixture(scope="module")
def ips_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    package = SHARED / IPS
    if not package.exists():
        pytest.skip(f"shared data not available: {package}")
    folder = tmp_path_factory.mktemp("ips")

    async def install() -> None:
        repository = await open_repository(sqlite_url(folder), migrate=True)
        definitions = load_definitions()
        service = FhirService(repository, definitions, Validator(definitions))
        try:
            await PackageInstaller(service).install(package, InstallOptions())
        finally:
            await repository.close()

    asyncio.run(install())
    return folder


@pytest.fixture
def ips_folder(ips_database: Path, tmp_path: Path) -> Path:
    for file in ips_database.iterdir():
        if file.name.startswith("healthbridge.db"):
            shutil.copy(file, tmp_path / file.name)
    return tmp_path


def ips_example(name: str) -> dict[str, Any]:
    examples = dict(read_package(SHARED / IPS, "package/example/"))
    return examples[name]


def test_ips_patients_conforming_and_broken(ips_folder: Path) -> None:
    example = ips_example("Patient-66033.json")
    with make_client("sqlite", ips_folder) as client:
        stored = client.post("/fhir/Patient", json=example)
        assert stored.status_code == 201, stored.text
        broken = copy.deepcopy(example)
        del broken["name"]
        broken["gender"] = "unknown-gender"
        response = client.post("/fhir/Patient", json=broken)
        assert response.status_code == 400  # the base R4 rules come first: a bad code
        del broken["gender"]
        response = client.post("/fhir/Patient", json=broken)
        assert response.status_code == 422
        assert errors(response) == [
            (
                "Patient.name",
                f"Patient.name requires at least 1, found 0 (profile {IPS_PATIENT}|2.0.0)",
            )
        ]
        assert count(client, "Patient") == 1
        valid = client.get(f"/fhir/Patient/{stored.json()['id']}/$validate?profile={IPS_PATIENT}")
        assert errors(valid) == []
        assert any(s == "information" for s, _, _ in issues(valid))  # must-support


def test_required_profiles_are_enforced_only_when_set(ips_folder: Path) -> None:
    plain = patient(gender="female")
    with make_client("sqlite", ips_folder, required_profiles={"Patient": [IPS_PATIENT]}) as client:
        response = client.post("/fhir/Patient", json=plain)
        assert response.status_code == 422
        assert {where for where, _ in errors(response)} == {"Patient.name", "Patient.birthDate"}
        complete = plain | {"name": [{"family": "Doe"}], "birthDate": "1960-02-03"}
        assert client.post("/fhir/Patient", json=complete).status_code == 201
        statement = client.get("/fhir/metadata").json()
        entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
        assert entry["supportedProfile"] == [IPS_PATIENT]
    with make_client("sqlite", ips_folder) as client:
        assert client.post("/fhir/Patient", json=plain).status_code == 201


# -- Synthea ----------------------------------------------------------------------------------


def test_synthea_bundle_with_unknown_us_core_claims_imports(memory_client: TestClient) -> None:
    """Synthea claims US Core profiles this server has not installed: they are passed over.
    (This sample predates the claims, so they are added as newer Synthea versions write them.)"""
    archive = SHARED / "synthea" / "synthea-r4-100-patients.tar.gz"
    if not archive.exists():
        pytest.skip(f"shared data not available: {archive}")
    us_core = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-"
    for bundle in _synthea_bundles(archive, patients=1):
        for entry in bundle["entry"]:
            resource = entry["resource"]
            resource.setdefault("meta", {})["profile"] = [
                us_core + resource["resourceType"].lower()
            ]
        response = memory_client.post(
            "/fhir",
            content=jsonformat.dumps(bundle),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert response.status_code == 200, response.text[:2000]
    assert count(memory_client, "Patient") == 1
    assert count(memory_client, "Observation") > 10


def _synthea_bundles(archive: Path, patients: int) -> Iterator[dict[str, Any]]:
    """The hospital and practitioner bundles (which the others refer to), then ``patients``."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(".json")]
        shared = [m for m in members if m.name.startswith(("hospital", "practitioner"))]
        people = [m for m in members if m not in shared][:patients]
        for member in [*shared, *people]:
            handle = tar.extractfile(member)
            assert handle is not None
            found = jsonformat.loads(handle.read())
            assert isinstance(found, dict)
            yield found
