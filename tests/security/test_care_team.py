"""Clinicians held to their care relationships (security/care_team.py, security/access.py) over
every backend: SMART App Launch 2.x ``user/`` scopes reach "resources the current user is
permitted to access" (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html),
here the records (https://hl7.org/fhir/R4/compartmentdefinition-patient.html) of the patients
the user has a care relationship with: Patient.generalPractitioner, an active CareTeam
(https://hl7.org/fhir/R4/careteam.html), a current or recently finished Encounter
(https://hl7.org/fhir/R4/encounter.html). SECURITY.md "Object- and field-level authorization"."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from healthbridge.demo import PRACTITIONER_ID, demo_resources
from healthbridge.fhir.errors import Forbidden, NotFound
from healthbridge.rest.bundle import BundleProcessor
from healthbridge.rest.service import FhirService
from healthbridge.security.access import AccessPolicy
from healthbridge.security.care_team import CareRelationships
from healthbridge.security.context import AccessContext
from healthbridge.security.scopes import parse_scopes
from healthbridge.store.repository import HistoryQuery, Repository
from tests.rest.conftest import fhir_service

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CARED = {"gp", "role-gp", "team", "team-proposed", "team-unstated", "visit", "recent"}
"""Dr X's patients (each by one kind of relationship)."""
NOT_CARED = {"team-inactive", "old", "other", "role2-visit", "ex-role"}


def _at(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ref(reference: str) -> dict[str, str]:
    return {"reference": reference}


def _care_team(id: str, patient: str, member: str, status: str | None) -> dict[str, Any]:
    team: dict[str, Any] = {
        "resourceType": "CareTeam",
        "id": id,
        "subject": _ref(f"Patient/{patient}"),
        "participant": [{"member": _ref(member)}],
    }
    if status is not None:
        team["status"] = status
    return team


def _encounter(id: str, patient: str, who: str, status: str, ended: float | None) -> dict[str, Any]:
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": id,
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": _ref(f"Patient/{patient}"),
        "participant": [{"individual": _ref(who)}],
    }
    if ended is not None:
        encounter["period"] = {"start": _at(ended + 0.1), "end": _at(ended)}
    return encounter


def observation(patient: str, code: str = "1-1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": _ref(f"Patient/{patient}"),
        **extra,
    }


def _world() -> list[dict[str, Any]]:
    patients = sorted(CARED | NOT_CARED | {"friend"})
    gp = {"gp": "Practitioner/x", "role-gp": "PractitionerRole/x-ward"}
    world: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": "x", "name": [{"family": "Ex"}]},
        {"resourceType": "Practitioner", "id": "y", "name": [{"family": "Why"}]},
        {
            "resourceType": "PractitionerRole",
            "id": "x-ward",
            "practitioner": _ref("Practitioner/x"),
        },
        {
            "resourceType": "PractitionerRole",
            "id": "x-old",
            "active": False,
            "practitioner": _ref("Practitioner/x"),
        },
        {
            "resourceType": "PractitionerRole",
            "id": "y-clinic",
            "practitioner": _ref("Practitioner/y"),
        },
        {"resourceType": "Organization", "id": "org", "name": "Clinic"},
        {"resourceType": "RelatedPerson", "id": "rp", "patient": _ref("Patient/friend")},
        _care_team("ct-team", "team", "Practitioner/x", "active"),
        _care_team("ct-proposed", "team-proposed", "PractitionerRole/x-ward", "proposed"),
        _care_team("ct-unstated", "team-unstated", "Practitioner/x", None),
        _care_team("ct-inactive", "team-inactive", "Practitioner/x", "inactive"),
        _care_team("ct-ex-role", "ex-role", "PractitionerRole/x-old", "active"),
        _encounter("enc-visit", "visit", "Practitioner/x", "in-progress", None),
        _encounter("enc-recent", "recent", "PractitionerRole/x-ward", "finished", 10),
        _encounter("enc-old", "old", "Practitioner/x", "finished", 40),
        _encounter("enc-role2", "role2-visit", "PractitionerRole/y-clinic", "arrived", None),
    ]
    for pid in patients:
        patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, "name": [{"family": pid}]}
        if pid in gp:
            patient["generalPractitioner"] = [_ref(gp[pid])]
        world += [patient, {**observation(pid), "id": f"obs-{pid}"}]
    return world


@pytest.fixture
async def service(repository: Repository) -> FhirService:
    service = fhir_service(repository)
    for resource in _world():
        await service.update(resource["resourceType"], resource["id"], resource, None)
    return service


