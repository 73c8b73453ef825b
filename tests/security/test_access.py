"""The enforcing repository (security/access.py) over every backend: what a token may read,
search and write (SECURITY.md "Object- and field-level authorization")."""

from __future__ import annotations

from typing import Any

import pytest

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import Forbidden, MethodNotAllowed, NotFound
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.rest.bundle import BundleProcessor
from healthbridge.rest.service import FhirService
from healthbridge.security.access import CONFIDENTIALITY, REDACTED, AccessPolicy
from healthbridge.security.context import AccessContext
from healthbridge.security.scopes import parse_scopes
from healthbridge.store.repository import HistoryQuery, Repository
from tests.rest.conftest import fhir_service

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _observation(patient: str, category: str, code: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        **extra,
    }


async def _seed(service: FhirService) -> None:
    for pid, family in (("a", "Alpha"), ("b", "Beta")):
        await service.update(
            "Patient",
            pid,
            {"resourceType": "Patient", "id": pid, "name": [{"family": family}]},
            None,
        )
    rows = {
        "a-lab": _observation("a", "laboratory", "1-1"),
        "a-vital": _observation("a", "vital-signs", "8867-4"),
        "b-lab": _observation("b", "laboratory", "1-1"),
        "a-secret": _observation(
            "a",
            "laboratory",
            "1-1",
            meta={"security": [{"system": CONFIDENTIALITY, "code": "R"}]},
        ),
    }
    for id, body in rows.items():
        await service.update("Observation", id, {**body, "id": id}, None)
    await service.update(
        "Organization", "org", {"resourceType": "Organization", "id": "org", "name": "Clinic"}, None
    )


@pytest.fixture
async def service(repository: Repository) -> FhirService:
    service = fhir_service(repository)
    await _seed(service)
    return service


def scoped(
    service: FhirService, scopes: str, patient: str | None = "a", roles: tuple[str, ...] = ()
) -> FhirService:
    access = AccessContext(parse_scopes(scopes), patient=patient, roles=frozenset(roles))
    return service.using(AccessPolicy(service.search).wrap(service.unrestricted, access))


async def _ids(service: FhirService, type_: str | None, *params: tuple[str, str]) -> list[str]:
    query = service.search.parse(type_, list(params))
    page = await service.repository.search(query)
    return sorted(f"{m.resource_type}/{m.id}" for m in page.matches + page.included)


async def _total(service: FhirService, type_: str, *params: tuple[str, str]) -> int | None:
    query: SearchQuery = service.search.parse(type_, [*params, ("_total", "accurate")])
    return (await service.repository.search(query)).total


# -- reads: another patient's data is 404, as if it did not exist ---------------------------
async def test_a_patient_token_reads_its_own_record_and_nothing_of_another(
    service: FhirService,
) -> None:
    a = scoped(service, "patient/*.rs")
    assert (await a.read("Patient", "a")).id == "a"
    assert (await a.read("Observation", "a-lab")).id == "a-lab"
    with pytest.raises(NotFound) as hidden:
        await a.read("Patient", "b")
    with pytest.raises(NotFound) as missing:
        await a.read("Patient", "nobody")
    assert str(hidden.value).replace("b", "X") == str(missing.value).replace("nobody", "X")
    for call in (
        a.read("Observation", "b-lab"),
        a.vread("Observation", "b-lab", "1"),
        a.history(HistoryQuery("Observation", "b-lab")),
    ):
        with pytest.raises(NotFound):
            await call


