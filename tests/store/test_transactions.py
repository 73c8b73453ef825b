"""Contract: units of work and the outbox on every backend.

Spec: https://hl7.org/fhir/R4/http.html#transaction (a transaction Bundle succeeds or fails as a
whole: one FHIR transaction is one database transaction) and https://hl7.org/fhir/R4/http.html
#history (every committed change is a version). Each committed change writes one outbox row in
the same database transaction; a rolled-back one writes none.
"""

from __future__ import annotations

import pytest

from healthbridge.fhir.errors import Conflict, NotFound, PreconditionFailed
from healthbridge.store.repository import HistoryQuery, Repository

PATIENT = {"resourceType": "Patient"}


class Boom(Exception):
    pass


async def test_an_exception_rolls_everything_back(repo: Repository) -> None:
    await repo.create("Patient", PATIENT, id="kept")
    with pytest.raises(Boom):
        async with repo.transaction() as tx:
            await tx.create("Patient", PATIENT, id="new")
            await tx.update("Patient", "kept", {**PATIENT, "active": True})
            await tx.delete("Patient", "kept")
            raise Boom
    with pytest.raises(NotFound):
        await repo.read("Patient", "new")
    assert (await repo.read("Patient", "kept")).version_id == 1
    assert (await repo.history(HistoryQuery())).total == 1
    assert len(await repo.outbox_since(0)) == 1


async def test_a_failed_precondition_escaping_rolls_back(repo: Repository) -> None:
    await repo.create("Patient", PATIENT, id="p")
    with pytest.raises(PreconditionFailed):
        async with repo.transaction() as tx:
            await tx.update("Patient", "p", PATIENT)
            await tx.update("Patient", "p", PATIENT, if_match=1)  # now at 2
    assert (await repo.read("Patient", "p")).version_id == 1


async def test_a_caught_contract_error_leaves_the_unit_usable(repo: Repository) -> None:
    await repo.create("Patient", PATIENT, id="p")
    async with repo.transaction() as tx:
        with pytest.raises(Conflict):
            await tx.create("Patient", PATIENT, id="p")
        stored, _ = await tx.update("Patient", "p", PATIENT)
    assert (await repo.read("Patient", "p")).version_id == stored.version_id == 2


async def test_reads_inside_see_the_units_writes_others_do_not(repo: Repository) -> None:
    async with repo.transaction() as tx:
        created = await tx.create("Patient", PATIENT, id="p")
        assert await tx.read("Patient", "p") == created
        updated, _ = await tx.update("Patient", "p", {**PATIENT, "active": True})
        assert (await tx.read("Patient", "p")).content == updated.content
        with pytest.raises(NotFound):
            await repo.read("Patient", "p")  # not committed yet
    assert (await repo.read("Patient", "p")).content == updated.content
    assert [e.version_id for e in (await repo.history(HistoryQuery("Patient", "p"))).entries] == [
        2,
        1,
    ]


async def test_outbox_has_one_event_per_committed_change(repo: Repository) -> None:
    async with repo.transaction() as tx:
        a = await tx.create("Patient", PATIENT)
        b, _ = await tx.update("Patient", "b", PATIENT)
    with pytest.raises(Boom):
        async with repo.transaction() as tx:
            await tx.create("Patient", PATIENT)
            raise Boom
    deleted = await repo.delete("Patient", a.id)
    assert deleted is not None
    events = await repo.outbox_since(0)
    assert [(e.resource_type, e.id, e.version_id, e.method) for e in events] == [
        ("Patient", a.id, 1, "create"),
        ("Patient", "b", 1, "update"),
        ("Patient", a.id, 2, "delete"),
    ]
    assert [e.recorded for e in events] == [a.last_updated, b.last_updated, deleted.last_updated]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


async def test_outbox_since_pages_in_sequence_order(repo: Repository) -> None:
    for n in range(5):
        await repo.create("Patient", PATIENT, id=f"p{n}")
    first = await repo.outbox_since(0, limit=2)
    assert [e.id for e in first] == ["p0", "p1"]
    rest = await repo.outbox_since(first[-1].seq, limit=10)
    assert [e.id for e in rest] == ["p2", "p3", "p4"]
    assert await repo.outbox_since(rest[-1].seq) == []