@dataclass
class Ticks:
    """A monotonic clock the test moves."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def care(service: FhirService, days: int = 30, ticks: Ticks | None = None) -> CareRelationships:
    return CareRelationships(
        service.unrestricted, days=days, clock=lambda: NOW, monotonic=ticks or Ticks()
    )


def user(
    service: FhirService,
    fhir_user: str | None = "Practitioner/x",
    scopes: str = "user/*.cruds",
    roles: tuple[str, ...] = (),
    relationships: CareRelationships | str | None = "default",
) -> FhirService:
    held = care(service) if relationships == "default" else relationships
    assert not isinstance(held, str)
    access = AccessContext(parse_scopes(scopes), fhir_user=fhir_user, roles=frozenset(roles))
    policy = AccessPolicy(service.search, care=held)
    return service.using(policy.wrap(service.unrestricted, access), access)


async def _ids(service: FhirService, type_: str | None, *params: tuple[str, str]) -> set[str]:
    query = service.search.parse(type_, list(params))
    page = await service.repository.search(query)
    return {f"{m.resource_type}/{m.id}" for m in page.matches + page.included}


async def _readable(service: FhirService, patients: set[str]) -> set[str]:
    seen = set()
    for pid in patients:
        try:
            await service.read("Patient", pid)
            await service.read("Observation", f"obs-{pid}")
        except NotFound:
            continue
        seen.add(pid)
    return seen


def _patients(ids: set[str]) -> set[str]:
    return {i.removeprefix("Patient/") for i in ids if i.startswith("Patient/")}


def _observed(ids: set[str]) -> set[str]:
    return {i.removeprefix("Observation/obs-") for i in ids if i.startswith("Observation/")}


# -- what counts as a care relationship ------------------------------------------------------
async def test_a_practitioner_reads_the_patients_of_each_relationship_and_no_other(
    service: FhirService,
) -> None:
    """generalPractitioner (the practitioner or one of their roles), an active, proposed or
    status-less CareTeam, an Encounter in progress or finished within 30 days. Not: an
    inactive CareTeam, an Encounter finished 40 days ago, another practitioner's role, a role
    that is not active; all answered 404, as for resources that do not exist."""
    x = user(service)
    assert await _readable(x, CARED | NOT_CARED) == CARED
    with pytest.raises(NotFound) as hidden:
        await x.read("Patient", "other")
    with pytest.raises(NotFound) as missing:
        await x.read("Patient", "nobody")
    assert str(hidden.value).replace("other", "X") == str(missing.value).replace("nobody", "X")
    for call in (
        x.vread("Observation", "obs-other", "1"),
        x.history(HistoryQuery("Observation", "obs-other")),
        x.history(HistoryQuery("Patient", "old")),
    ):
        with pytest.raises(NotFound):
            await call
    history = await x.history(HistoryQuery("Observation"))
    assert {s.id.removeprefix("obs-") for s in history.entries} == CARED


async def test_a_finished_encounter_counts_for_care_relationship_days(
    service: FhirService,
) -> None:
    """The Encounter finished 40 days ago opens the patient with care_relationship_days=60."""
    sixty = user(service, relationships=care(service, days=60))
    assert await _readable(sixty, {"old", "recent"}) == {"old", "recent"}
    five = user(service, relationships=care(service, days=5))
    assert await _readable(five, {"old", "recent", "visit"}) == {"visit"}


async def test_a_practitioner_role_user_acts_as_the_role_and_its_practitioner(
    service: FhirService,
) -> None:
    """fhirUser PractitionerRole/R: R's relationships and R's practitioner's own."""
    ward = user(service, "PractitionerRole/x-ward")
    assert await _readable(ward, CARED | NOT_CARED) == CARED
    clinic = user(service, "PractitionerRole/y-clinic")
    assert await _readable(clinic, CARED | NOT_CARED) == {"role2-visit"}
    retired = user(service, "PractitionerRole/x-old")  # not active: no relationship holds
    assert await _readable(retired, CARED | NOT_CARED) == set()


async def test_patients_and_related_persons_with_user_scopes_see_only_their_patient(
    service: FhirService,
) -> None:
    everyone = CARED | NOT_CARED | {"friend"}
    assert await _readable(user(service, "Patient/old"), everyone) == {"old"}
    assert await _readable(user(service, "RelatedPerson/rp"), everyone) == {"friend"}
    nobody = user(service, None)
    assert await _readable(nobody, everyone) == set()
    assert await _ids(nobody, "Observation") == set()
    assert await _ids(nobody, "Patient") == set()
    # types outside the patient compartment: the scopes alone decide
    assert (await nobody.read("Organization", "org")).id == "org"
    assert await _ids(nobody, "Practitioner") == {"Practitioner/x", "Practitioner/y"}


