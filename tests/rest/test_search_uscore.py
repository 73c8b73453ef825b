"""US Core search requirements on Synthea patients, on every backend.

Spec: the US Core 3.1.1 CapabilityStatement (SHALL support, per resource: ``patient`` with
``category``, ``code`` (several codes ORed), ``category`` + ``date`` with ``gt lt ge le``,
``clinical-status``, ``intent`` + ``status``; ``_revinclude=Provenance:target``;
``_include=MedicationRequest:medication``) over https://hl7.org/fhir/R4/search.html.

Data (tests/rest/uscore_fixtures.py): the first 20 of the 100 Synthea patients in
``../shared/data/synthea``, skipped when the folder is missing, stored through the repository.
Expected results are computed from the bundle JSON in plain Python. Most checks search the
repository directly; the last ones go through the REST API (``GET [base]/[type]?...``, following
the Bundle's ``next`` links).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from starlette.testclient import TestClient

from healthbridge.app import create_app
from healthbridge.settings import Settings
from healthbridge.store.repository import Repository
from healthbridge.store.sql import open_repository
from tests.rest.uscore_fixtures import (
    ARCHIVE,
    PATIENTS,
    Loaded,
    Mismatches,
    Shared,
    codings,
    compare,
    fold,
    ids_of,
    load,
    middle_day,
    of_type,
    patients,
    period,
    records,
    rest_search,
    search,
    synthea,
)
from tests.support import databases

pytestmark = pytest.mark.shared_data
ASYNC = pytest.mark.asyncio(loop_scope="module")
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@pytest.fixture(scope="module", params=databases.BACKEND_PARAMS)
def uscore_backend(request: pytest.FixtureRequest) -> str:
    if not ARCHIVE.exists():
        pytest.skip(f"shared data not available: {ARCHIVE} (see ../shared/data/README.md)")
    return str(request.param)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def loaded(
    uscore_backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Loaded]:
    postgres: databases.PostgresDatabase | None = None
    directory = tmp_path_factory.mktemp(f"uscore-{uscore_backend}")
    url = databases.sqlite_url(directory) if uscore_backend == "sqlite" else None
    if uscore_backend == "postgresql":
        postgres = request.getfixturevalue("postgres_database")
        url = postgres.require()
    kind: databases.BackendKind = uscore_backend  # type: ignore[assignment]
    async with databases.open_backend(kind, directory, postgres) as repository:
        await load(repository, synthea())
        yield Loaded(repository, url)


@pytest.fixture(scope="module")
def repo(loaded: Loaded) -> Repository:
    return loaded.repo


@pytest.fixture(scope="module")
def client(loaded: Loaded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The REST API over the same data (a second connection to the same database)."""

    async def factory() -> Repository:
        if loaded.url is None:
            return Shared(loaded.repo)  # type: ignore[return-value]
        return await open_repository(loaded.url)

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("uscore-rest"), access_log=False, no_auth=True
    )
    app = create_app(settings, repository_factory=factory)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


# -- US Core searches -----------------------------------------------------------------------


@ASYNC
async def test_observation_patient_and_category(repo: Repository) -> None:
    """US Core Observation SHALL: ``patient`` + ``category`` (system|code or code alone)."""
    found = Mismatches()
    for patient in patients():
        pid, observations = patient["id"], records("Observation", patient["id"])
        for category in ("laboratory", "vital-signs", "survey", "social-history", "imaging"):
            wanted = ids_of(
                o for o in observations if (OBS_CATEGORY, category) in codings(o.get("category"))
            )
            for qs in (
                f"patient={pid}&category={OBS_CATEGORY}|{category}",
                f"subject=Patient/{pid}&category={category}",
            ):
                found.check(qs, (await search(repo, "Observation", qs))[0], wanted)
    found.done(PATIENTS * 5)