async def test_searches_stay_in_the_patients_compartment_with_includes_and_chains(
    service: FhirService,
) -> None:
    a = scoped(service, "patient/*.rs")
    assert await _ids(a, "Observation", ("code", "1-1")) == ["Observation/a-lab"]
    assert await _total(a, "Observation", ("code", "1-1")) == 1
    assert await _ids(a, "Patient") == ["Patient/a"]
    assert await _ids(a, "Observation", ("subject:Patient.name", "Beta")) == []
    assert await _ids(a, "Patient", ("_has:Observation:subject:code", "1-1")) == ["Patient/a"]
    assert await _ids(a, "Patient", ("_revinclude", "Observation:subject")) == [
        "Observation/a-lab",
        "Observation/a-vital",
        "Patient/a",
    ]
    # another patient's compartment, asked for by name, is empty
    query = service.search.parse("Observation", [])
    from dataclasses import replace

    page = await a.repository.search(replace(query, compartment=("Patient", "b")))
    assert page.matches == [] and page.total in (0, None)


async def test_included_resources_of_other_patients_are_dropped(service: FhirService) -> None:
    # a user-level token sees both patients; a patient token's includes are cut to its own
    user = scoped(service, "user/*.rs", patient=None)
    both = await _ids(user, "Observation", ("code", "1-1"), ("_include", "Observation:subject"))
    assert "Patient/b" in both
    a = scoped(service, "patient/*.rs")
    only = await _ids(a, "Observation", ("code", "1-1"), ("_include", "Observation:subject"))
    assert only == ["Observation/a-lab", "Patient/a"]


async def test_types_outside_the_patient_compartment_are_readable_but_not_writable(
    service: FhirService,
) -> None:
    a = scoped(service, "patient/*.cruds")
    assert (await a.read("Organization", "org")).id == "org"
    assert await _ids(a, "Organization") == ["Organization/org"]
    with pytest.raises(Forbidden):
        await a.create("Organization", {"resourceType": "Organization", "name": "Mine"})


async def test_system_searches_need_types_and_stay_in_the_compartment(
    service: FhirService,
) -> None:
    a = scoped(service, "patient/*.rs")
    with pytest.raises(Forbidden):
        await _ids(a, None)
    assert await _ids(a, None, ("_type", "Observation,Patient")) == [
        "Observation/a-lab",
        "Observation/a-vital",
        "Patient/a",
    ]


# -- permissions ----------------------------------------------------------------------------
async def test_scopes_grant_only_what_they_name(service: FhirService) -> None:
    obs_only = scoped(service, "patient/Observation.rs")
    with pytest.raises(Forbidden):
        await obs_only.read("Patient", "a")
    read_only = scoped(service, "patient/*.read")
    with pytest.raises(Forbidden):
        await read_only.create("Observation", _observation("a", "laboratory", "2-2"))
    with pytest.raises(Forbidden):
        await read_only.delete("Observation", "a-lab", None)
    no_search = scoped(service, "patient/Observation.r")
    with pytest.raises(Forbidden):
        await _ids(no_search, "Observation")
    assert (await no_search.read("Observation", "a-lab")).id == "a-lab"


async def test_user_scopes_are_not_held_to_a_patient(service: FhirService) -> None:
    user = scoped(service, "user/Observation.rs", patient="a")
    assert (await user.read("Observation", "b-lab")).id == "b-lab"


# -- writes: nothing may be pointed at, or moved to, another patient -----------------------
async def test_patient_writes_stay_in_the_patients_record(service: FhirService) -> None:
    a = scoped(service, "patient/*.cruds")
    created = await a.create("Observation", _observation("a", "laboratory", "3-3"))
    assert created.version_id == 1
    with pytest.raises(Forbidden):
        await a.create("Observation", _observation("b", "laboratory", "3-3"))
    with pytest.raises(Forbidden):  # moving its own observation to b
        await a.update(
            "Observation", "a-lab", {**_observation("b", "laboratory", "1-1"), "id": "a-lab"}, None
        )
    with pytest.raises(Forbidden):  # a reference to b outside the compartment parameters
        await a.create(
            "Observation",
            _observation("a", "laboratory", "3-3", focus=[{"reference": "Patient/b"}]),
        )
    with pytest.raises(NotFound):  # b's observation cannot even be seen
        await a.update(
            "Observation", "b-lab", {**_observation("a", "laboratory", "1-1"), "id": "b-lab"}, None
        )
    with pytest.raises(NotFound):
        await a.delete("Observation", "b-lab", None)
    assert (await service.read("Observation", "b-lab")).version_id == 1
    assert (await service.read("Observation", "a-lab")).version_id == 1