async def test_admins_all_patients_users_and_user_access_all_see_every_patient(
    service: FhirService,
) -> None:
    everyone = CARED | NOT_CARED | {"friend"}
    for roles in (("admin",), ("all-patients",)):
        wide = user(service, roles=roles)
        assert await _readable(wide, everyone) == everyone
        assert _patients(await _ids(wide, "Patient")) == everyone
    unheld = user(service, relationships=None)  # HEALTHBRIDGE_USER_ACCESS=all
    assert await _readable(unheld, everyone) == everyone
    assert _observed(await _ids(unheld, "Observation")) == everyone
    # patient/ and system/ grants are not held to a care set
    patient = AccessContext(
        parse_scopes("patient/*.rs"), patient="other", fhir_user="Practitioner/x"
    )
    policy = AccessPolicy(service.search, care=care(service))
    own = service.using(policy.wrap(service.unrestricted, patient))
    assert (await own.read("Patient", "other")).id == "other"
    system = AccessContext(parse_scopes("system/*.rs"))
    backend = service.using(policy.wrap(service.unrestricted, system))
    assert _observed(await _ids(backend, "Observation")) == everyone


# -- searches ---------------------------------------------------------------------------------
async def test_searches_are_narrowed_to_the_care_set(service: FhirService) -> None:
    """An OR over the patients' compartments: plain searches, totals, a search by patient,
    another patient's compartment, system searches with _type."""
    x = user(service)
    assert _observed(await _ids(x, "Observation")) == CARED
    assert _patients(await _ids(x, "Patient")) == CARED
    query = service.search.parse("Observation", [("code", "1-1"), ("_total", "accurate")])
    assert (await x.repository.search(query)).total == len(CARED)
    assert await _ids(x, "Observation", ("patient", "gp")) == {"Observation/obs-gp"}
    assert await _ids(x, "Observation", ("patient", "other")) == set()
    assert await _ids(x, "Observation", ("patient", "gp,other")) == {"Observation/obs-gp"}
    compartment = replace(service.search.parse("Observation", []), compartment=("Patient", "old"))
    assert (await x.repository.search(compartment)).matches == []
    compartment = replace(compartment, compartment=("Patient", "team"))
    assert [m.id for m in (await x.repository.search(compartment)).matches] == ["obs-team"]
    both = await _ids(x, None, ("_type", "Observation,Patient"))
    assert _patients(both) == _observed(both) == CARED
    with pytest.raises(Forbidden):  # patient data and other types, in one search
        await _ids(x, None, ("_type", "Observation,Organization"))


async def test_includes_chains_and_has_stay_in_the_care_set(service: FhirService) -> None:
    x = user(service)
    included = await _ids(x, "Observation", ("_include", "Observation:subject"))
    assert _patients(included) == _observed(included) == CARED
    revincluded = await _ids(x, "Patient", ("_revinclude", "Observation:subject"))
    assert _patients(revincluded) == _observed(revincluded) == CARED
    teams = await _ids(x, "CareTeam", ("_include", "CareTeam:subject"))
    assert "Patient/team-inactive" not in teams and "CareTeam/ct-inactive" not in teams
    assert await _ids(x, "Observation", ("subject:Patient.name", "other")) == set()
    assert await _ids(x, "Observation", ("subject:Patient.name", "gp")) == {"Observation/obs-gp"}
    has = await _ids(x, "Patient", ("_has:Observation:subject:code", "1-1"))
    assert _patients(has) == CARED
    # patient data reached from types outside the record: refused, it would tell of others
    with pytest.raises(Forbidden):
        await _ids(x, "Practitioner", ("_has:Encounter:participant:status", "finished"))


async def test_an_empty_care_set_finds_nothing(service: FhirService) -> None:
    y = user(service, "Practitioner/nobody")
    assert await _ids(y, "Observation") == set()
    assert await _ids(y, "Patient", ("_revinclude", "Observation:subject")) == set()
    query = service.search.parse("Observation", [("_total", "accurate")])
    assert (await y.repository.search(query)).total == 0


# -- writes -----------------------------------------------------------------------------------
async def test_writes_stay_in_the_records_of_the_care_set(service: FhirService) -> None:
    x = user(service)
    assert (await x.create("Observation", observation("gp", "2-2"))).version_id == 1
    with pytest.raises(Forbidden):
        await x.create("Observation", observation("other", "2-2"))
    with pytest.raises(Forbidden):  # a reference to another patient outside the compartment
        await x.create("Observation", observation("gp", "2-2", focus=[_ref("Patient/other")]))
    with pytest.raises(Forbidden):  # moving an observation it may see to another patient
        await x.update("Observation", "obs-gp", {**observation("other"), "id": "obs-gp"}, None)
    with pytest.raises(NotFound):  # another patient's observation cannot even be seen
        await x.update("Observation", "obs-old", {**observation("gp"), "id": "obs-old"}, None)
    with pytest.raises(NotFound):
        await x.delete("Observation", "obs-other", None)
    with pytest.raises(Forbidden):  # patient data that is in no patient's record
        await x.create("Observation", {**observation("gp"), "subject": _ref("Group/g")})
    assert (await service.read("Observation", "obs-gp")).version_id == 1
    assert (await service.read("Observation", "obs-other")).version_id == 1


