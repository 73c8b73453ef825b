"""``Repository.apply`` and ``Transaction.apply``: a FHIR transaction's writes as one atomic
group (https://hl7.org/fhir/R4/http.html#transaction), on every backend. Runs of creates are
written together (:mod:`healthbridge.store.sql.bulk_writes`); they must be stored, versioned,
indexed and evented exactly like single creates."""

from __future__ import annotations

import pytest

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import Conflict, PreconditionFailed
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.store.repository import Change, ChangeFailed, HistoryQuery, Repository

PARSER = SearchParser(load_definitions())


def patient(mrn: str, family: str) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": mrn}],
        "name": [{"family": family}],
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{family}</div>',
        },
    }


async def found(repo: Repository, resource_type: str, **params: str) -> list[str]:
    query = PARSER.parse(resource_type, list(params.items()))
    return sorted(m.id for m in (await repo.search(query)).matches)


async def test_a_group_of_creates_is_stored_indexed_and_evented(repo: Repository) -> None:
    before = len(await repo.outbox_since(0, 1000))
    changes = [
        Change("create", "Patient", f"p{i}", patient(str(i), f"Family{i}")) for i in range(5)
    ]
    changes.append(Change("update", "Patient", "p9", patient("9", "Nine") | {"id": "p9"}))
    applied = await repo.apply(changes)
    assert [a.stored.id for a in applied if a.stored] == ["p0", "p1", "p2", "p3", "p4", "p9"]
    assert all(a.created for a in applied)
    stored = await repo.read("Patient", "p3")
    assert stored.version_id == 1
    assert jsonformat.loads(stored.content)["name"][0]["family"] == "Family3"
    assert await found(repo, "Patient", identifier="urn:mrn|3") == ["p3"]
    assert await found(repo, "Patient", family="Family4") == ["p4"]
    assert await found(repo, "Patient", _text="Family2") == ["p2"]
    history = await repo.history(HistoryQuery("Patient", "p1"))
    assert [e.version_id for e in history.entries] == [1]
    events = (await repo.outbox_since(0, 1000))[before:]
    assert sorted(e.id for e in events) == ["p0", "p1", "p2", "p3", "p4", "p9"]


async def test_a_failing_change_names_itself_and_writes_nothing(repo: Repository) -> None:
    await repo.create("Patient", patient("1", "Existing"), "taken")
    changes = [
        Change("create", "Patient", "new1", patient("2", "New")),
        Change("create", "Patient", "taken", patient("3", "Clash")),
        Change("create", "Patient", "new2", patient("4", "New")),
    ]
    with pytest.raises(ChangeFailed) as failed:
        await repo.apply(changes)
    assert isinstance(failed.value.error, Conflict)
    assert failed.value.index in (0, 1)  # a group of creates may only name its first
    assert await found(repo, "Patient", family="New") == []
    assert await found(repo, "Patient", family="Clash") == []

    stale = [
        Change("create", "Patient", "new3", patient("5", "Later")),
        Change("update", "Patient", "taken", patient("1", "X") | {"id": "taken"}, if_match=7),
    ]
    with pytest.raises(ChangeFailed) as precondition:
        await repo.apply(stale)
    assert precondition.value.index == 1
    assert isinstance(precondition.value.error, PreconditionFailed)
    assert await found(repo, "Patient", family="Later") == []


async def test_apply_inside_a_unit_of_work(repo: Repository) -> None:
    async with repo.transaction() as tx:
        await tx.apply(
            [Change("create", "Patient", f"u{i}", patient(f"u{i}", "Unit")) for i in range(3)]
        )
    assert await found(repo, "Patient", family="Unit") == ["u0", "u1", "u2"]