async def test_one_refused_entry_fails_the_whole_transaction(service: FhirService) -> None:
    a = scoped(service, "patient/*.cruds")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": _observation("a", "laboratory", "4-4"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": _observation("b", "laboratory", "4-4"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    with pytest.raises(Forbidden) as refused:
        await BundleProcessor(a).process(bundle)
    assert "Bundle.entry[1]" in str(refused.value)
    everyone = scoped(service, "system/*.rs", patient=None)
    assert await _ids(everyone, "Observation", ("code", "4-4")) == []


async def test_the_audit_trail_cannot_be_written_through_the_api(service: FhirService) -> None:
    admin = scoped(service, "system/*.cruds", patient=None, roles=("admin",))
    event = {
        "resourceType": "AuditEvent",
        "type": {"code": "rest"},
        "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"requestor": True}],
        "source": {"observer": {"display": "x"}},
    }
    with pytest.raises(MethodNotAllowed):  # 405 for everyone, administrators included
        await admin.create("AuditEvent", event)
    with pytest.raises(MethodNotAllowed):
        await service.create("AuditEvent", event)  # unrestricted (--no-auth, the importer)


# -- granular scopes and security labels ----------------------------------------------------
async def test_granular_scopes_narrow_reads_searches_and_writes(service: FhirService) -> None:
    lab = scoped(service, f"patient/Observation.cruds?category={LAB}")
    assert await _ids(lab, "Observation") == ["Observation/a-lab"]
    assert (await lab.read("Observation", "a-lab")).id == "a-lab"
    with pytest.raises(NotFound):
        await lab.read("Observation", "a-vital")
    with pytest.raises(Forbidden):
        await lab.create("Observation", _observation("a", "vital-signs", "8867-4"))
    two = scoped(
        service,
        f"patient/Observation.rs?category={LAB} "
        f"patient/Observation.rs?category={CATEGORY}|vital-signs",
    )
    assert await _ids(two, "Observation") == ["Observation/a-lab", "Observation/a-vital"]


async def test_restricted_labels_hide_resources_without_clearance(service: FhirService) -> None:
    a = scoped(service, "patient/*.rs")
    with pytest.raises(NotFound):
        await a.read("Observation", "a-secret")
    assert "Observation/a-secret" not in await _ids(a, "Observation")
    cleared = scoped(service, "patient/*.rs", roles=("restricted-data",))
    assert (await cleared.read("Observation", "a-secret")).id == "a-secret"
    assert "Observation/a-secret" in await _ids(cleared, "Observation")


async def test_conformance_resources_are_changed_by_administrators_only(
    service: FhirService,
) -> None:
    parameter = {
        "resourceType": "SearchParameter",
        "url": "http://example.org/sp/x",
        "name": "x",
        "status": "active",
        "description": "x",
        "code": "x",
        "base": ["Patient"],
        "type": "token",
        "expression": "Patient.gender",
    }
    clinician = scoped(service, "user/*.cruds", patient=None)
    with pytest.raises(Forbidden):
        await clinician.create("SearchParameter", parameter)
    admin = scoped(service, "user/*.cruds", patient=None, roles=("admin",))
    assert (await admin.create("SearchParameter", parameter)).version_id == 1
    backend = scoped(service, "system/SearchParameter.cruds", patient=None)
    assert (await backend.create("SearchParameter", parameter)).version_id == 1


async def test_only_auditors_read_the_audit_trail(service: FhirService) -> None:
    clinician = scoped(service, "user/*.rs", patient=None)
    with pytest.raises(Forbidden):
        await _ids(clinician, "AuditEvent")
    auditor = scoped(service, "user/AuditEvent.rs", patient=None, roles=("auditor",))
    assert await _ids(auditor, "AuditEvent") == []


async def test_elements_with_restricted_inline_labels_are_removed_without_clearance(
    service: FhirService,
) -> None:
    """DS4P inline security labels: the labelled element is cut from what an uncleared token
    sees (the resource says REDACTED), and such a token cannot overwrite what it cannot see."""
    label = {
        "url": "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/"
        "extension-inline-sec-label",
        "valueCoding": {"system": CONFIDENTIALITY, "code": "R"},
    }
    body = _observation(
        "a",
        "laboratory",
        "5-5",
        id="a-notes",
        note=[{"text": "ordinary"}, {"text": "hidden remark", "extension": [label]}],
    )
    await service.update("Observation", "a-notes", body, None)
    a = scoped(service, "patient/*.cruds")
    seen = jsonformat.loads((await a.read("Observation", "a-notes")).content)
    assert seen["note"] == [{"text": "ordinary"}]
    assert {"system": REDACTED["system"], "code": "REDACTED"} in seen["meta"]["security"]
    query = service.search.parse("Observation", [("code", "5-5")])
    found = (await a.repository.search(query)).matches
    assert b"hidden remark" not in found[0].content
    with pytest.raises(Forbidden):
        await a.update("Observation", "a-notes", seen, None)
    cleared = scoped(service, "patient/*.rs", roles=("restricted-data",))
    assert b"hidden remark" in (await cleared.read("Observation", "a-notes")).content
    assert b"hidden remark" in (await service.read("Observation", "a-notes")).content


async def test_a_version_already_read_is_shown_as_a_vread_would_show_it(
    service: FhirService,
) -> None:
    """AccessPolicy.shown (the subscription worker, whose claim read the focus): the version
    redacted as the token's vread returns it, None where that vread answers 404."""
    label = {
        "url": "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/"
        "extension-inline-sec-label",
        "valueCoding": {"system": CONFIDENTIALITY, "code": "R"},
    }
    note = [{"text": "ordinary"}, {"text": "hidden remark", "extension": [label]}]
    body = _observation("a", "laboratory", "5-5", id="a-noted", note=note)
    await service.update("Observation", "a-noted", body, None)
    policy = AccessPolicy(service.search)
    a = AccessContext(parse_scopes("patient/*.rs"), patient="a")
    b = AccessContext(parse_scopes("patient/*.rs"), patient="b")
    read = await service.repository.vread("Observation", "a-noted", 1)
    shown = await policy.shown(a, read)
    vread = await policy.wrap(service.unrestricted, a).vread("Observation", "a-noted", 1)
    assert shown is not None and shown.content == vread.content
    assert b"hidden remark" not in shown.content
    assert await policy.shown(b, read) is None
    with pytest.raises(NotFound):
        await policy.wrap(service.unrestricted, b).vread("Observation", "a-noted", 1)


async def test_a_search_by_the_patient_itself_is_answered_the_same(service: FhirService) -> None:
    """``Observation?patient=a`` needs no added compartment; ``patient=b`` or a chain through
    another reference still stays inside a's compartment."""
    a = scoped(service, "patient/*.rs")
    assert await _ids(a, "Observation", ("patient", "a"), ("code", "1-1")) == ["Observation/a-lab"]
    assert await _ids(a, "Observation", ("subject", "Patient/a"), ("code", "1-1")) == [
        "Observation/a-lab"
    ]
    assert await _ids(a, "Observation", ("patient", "b")) == []
    assert await _ids(a, "Observation", ("patient", "a,b")) == [
        "Observation/a-lab",
        "Observation/a-vital",
    ]
    assert await _ids(a, "Observation", ("patient:missing", "false"), ("code", "1-1")) == [
        "Observation/a-lab"
    ]