async def test_one_refused_entry_fails_the_whole_transaction(service: FhirService) -> None:
    x = user(service)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": observation("gp", "3-3"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": observation("old", "3-3"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    with pytest.raises(Forbidden) as refused:
        await BundleProcessor(x).process(bundle)
    assert "Bundle.entry[1]" in str(refused.value)
    assert await _ids(service, "Observation", ("code", "3-3")) == set()


async def test_a_new_patient_may_be_registered(service: FhirService) -> None:
    """Registration: a new Patient (and, in the same transaction, its first data) may be
    written; it is in the practitioner's care once a relationship names them, at once for the
    token that wrote it (its care set is found afresh after it writes a Patient)."""
    ticks = Ticks()
    x = user(service, relationships=care(service, ticks=ticks))
    assert await _readable(x, {"gp"}) == {"gp"}  # the care set is found and remembered
    stray = await x.create("Patient", {"resourceType": "Patient", "name": [{"family": "New"}]})
    with pytest.raises(NotFound):  # no relationship: not theirs to read
        await x.read("Patient", stray.id)
    mine = await x.create(
        "Patient",
        {"resourceType": "Patient", "generalPractitioner": [_ref("Practitioner/x")]},
    )
    assert (await x.read("Patient", mine.id)).id == mine.id
    patient = "urn:uuid:00000000-0000-4000-8000-000000000001"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000002",
                "resource": {**observation("x", "4-4"), "subject": _ref(patient)},
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": patient,
                "resource": {
                    "resourceType": "Patient",
                    "generalPractitioner": [_ref("PractitionerRole/x-ward")],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    await BundleProcessor(x).process(bundle)
    found = await _ids(x, "Observation", ("code", "4-4"), ("_include", "Observation:subject"))
    assert len(_observed(found)) == 1 and len(_patients(found)) == 1
    with pytest.raises(Forbidden):  # a registration cannot link to a patient outside the set
        await x.create(
            "Patient",
            {
                "resourceType": "Patient",
                "link": [{"other": _ref("Patient/old"), "type": "seealso"}],
            },
        )


# -- caching ----------------------------------------------------------------------------------
async def test_the_care_set_is_remembered_for_thirty_seconds(service: FhirService) -> None:
    """A relationship someone else makes shows once the remembered set is 30 s old; in
    between, requests run no query to find it."""
    ticks = Ticks()
    x = user(service, relationships=care(service, ticks=ticks))
    assert await _readable(x, {"other"}) == set()
    team = _care_team("ct-other", "other", "Practitioner/x", "active")
    await service.update("CareTeam", "ct-other", team, None)
    ticks.now += 29
    assert await _readable(x, {"other"}) == set()
    ticks.now += 2
    assert await _readable(x, {"other"}) == {"other"}
    await service.delete("CareTeam", "ct-other", None)
    ticks.now += 31
    assert await _readable(x, {"other"}) == set()


async def test_subscription_notifications_apply_the_care_set(service: FhirService) -> None:
    """AccessPolicy.may_read (the subscription dispatcher) holds the owner to their care."""
    policy = AccessPolicy(service.search, care=care(service))
    access = AccessContext(parse_scopes("user/*.rs"), fhir_user="Practitioner/x")
    assert await policy.may_read(access, await service.read("Observation", "obs-gp"))
    assert not await policy.may_read(access, await service.read("Observation", "obs-other"))
    wide = AccessContext(
        parse_scopes("user/*.rs"), fhir_user="Practitioner/x", roles=frozenset({"all-patients"})
    )
    assert await policy.may_read(wide, await service.read("Observation", "obs-other"))


async def test_the_demo_clinician_has_the_demo_patients_in_their_care(
    repository: Repository,
) -> None:
    """``serve --demo``: the demo practitioner's CareTeams open every demo patient."""
    service = fhir_service(repository)
    patients = set()
    for resource in demo_resources():
        await service.update(resource["resourceType"], resource["id"], resource, None)
        if resource["resourceType"] == "Patient":
            patients.add(resource["id"])
    clinician = user(service, f"Practitioner/{PRACTITIONER_ID}", "user/*.rs")
    assert _patients(await _ids(clinician, "Patient", ("_count", "100"))) == patients
    assert len(await _ids(clinician, "Observation", ("patient", "demo-patient-1"))) > 0
