"""``healthbridge import``: the bulk loader, run through the CLI on a temporary SQLite database.

Inputs are FHIR JSON (https://hl7.org/fhir/R4/json.html), Bundles
(https://hl7.org/fhir/R4/bundle.html; transactions and batches as in
https://hl7.org/fhir/R4/http.html#transaction) and Bulk Data NDJSON
(https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-output-file-format). Results are read
back through the repository.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import tarfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import Result
from typer.testing import CliRunner

from healthbridge.cli import app
from healthbridge.cli.import_sources import discover
from healthbridge.cli.importer import keep_ids, plan
from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import NotFound
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.store.repository import Repository
from healthbridge.store.sql import open_repository
from tests.support import databases

T = TypeVar("T")
SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea"
SYNTHEA_TAR = SYNTHEA / "synthea-r4-100-patients.tar.gz"


def _write(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


def _ndjson(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[databases.PostgresDatabase]:
    with databases.postgres_database() as db:
        yield db


@pytest.fixture(params=databases.SQL_BACKEND_PARAMS)
def database(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: databases.PostgresDatabase
) -> str:
    """The database URL to import into: a SQLite file, or the module's PostgreSQL database."""
    if request.param == "postgresql":
        return postgres_database.require()
    return databases.sqlite_url(tmp_path)


def _import(tmp_path: Path, *args: str, url: str | None = None) -> tuple[Result, str]:
    url = url or f"sqlite:///{tmp_path / 'hb.db'}"
    errors = tmp_path / "errors.jsonl"
    options = ["--database", url, "--errors", str(errors)]
    result = CliRunner().invoke(app, ["import", *args, *options])
    return result, url


def _with_repository(url: str, use: Callable[[Repository], Awaitable[T]]) -> T:
    async def run() -> T:
        repository = await open_repository(url)
        try:
            return await use(repository)
        finally:
            await repository.close()

    return asyncio.run(run())


def _read(url: str, resource_type: str, id: str) -> dict[str, Any] | None:
    async def read(repository: Repository) -> dict[str, Any] | None:
        try:
            stored = await repository.read(resource_type, id)
        except NotFound:
            return None
        return dict(jsonformat.loads(stored.content))

    return _with_repository(url, read)


def _search(url: str, resource_type: str, **params: str) -> list[dict[str, Any]]:
    query = SearchParser(load_definitions()).parse(resource_type, list(params.items()))

    async def search(repository: Repository) -> list[dict[str, Any]]:
        page = await repository.search(query)
        return [dict(jsonformat.loads(found.content)) for found in page.matches]

    return _with_repository(url, search)