@ASYNC
async def test_observation_patient_and_codes(repo: Repository) -> None:
    """US Core Observation SHALL: ``patient`` + ``code``; SHOULD: several codes ORed."""
    found = Mismatches()
    for patient in patients():
        pid, observations = patient["id"], records("Observation", patient["id"])
        common = Counter(c for o in observations for c in codings(o["code"])).most_common(3)
        codes = [c for c, _ in common]
        for system, code in codes:
            wanted = ids_of(o for o in observations if (system, code) in codings(o["code"]))
            qs = f"patient={pid}&code={system}|{code}"
            found.check(qs, (await search(repo, "Observation", qs))[0], wanted)
        if len(codes) >= 2:
            wanted = ids_of(o for o in observations if codings(o["code"]) & set(codes[:2]))
            both = ",".join(f"{s}|{c}" for s, c in codes[:2])
            qs = f"patient={pid}&code={both}"
            found.check(qs, (await search(repo, "Observation", qs))[0], wanted)
    found.done(PATIENTS * 3)


@ASYNC
async def test_observation_patient_category_and_date(repo: Repository) -> None:
    """US Core Observation SHALL: ``patient`` + ``category`` + ``date`` with ``gt lt ge le``
    (search.html#prefix), to the day and to the second, and a range of two repeats."""
    found = Mismatches()
    for patient in patients():
        pid = patient["id"]
        for category in ("laboratory", "vital-signs"):
            observations = [
                o
                for o in records("Observation", pid)
                if (OBS_CATEGORY, category) in codings(o.get("category"))
            ]
            pivot = middle_day(observations, "effectiveDateTime")
            if pivot is None:
                continue
            instant = sorted(o["effectiveDateTime"] for o in observations)[len(observations) // 2]
            base = f"patient={pid}&category={OBS_CATEGORY}|{category}"
            for prefix in ("eq", "gt", "lt", "ge", "le"):
                for value in (pivot, instant):
                    wanted = ids_of(
                        o
                        for o in observations
                        if compare(prefix, period(o, "effectiveDateTime"), value)
                    )
                    qs = f"{base}&date={prefix}{value}"
                    found.check(qs, (await search(repo, "Observation", qs))[0], wanted)
            low, high = observations[0]["effectiveDateTime"][:10], pivot
            wanted = ids_of(
                o
                for o in observations
                if compare("ge", period(o, "effectiveDateTime"), low)
                and compare("lt", period(o, "effectiveDateTime"), high)
            )
            qs = f"{base}&date=ge{low}&date=lt{high}"
            found.check(qs, (await search(repo, "Observation", qs))[0], wanted)
    found.done(PATIENTS * 20)


@ASYNC
async def test_condition_patient_clinical_status_and_onset(repo: Repository) -> None:
    """US Core Condition SHALL: ``patient``; SHOULD: + ``clinical-status``, + ``onset-date``
    with comparators, + ``code``."""
    found = Mismatches()
    status_system = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    for patient in patients():
        pid, conditions = patient["id"], records("Condition", patient["id"])
        found.check(
            f"patient={pid}",
            (await search(repo, "Condition", f"patient={pid}"))[0],
            ids_of(conditions),
        )
        for status in ("active", "resolved"):
            wanted = ids_of(
                c for c in conditions if (status_system, status) in codings(c["clinicalStatus"])
            )
            qs = f"patient={pid}&clinical-status={status_system}|{status}"
            found.check(qs, (await search(repo, "Condition", qs))[0], wanted)
        pivot = middle_day(conditions, "onsetDateTime")
        for prefix in ("ge", "lt") if pivot else ():
            wanted = ids_of(
                c for c in conditions if compare(prefix, period(c, "onsetDateTime"), str(pivot))
            )
            qs = f"patient={pid}&onset-date={prefix}{pivot}"
            found.check(qs, (await search(repo, "Condition", qs))[0], wanted)
    found.done(PATIENTS * 3)


@ASYNC
async def test_encounter_patient_date_class_and_type(repo: Repository) -> None:
    """US Core Encounter SHALL: ``patient``, ``date`` + ``patient`` (Periods compared as
    ranges), SHOULD ``class`` + ``patient``, ``type`` + ``patient``."""
    found = Mismatches()
    for patient in patients():
        pid, encounters = patient["id"], records("Encounter", patient["id"])
        starts = sorted(e["period"]["start"] for e in encounters)
        pivot = starts[len(starts) // 2][:10]
        for prefix in ("gt", "lt", "ge", "le", "eq"):
            wanted = ids_of(e for e in encounters if compare(prefix, period(e, "period"), pivot))
            qs = f"patient={pid}&date={prefix}{pivot}"
            found.check(qs, (await search(repo, "Encounter", qs))[0], wanted)
        for kind in {e["class"]["code"] for e in encounters}:
            wanted = ids_of(e for e in encounters if e["class"]["code"] == kind)
            qs = f"class={kind}&patient={pid}"
            found.check(qs, (await search(repo, "Encounter", qs))[0], wanted)
        system, code = sorted(codings(encounters[0]["type"]))[0]
        wanted = ids_of(e for e in encounters if (system, code) in codings(e["type"]))
        qs = f"patient={pid}&type={system}|{code}"
        found.check(qs, (await search(repo, "Encounter", qs))[0], wanted)
    found.done(PATIENTS * 7)


@ASYNC
async def test_medication_request_patient_intent_status_and_medication(
    repo: Repository,
) -> None:
    """US Core MedicationRequest SHALL: ``patient`` + ``intent``, + ``status`` (ORed), and
    ``_include=MedicationRequest:medication`` (search.html#include)."""
    found = Mismatches()
    for patient in patients():
        pid, requests = patient["id"], records("MedicationRequest", patient["id"])
        for statuses in ("active", "stopped", "active,stopped"):
            chosen = [r for r in requests if r["status"] in statuses.split(",")]
            medications = {
                r["medicationReference"]["reference"] for r in chosen if "medicationReference" in r
            }
            qs = (
                f"patient={pid}&intent=order&status={statuses}"
                "&_include=MedicationRequest:medication"
            )
            got, included = await search(repo, "MedicationRequest", qs)
            found.check(qs, got, ids_of(chosen))
            found.check(f"{qs} (included)", included, medications)
    found.done(PATIENTS * 4)


@ASYNC
async def test_diagnostic_report_procedure_and_immunization_dates(repo: Repository) -> None:
    """US Core DiagnosticReport SHALL ``patient`` + ``category`` + ``date``; Procedure SHALL
    ``patient`` + ``date``; Immunization SHOULD ``patient`` + ``date``."""
    found = Mismatches()
    lab = "http://terminology.hl7.org/CodeSystem/v2-0074|LAB"
    for patient in patients():
        pid = patient["id"]
        cases = [
            ("DiagnosticReport", f"patient={pid}&category={lab}", "effectiveDateTime"),
            ("Procedure", f"patient={pid}", "performedPeriod"),
            ("Immunization", f"patient={pid}", "occurrenceDateTime"),
        ]
        for resource_type, base, element in cases:
            chosen = records(resource_type, pid)
            starts = sorted(period(r, element)[0] for r in chosen)  # type: ignore[index]
            if not starts:
                continue
            pivot = starts[len(starts) // 2].date().isoformat()
            for prefix in ("ge", "lt", "gt", "le"):
                wanted = ids_of(r for r in chosen if compare(prefix, period(r, element), pivot))
                qs = f"{base}&date={prefix}{pivot}"
                found.check(qs, (await search(repo, resource_type, qs))[0], wanted)
    found.done(PATIENTS * 10)


@ASYNC
async def test_revinclude_provenance_target(repo: Repository) -> None:
    """US Core SHALL ``_revinclude=Provenance:target`` with its searches: the Provenance
    resources whose target is one of the matches."""
    found = Mismatches()
    provenances = of_type("Provenance")
    for patient in patients():
        pid = patient["id"]
        qs = f"patient={pid}&category={OBS_CATEGORY}|vital-signs&_revinclude=Provenance:target"
        got, included = await search(repo, "Observation", qs)
        targets = {f"Observation/{id}" for id in got}
        wanted = {
            f"Provenance/{p['id']}"
            for p in provenances
            if targets & {t["reference"] for t in p["target"]}
        }
        found.check(qs, included, wanted)
        qs = f"_id={pid}&_revinclude=Provenance:target"
        found.check(qs, (await search(repo, "Patient", qs))[1], {f"Provenance/prov-{pid}"})
    found.done(PATIENTS * 2)


@ASYNC
async def test_patient_demographics(repo: Repository) -> None:
    """US Core Patient SHALL ``_id``, ``identifier``, ``name``, ``birthdate`` + ``name``,
    ``gender`` + ``name``; names match ignoring case and accents (search.html#string)."""
    found = Mismatches()
    everyone = patients()
    for patient in everyone:
        name = patient["name"][0]
        family, given = name["family"], name["given"][0]
        same_family = {
            p["id"]
            for p in everyone
            if any(fold(n["family"]).lower().startswith(fold(family).lower()) for n in p["name"])
        }
        checks = {
            f"_id={patient['id']}": {patient["id"]},
            f"family={fold(family).upper()}": same_family,
            f"name={fold(family).lower()}&gender={patient['gender']}": {
                id
                for id in same_family
                if next(p for p in everyone if p["id"] == id)["gender"] == patient["gender"]
            },
            f"birthdate={patient['birthDate']}&given={fold(given)}": {
                p["id"]
                for p in everyone
                if p["birthDate"] == patient["birthDate"]
                and any(
                    fold(g).lower().startswith(fold(given).lower())
                    for n in p["name"]
                    for g in n.get("given", ())
                )
            },
        }
        mrn = next(
            i for i in patient["identifier"] if i["system"] == "http://hospital.smarthealthit.org"
        )
        checks[f"identifier={mrn['system']}|{mrn['value']}"] = {patient["id"]}
        for qs, wanted in checks.items():
            found.check(qs, (await search(repo, "Patient", qs))[0], wanted)
    accented = [g for p in everyone for g in p["name"][0]["given"] if fold(g) != g]
    assert accented, "the sample should exercise accent folding"
    found.done(PATIENTS * 5)


# -- the same through the REST API ----------------------------------------------------------


def test_rest_observation_category_date_with_provenance(client: TestClient) -> None:
    """US Core Observation ``patient`` + ``category`` + ``date=ge`` with
    ``_revinclude=Provenance:target``, through ``GET [base]/Observation`` and its next links:
    matches are mode ``match``, Provenance mode ``include``, none twice."""
    found = Mismatches()
    provenances = of_type("Provenance")
    for patient in patients()[:5]:
        pid = patient["id"]
        observations = [
            o
            for o in records("Observation", pid)
            if (OBS_CATEGORY, "laboratory") in codings(o.get("category"))
        ]
        pivot = middle_day(observations, "effectiveDateTime")
        if pivot is None:
            continue
        wanted = ids_of(
            o for o in observations if compare("ge", period(o, "effectiveDateTime"), pivot)
        )
        targets = {f"Observation/{id}" for id in wanted}
        wanted_included = {
            f"Provenance/{p['id']}"
            for p in provenances
            if targets & {t["reference"] for t in p["target"]}
        }
        url = (
            f"/fhir/Observation?patient={pid}&category={OBS_CATEGORY}|laboratory"
            f"&date=ge{pivot}&_revinclude=Provenance:target&_count=7"
        )
        got, included = rest_search(client, url)
        found.check(url, got, wanted)
        found.check(f"{url} (included)", included, wanted_included)
    found.done(6)


def test_rest_medication_request_with_medication(client: TestClient) -> None:
    """US Core MedicationRequest ``patient`` + ``intent`` with
    ``_include=MedicationRequest:medication`` through the REST API."""
    found = Mismatches()
    for patient in patients():
        pid, requests = patient["id"], records("MedicationRequest", patient["id"])
        medications = {
            r["medicationReference"]["reference"] for r in requests if "medicationReference" in r
        }
        url = (
            f"/fhir/MedicationRequest?patient=Patient/{pid}&intent=order"
            "&_include=MedicationRequest:medication&_count=3"
        )
        got, included = rest_search(client, url)
        found.check(url, got, ids_of(requests))
        found.check(f"{url} (included)", included, medications)
    found.done(PATIENTS)
