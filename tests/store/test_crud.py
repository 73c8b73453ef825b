"""Contract: create, read, vread, update and delete on every backend.

Spec: https://hl7.org/fhir/R4/http.html#create, #read, #vread, #update, #delete,
#versioning (server-assigned ``meta.versionId``/``meta.lastUpdated``) and #concurrency (If-Match).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import (
    Conflict,
    Gone,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
)
from healthbridge.store.repository import Repository
from tests.support.clock import START, FakeClock

PATIENT = {"resourceType": "Patient", "active": True}


async def test_create_assigns_uuid_version_1_and_meta(repo: Repository) -> None:
    stored = await repo.create("Patient", PATIENT)
    assert uuid.UUID(stored.id).version == 4
    assert (stored.version_id, stored.method, stored.deleted) == (1, "create", False)
    assert stored.etag == 'W/"1"'
    assert stored.last_updated == START
    body = jsonformat.loads(stored.content)
    assert body["id"] == stored.id
    assert body["meta"] == {"versionId": "1", "lastUpdated": "2026-01-01T12:00:00.000000Z"}


async def test_read_returns_the_exact_stored_bytes(repo: Repository) -> None:
    """Decimals keep their precision (https://hl7.org/fhir/R4/json.html#primitive)."""
    body = b'{"resourceType":"Observation","status":"final","valueQuantity":{"value":72.50}}'
    stored = await repo.create("Observation", jsonformat.loads(body))
    read = await repo.read("Observation", stored.id)
    assert read.content == stored.content
    assert b'"value":72.50' in read.content
    assert jsonformat.loads(read.content)["valueQuantity"]["value"] == Decimal("72.50")
    assert read == stored


async def test_client_meta_and_id_are_overridden(repo: Repository) -> None:
    sent = {
        "resourceType": "Patient",
        "id": "client-chose-this",
        "meta": {"versionId": "99", "lastUpdated": "1999-01-01T00:00:00Z", "tag": [{"code": "x"}]},
    }
    stored = await repo.create("Patient", sent)
    meta = jsonformat.loads(stored.content)["meta"]
    assert stored.id != "client-chose-this"
    assert meta["versionId"] == "1"
    assert meta["lastUpdated"] == "2026-01-01T12:00:00.000000Z"
    assert meta["tag"] == [{"code": "x"}]


async def test_unknown_resources_are_not_found(repo: Repository) -> None:
    with pytest.raises(NotFound):
        await repo.read("Patient", "nope")
    with pytest.raises(NotFound):
        await repo.read("Patient", "bad id\x00")
    stored = await repo.create("Patient", PATIENT)
    with pytest.raises(NotFound):
        await repo.read("Observation", stored.id)
    with pytest.raises(NotFound):
        await repo.vread("Patient", stored.id, 2)


async def test_update_makes_the_next_version(repo: Repository, clock: FakeClock) -> None:
    first = await repo.create("Patient", PATIENT)
    clock.advance(seconds=1)
    second, created = await repo.update("Patient", first.id, {**PATIENT, "active": False})
    assert (second.version_id, second.method, created) == (2, "update", False)
    assert second.last_updated == START + timedelta(seconds=1)
    assert (await repo.read("Patient", first.id)).content == second.content
    assert (await repo.vread("Patient", first.id, 1)).content == first.content
    assert (await repo.vread("Patient", first.id, 2)).content == second.content


async def test_update_as_create_with_a_client_id(repo: Repository) -> None:
    stored, created = await repo.update("Patient", "p-1", PATIENT)
    assert (stored.id, stored.version_id, stored.method, created) == ("p-1", 1, "update", True)
    assert jsonformat.loads((await repo.read("Patient", "p-1")).content)["id"] == "p-1"


async def test_last_updated_strictly_increases_when_the_clock_stands_still(
    repo: Repository, clock: FakeClock
) -> None:
    stored, _ = await repo.update("Patient", "p", PATIENT)
    clock.set(START - timedelta(hours=1))  # even when the clock goes back
    again, _ = await repo.update("Patient", "p", PATIENT)
    third, _ = await repo.update("Patient", "p", PATIENT)
    assert again.last_updated == stored.last_updated + timedelta(microseconds=1)
    assert third.last_updated == stored.last_updated + timedelta(microseconds=2)
    assert jsonformat.loads(third.content)["meta"]["lastUpdated"] == "2026-01-01T12:00:00.000002Z"


async def test_if_match_current_version_succeeds(repo: Repository) -> None:
    first = await repo.create("Patient", PATIENT)
    second, _ = await repo.update("Patient", first.id, PATIENT, if_match=1)
    assert second.version_id == 2
    deleted = await repo.delete("Patient", first.id, if_match=2)
    assert deleted is not None and deleted.version_id == 3


async def test_if_match_mismatch_is_precondition_failed_and_writes_nothing(
    repo: Repository,
) -> None:
    first = await repo.create("Patient", PATIENT)
    with pytest.raises(PreconditionFailed):
        await repo.update("Patient", first.id, PATIENT, if_match=7)
    with pytest.raises(PreconditionFailed):
        await repo.delete("Patient", first.id, if_match=7)
    with pytest.raises(PreconditionFailed):  # no current version at all
        await repo.update("Patient", "absent", PATIENT, if_match=1)
    with pytest.raises(PreconditionFailed):
        await repo.delete("Patient", "absent", if_match=1)
    assert (await repo.read("Patient", first.id)).version_id == 1
    assert len(await repo.outbox_since(0)) == 1


async def test_create_with_an_existing_id_is_a_conflict(repo: Repository) -> None:
    await repo.create("Patient", PATIENT, id="p-1")
    with pytest.raises(Conflict):
        await repo.create("Patient", PATIENT, id="p-1")
    await repo.delete("Patient", "p-1")
    with pytest.raises(Conflict):  # its history still holds version 1
        await repo.create("Patient", PATIENT, id="p-1")
    other = await repo.create("Observation", {"resourceType": "Observation"}, id="p-1")
    assert other.version_id == 1  # ids are per type


async def test_delete_records_a_version_and_read_is_gone(repo: Repository) -> None:
    first = await repo.create("Patient", PATIENT)
    deleted = await repo.delete("Patient", first.id)
    assert deleted is not None
    assert (deleted.version_id, deleted.method, deleted.deleted, deleted.content) == (
        2,
        "delete",
        True,
        b"",
    )
    with pytest.raises(Gone) as gone:
        await repo.read("Patient", first.id)
    assert gone.value.headers == {"ETag": 'W/"2"'}
    with pytest.raises(Gone):
        await repo.vread("Patient", first.id, 2)
    assert (await repo.vread("Patient", first.id, 1)).content == first.content


async def test_deleting_nothing_returns_none(repo: Repository) -> None:
    assert await repo.delete("Patient", "never") is None
    first = await repo.create("Patient", PATIENT)
    await repo.delete("Patient", first.id)
    assert await repo.delete("Patient", first.id) is None
    assert len(await repo.outbox_since(0)) == 2


async def test_update_after_delete_recreates_with_the_next_version(repo: Repository) -> None:
    first = await repo.create("Patient", PATIENT)
    await repo.delete("Patient", first.id)
    again, created = await repo.update("Patient", first.id, PATIENT, if_match=2)
    assert (again.version_id, created) == (3, True)
    assert (await repo.read("Patient", first.id)).version_id == 3


async def test_invalid_ids_are_rejected_on_write(repo: Repository) -> None:
    """https://hl7.org/fhir/R4/datatypes.html#id: 1-64 of A-Z a-z 0-9 - ."""
    for bad in ("", "a b", "x" * 65, "nul\x00", "ü"):
        with pytest.raises(InvalidRequest):
            await repo.create("Patient", PATIENT, id=bad)
        with pytest.raises(InvalidRequest):
            await repo.update("Patient", bad, PATIENT)
    assert await repo.outbox_since(0) == []


async def test_ping(repo: Repository) -> None:
    await repo.ping()


async def test_many_versions_in_one_read(repo: Repository) -> None:
    """``versions``: the subscription dispatcher reads the versions of a batch of changes at
    once; each comes back as stored (a delete too), None where unknown, in the order asked."""
    first = await repo.create("Patient", PATIENT)
    second, _ = await repo.update("Patient", first.id, {**PATIENT, "active": False})
    deleted = await repo.delete("Patient", first.id)
    other = await repo.create("Observation", {"resourceType": "Observation", "status": "final"})
    many = [("Observation", f"o{n}", 1) for n in range(70)]  # more than one statement's worth
    keys = [
        ("Patient", first.id, 2),
        ("Patient", first.id, 9),
        ("Observation", other.id, 1),
        ("Patient", first.id, 1),
        ("Patient", first.id, 3),
        ("Patient", "not a valid id!", 1),
        ("Patient", first.id, 1),
        *many,
    ]
    found = await repo.versions(keys)
    assert len(found) == len(keys)
    assert found[0] is not None and found[0].content == second.content
    assert found[1] is None
    assert found[2] is not None and found[2].content == other.content
    assert found[3] is not None and found[3].content == first.content
    assert found[4] is not None and found[4].deleted and deleted is not None
    assert found[5] is None
    assert found[6] == found[3]
    assert found[7:] == [None] * 70
    assert await repo.versions([]) == []