def _errors(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "errors.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _transaction(patient_id: str, *, bad_observation: bool = False) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "heart rate"},
        "subject": {"reference": "urn:uuid:8c6d1b4a-0000-4000-8000-000000000001"},
        "valueQuantity": {"value": 72.50, "unit": "/min"},
    }
    if bad_observation:
        observation["status"] = "not-a-status"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:8c6d1b4a-0000-4000-8000-000000000001",
                "resource": {"resourceType": "Patient", "id": patient_id, "gender": "female"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:8c6d1b4a-0000-4000-8000-000000000002",
                "resource": observation,
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


def test_transaction_bundle_resolves_urn_uuid_references(tmp_path: Path, database: str) -> None:
    """A transaction's urn:uuid references point at the stored resources afterwards
    (http.html#trules); the Patient keeps its id (POST with an id is loaded as PUT)."""
    source = _write(tmp_path / "in" / "tx.json", _transaction("tx-patient"))
    result, url = _import(tmp_path, str(source), url=database)
    assert result.exit_code == 0, result.output
    assert _read(url, "Patient", "tx-patient") is not None
    [observation] = _search(url, "Observation", subject="Patient/tx-patient")
    assert observation["subject"]["reference"] == "Patient/tx-patient"
    assert "resources loaded" in result.output and _errors(tmp_path) == []


def test_imported_writes_name_the_operator_in_the_audit_trail(tmp_path: Path) -> None:
    """Every write of an import is audited (from the outbox) as the operator's: the outbox
    rows carry the ``cli:import`` actor."""
    source = _write(tmp_path / "in" / "tx.json", _transaction("audited"))
    result, url = _import(tmp_path, str(source))
    assert result.exit_code == 0, result.output
    events = _with_repository(url, lambda repository: repository.outbox_since(0))
    assert len(events) == 2
    assert all(json.loads(e.actor or "{}")["subject"].startswith("cli:import:") for e in events)


def test_a_failing_transaction_loads_nothing_and_names_the_entry(tmp_path: Path) -> None:
    """A transaction is all or nothing (http.html#transaction): its Patient is not stored."""
    source = _write(tmp_path / "in" / "tx.json", _transaction("tx-bad", bad_observation=True))
    result, url = _import(tmp_path, str(source))
    assert result.exit_code == 1, result.output
    assert _read(url, "Patient", "tx-bad") is None
    [failure] = _errors(tmp_path)
    assert failure["entry"] == 1 and failure["resources"] == 2
    assert failure["location"].endswith("tx.json: Bundle.entry[1]")
    assert "not-a-status" in failure["diagnostics"]


def test_server_ids_option_keeps_post_entries_as_posts(tmp_path: Path) -> None:
    """``--server-ids``: POST entries get new ids from the server (http.html#create)."""
    source = _write(tmp_path / "in" / "tx.json", _transaction("kept-id"))
    result, url = _import(tmp_path, str(source), "--server-ids")
    assert result.exit_code == 0, result.output
    assert _read(url, "Patient", "kept-id") is None
    [patient] = _search(url, "Patient", gender="female")
    [observation] = _search(url, "Observation", subject=f"Patient/{patient['id']}")
    assert observation["subject"]["reference"] == f"Patient/{patient['id']}"


def test_collection_bundle_loads_each_entry(tmp_path: Path) -> None:
    """Collection entries are resources, not requests: with an id each is stored under it
    (update as create, http.html#upsert), without one it is created."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Organization", "id": "org-1", "name": "North"}},
            {"resource": {"resourceType": "Patient", "id": "pat-1", "gender": "male"}},
            {"resource": {"resourceType": "Organization", "name": "No id"}},
        ],
    }
    result, url = _import(tmp_path, str(_write(tmp_path / "in" / "c.json", bundle)))
    assert result.exit_code == 0, result.output
    assert (_read(url, "Organization", "org-1") or {})["name"] == "North"
    assert _read(url, "Patient", "pat-1") is not None
    assert [o["name"] for o in _search(url, "Organization", name="No id")] == ["No id"]


def test_ndjson_broken_line_is_reported_and_the_rest_loads(tmp_path: Path) -> None:
    source = _ndjson(
        tmp_path / "in" / "Patient.ndjson",
        [
            '{"resourceType":"Patient","id":"n1","gender":"male"}',
            '{"resourceType":"Patient","id":"n2",',  # broken: line 2
            "",
            '{"resourceType":"Patient","id":"n4","birthDate":"2001-02-30"}',  # invalid: line 4
            '{"resourceType":"Patient","id":"n5"}',
        ],
    )
    result, url = _import(tmp_path, str(source), "--batch-size", "2")
    assert result.exit_code == 1, result.output
    assert all(_read(url, "Patient", id) is not None for id in ("n1", "n5"))
    assert _read(url, "Patient", "n4") is None
    failures = {f["line"]: f for f in _errors(tmp_path)}
    assert set(failures) == {2, 4}
    assert failures[2]["location"].endswith("Patient.ndjson:2")
    assert "not valid JSON" in failures[2]["diagnostics"]
    assert failures[4]["resource"] == "Patient/n4" and failures[4]["status"] == 400
    assert "Patient.ndjson:2" in result.output and "Patient.ndjson:4" in result.output


def test_directory_mix(tmp_path: Path, database: str) -> None:
    """Directories are searched recursively for JSON and NDJSON, gzip or not; other files are
    ignored; shared resources go first; a batch entry fails on its own (http.html#brules)."""
    root = tmp_path / "in"
    _ndjson(
        root / "bulk" / "Organization.ndjson.gz",
        ['{"resourceType":"Organization","id":"o1","name":"One"}'],
        gz=True,
    )
    _ndjson(
        root / "bulk" / "Observation.ndjson",
        [
            json.dumps(
                {
                    "resourceType": "Observation",
                    "id": f"obs-{i}",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "Patient/single"},
                    "performer": [{"reference": "Organization/o1"}],
                }
            )
            for i in range(5)
        ],
    )
    _write(root / "single.json", {"resourceType": "Patient", "id": "single"})
    compressed = gzip.compress(json.dumps(_transaction("gz-patient")).encode())
    (root / "deeper" / "tx.json.gz").parent.mkdir(parents=True)
    (root / "deeper" / "tx.json.gz").write_bytes(compressed)
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "id": "b1"},
                "request": {"method": "PUT", "url": "Patient/b1"},
            },
            {
                "resource": {"resourceType": "Patient", "id": "b2", "gender": "nope"},
                "request": {"method": "PUT", "url": "Patient/b2"},
            },
        ],
    }
    _write(root / "batch.json", batch)
    (root / "notes.txt").write_text("not FHIR")
    (root / ".hidden").mkdir()
    _write(root / ".hidden" / "skip.json", {"resourceType": "Patient", "id": "hidden"})

    files = discover([root])
    assert {f.name for f in files} == {
        "Organization.ndjson.gz",
        "Observation.ndjson",
        "single.json",
        "tx.json.gz",
        "batch.json",
    }
    shared, _ = plan(files, load_definitions())
    assert [f.name for f in shared] == ["Organization.ndjson.gz"]

    result, url = _import(tmp_path, str(root), "--workers", "3", url=database)
    assert result.exit_code == 1, result.output
    for type_, id in [
        ("Organization", "o1"),
        ("Patient", "single"),
        ("Patient", "gz-patient"),
        ("Patient", "b1"),
        ("Observation", "obs-4"),
    ]:
        assert _read(url, type_, id) is not None, (type_, id)
    assert _read(url, "Patient", "b2") is None and _read(url, "Patient", "hidden") is None
    [failure] = _errors(tmp_path)
    assert failure["location"].endswith("batch.json: Bundle.entry[1]")
    assert failure["status"] == 400 and "gender" in failure["diagnostics"]


