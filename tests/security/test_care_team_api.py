"""Care relationships through the real app and real tokens (app.py wires the setting): a
clinician's ``user/`` token reaches the patients in their care, on every backend, and
``HEALTHBRIDGE_USER_ACCESS=all`` gives every patient (docs/access-control.md, "Clinicians:
care relationships"; https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from healthbridge.settings import Settings
from tests.auth.conftest import Harness, make_harness
from tests.support.databases import BACKEND_PARAMS, PostgresDatabase

CLINICIAN = "openid fhirUser user/*.rs"
CARE_TEAM = {
    "resourceType": "CareTeam",
    "id": "ct1",
    "status": "active",
    "subject": {"reference": "Patient/p1"},
    "participant": [{"member": {"reference": "Practitioner/dr2"}}],
}
"""Dr Grey (``grey``, Practitioner/dr2) comes to care for p1 (the harness's Dr House cares for
p1 and p2 already)."""


@pytest.fixture(params=BACKEND_PARAMS)
def auth(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: PostgresDatabase
) -> Iterator[Harness]:
    kind = str(request.param)
    if kind == "postgresql":
        postgres_database.require()
        yield from make_harness(kind, tmp_path, postgres_database)
    else:
        yield from make_harness(kind, tmp_path)


def _token(auth: Harness, username: str = "doc") -> str:
    return str(auth.tokens(username, scope=CLINICIAN)["access_token"])


def _ids(answer: object) -> set[str]:
    bundle = answer.json()  # type: ignore[attr-defined]
    return {e["resource"]["resourceType"] + "/" + e["resource"]["id"] for e in bundle["entry"]}


def test_a_clinician_reaches_the_patients_in_their_care(auth: Harness) -> None:
    auth.put({"resourceType": "Practitioner", "id": "dr2", "name": [{"family": "Grey"}]})
    auth.user("grey", "Practitioner/dr2")
    before = _token(auth, "grey")  # no relationship yet
    assert auth.fhir("Patient/p1", before).status_code == 404
    assert auth.fhir("Practitioner/dr2", before).status_code == 200  # not patient data
    auth.put(CARE_TEAM)
    token = _token(auth, "grey")
    assert auth.fhir("Patient/p1", token).status_code == 200
    assert auth.fhir("Encounter/e1", token).status_code == 200
    assert auth.fhir("Patient/p2", token).status_code == 404
    assert _ids(auth.fhir("Patient", token)) == {"Patient/p1"}
    revincluded = auth.fhir("Patient?_revinclude=Encounter:subject", token)
    assert _ids(revincluded) == {"Patient/p1", "Encounter/e1"}


def test_administrators_see_every_patient(auth: Harness) -> None:
    token = _token(auth, "admin")
    assert auth.fhir("Patient/p2", token).status_code == 200
    assert _ids(auth.fhir("Patient", token)) == {"Patient/p1", "Patient/p2"}


def test_user_access_all_restores_every_patient(tmp_path: Path) -> None:
    for auth in make_harness("memory", tmp_path, user_access="all"):
        auth.user("grey", "Practitioner/dr2")  # in nobody's care team
        token = _token(auth, "grey")
        assert auth.fhir("Patient/p2", token).status_code == 200
        assert _ids(auth.fhir("Patient", token)) == {"Patient/p1", "Patient/p2"}


def test_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert (settings.user_access, settings.care_relationship_days) == ("care-team", 30)
    monkeypatch.setenv("HEALTHBRIDGE_USER_ACCESS", "all")
    monkeypatch.setenv("HEALTHBRIDGE_CARE_RELATIONSHIP_DAYS", "7")
    settings = Settings()
    assert (settings.user_access, settings.care_relationship_days) == ("all", 7)
    with pytest.raises(ValidationError):
        Settings(user_access="everyone")  # type: ignore[arg-type]