def test_unreadable_files_are_reported_and_the_rest_loads(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _write(root / "good.json", {"resourceType": "Patient", "id": "good"})
    (root / "damaged.ndjson.gz").write_bytes(b"\x1f\x8b\x08\x00not really gzip")
    (root / "history.json").write_text(json.dumps({"resourceType": "Bundle", "type": "history"}))
    (root / "array.json").write_text("[]")
    result, url = _import(tmp_path, str(root))
    assert result.exit_code == 1, result.output
    assert _read(url, "Patient", "good") is not None
    failures = {Path(f["file"]).name: f["diagnostics"] for f in _errors(tmp_path)}
    assert set(failures) == {"damaged.ndjson.gz", "history.json", "array.json"}
    assert "Cannot read the file" in failures["damaged.ndjson.gz"]
    assert "'history' cannot be loaded" in failures["history.json"]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    missing, _ = _import(tmp_path, str(tmp_path / "nowhere"))
    assert missing.exit_code == 2
    (tmp_path / "empty").mkdir()
    empty, _ = _import(tmp_path, str(tmp_path / "empty"))
    assert empty.exit_code == 2 and "No FHIR files found" in empty.output


def test_keep_ids_turns_plain_posts_into_puts() -> None:
    """POST with an id becomes ``PUT [type]/[id]``; conditional creates stay POSTs."""
    bundle = _transaction("p")
    bundle["entry"][1]["request"]["ifNoneExist"] = "identifier=x|1"
    bundle["entry"][1]["resource"]["id"] = "o"
    entries = keep_ids(bundle)["entry"]
    assert entries[0]["request"] == {"method": "PUT", "url": "Patient/p"}
    assert entries[1]["request"]["method"] == "POST"
    assert bundle["entry"][0]["request"]["method"] == "POST"  # the input is not changed


@pytest.mark.shared_data
def test_synthea_patients_load_after_the_information_bundles(tmp_path: Path) -> None:
    """Three Synthea patients (transaction Bundles) and the two Information bundles they refer
    to, from ../shared/data/synthea."""
    if not SYNTHEA_TAR.exists():
        pytest.skip(f"shared data not available: {SYNTHEA_TAR} (see ../shared/data/README.md)")
    source = tmp_path / "synthea"
    source.mkdir()
    with tarfile.open(SYNTHEA_TAR, "r:gz") as tar:
        names = sorted(n for n in tar.getnames() if n.endswith(".json"))
        info = [n for n in names if "Information" in n]
        patients = [n for n in names if "Information" not in n][:3]
        for name in [*info, *patients]:
            member = tar.extractfile(name)
            assert member is not None
            (source / Path(name).name).write_bytes(member.read())
    expected = sum(
        len(json.loads((source / Path(n).name).read_text())["entry"]) for n in info + patients
    )
    files = discover([source])
    shared, _ = plan(files, load_definitions())
    assert sorted(f.name for f in shared) == sorted(Path(n).name for n in info)

    result, url = _import(tmp_path, str(source))
    assert result.exit_code == 0, result.output
    assert f"{expected:,}" in result.output
    for name in patients:
        bundle = json.loads((source / Path(name).name).read_text())
        [patient] = [e["resource"] for e in bundle["entry"] if "Patient" in e["request"]["url"]]
        assert _read(url, "Patient", patient["id"]) is not None
        encounters = _search(url, "Encounter", subject=f"Patient/{patient['id']}", _count="500")
        expected_encounters = [
            e for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"
        ]
        assert len(encounters) == len(expected_encounters)
        organizations = {e["serviceProvider"]["reference"] for e in encounters}
        for reference in organizations:
            type_, id = reference.split("/")
            assert _read(url, type_, id) is not None, reference
