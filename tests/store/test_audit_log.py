"""The audit log contract (healthbridge.store.audit) on memory, SQLite and PostgreSQL: numbered,
hash-chained appends, deduplication by outbox event, searches by patient, agent, type and period
with keyset paging (https://hl7.org/fhir/R4/auditevent.html#search, IHE BALP)."""

from __future__ import annotations

import asyncio
import json

import pytest

from healthbridge.fhir.errors import InvalidRequest, NotFound
from healthbridge.store.audit import (
    GENESIS,
    AuditEntry,
    AuditQuery,
    chain_link,
    stored_digest,
)
from healthbridge.store.repository import Repository

KEY = b"k" * 32
T0 = 1_767_268_800_000_000  # 2026-01-01T12:00:00Z in microseconds


def entry(
    n: int,
    *,
    patient: str | None = None,
    agent: str | None = "Practitioner/1",
    type: str = "rest",
    subtype: str = "read",
    source_seq: int | None = None,
    recorded: int | None = None,
) -> AuditEntry:
    body = json.dumps({"resourceType": "AuditEvent", "n": n}, separators=(",", ":")).encode()
    return AuditEntry(
        recorded=T0 + n * 1_000_000 if recorded is None else recorded,
        type=type,
        subtype=subtype,
        action="R",
        outcome="0",
        patient=patient,
        agent=agent,
        client="app",
        body=body,
        source_seq=source_seq,
    )


async def test_append_numbers_and_chains_rows(repo: Repository) -> None:
    assert await repo.audit.head() is None
    assert await repo.audit.append([entry(1), entry(2)], KEY) == [1, 2]
    assert await repo.audit.append([entry(3)], KEY) == [3]
    rows = await repo.audit.scan(0, 10)
    assert [r.seq for r in rows] == [1, 2, 3]
    previous = GENESIS
    for row in rows:
        assert json.loads(row.content) == {
            "resourceType": "AuditEvent",
            "id": str(row.seq),
            "n": row.seq,
        }
        assert row.digest == stored_digest(row)
        assert row.chain == chain_link(KEY, previous, row.seq, row.digest)
        previous = row.chain
    head = await repo.audit.head()
    assert head is not None and (head.seq, head.chain) == (3, previous)
    assert (await repo.audit.read(2)).content == rows[1].content
    assert [r.seq for r in await repo.audit.scan(1, 1)] == [2]
    with pytest.raises(NotFound):
        await repo.audit.read(4)


async def test_an_outbox_event_is_stored_once(repo: Repository) -> None:
    """SECURITY.md: side effects at least once, deduplicated by event number."""
    assert await repo.audit.append([entry(1, source_seq=7), entry(2, source_seq=8)], KEY) == [1, 2]
    again = [entry(1, source_seq=7), entry(3, source_seq=9), entry(4), entry(5, source_seq=9)]
    assert await repo.audit.append(again, KEY) == [3, 4]
    assert await repo.audit.append([entry(1, source_seq=7)], KEY) == []
    rows = await repo.audit.scan(0, 10)
    assert [r.source_seq for r in rows] == [7, 8, 9, None]


async def test_concurrent_appends_form_one_chain(repo: Repository) -> None:
    await asyncio.gather(*(repo.audit.append([entry(i), entry(i)], KEY) for i in range(20)))
    rows = await repo.audit.scan(0, 100)
    assert [r.seq for r in rows] == list(range(1, 41))
    previous = GENESIS
    for row in rows:
        assert row.chain == chain_link(KEY, previous, row.seq, row.digest)
        previous = row.chain


async def _filled(repo: Repository) -> None:
    entries = [
        entry(1, patient="p1", agent="Practitioner/1"),
        entry(2, patient="p2", agent="Practitioner/1", subtype="search-type"),
        entry(3, patient="p1", agent="Practitioner/2", subtype="update"),
        entry(4, agent="alice", type="110114", subtype="110122"),
        entry(5, patient="p1", agent="Practitioner/1", recorded=T0 + 3_000_000),  # ties with 3
        entry(6, patient="p1", agent="Practitioner/1"),
    ]
    await repo.audit.append(entries, KEY)


def seqs(page_events: list[object]) -> list[int]:
    return [e.seq for e in page_events]  # type: ignore[attr-defined]


async def test_search_by_patient_agent_type_and_period(repo: Repository) -> None:
    await _filled(repo)

    async def found(**criteria: object) -> list[int]:
        return seqs((await repo.audit.search(AuditQuery(**criteria))).events)  # type: ignore[arg-type]

    assert await found(patient=("p1",)) == [1, 3, 5, 6]
    assert await found(patient=("p1", "p2")) == [1, 2, 3, 5, 6]
    assert await found(agent=("Practitioner/2", "alice")) == [3, 4]
    assert await found(type=("110114",)) == [4]
    assert await found(subtype=("update", "search-type")) == [2, 3]
    assert await found(patient=("p1",), agent=("Practitioner/1",)) == [1, 5, 6]
    assert await found(since=T0 + 2_000_000, before=T0 + 4_000_000) == [2, 3, 5]
    assert await found(patient=("nobody",)) == []
    assert await found(action=("R",), outcome=("0",)) == [1, 2, 3, 5, 4, 6]


async def test_search_sorts_and_pages_with_a_cursor(repo: Repository) -> None:
    await _filled(repo)
    ascending = AuditQuery(count=2, total=True)
    page = await repo.audit.search(ascending)
    assert seqs(page.events) == [1, 2] and page.total == 6 and page.next_cursor
    order = seqs(page.events)
    while page.next_cursor:
        page = await repo.audit.search(ascending, page.next_cursor)
        order += seqs(page.events)
    assert order == [1, 2, 3, 5, 4, 6]  # by recorded, ties by seq

    descending = AuditQuery(count=4, descending=True)
    page = await repo.audit.search(descending)
    assert seqs(page.events) == [6, 4, 5, 3] and page.total is None
    assert page.next_cursor is not None
    rest = await repo.audit.search(descending, page.next_cursor)
    assert seqs(rest.events) == [2, 1] and rest.next_cursor is None
    with pytest.raises(InvalidRequest):
        await repo.audit.search(ascending, page.next_cursor)  # made for the other order
    with pytest.raises(InvalidRequest):
        await repo.audit.search(ascending, "not-a-cursor")


async def test_a_page_survives_appends_in_between(repo: Repository) -> None:
    await _filled(repo)
    page = await repo.audit.search(AuditQuery(count=3, patient=("p1",)))
    await repo.audit.append([entry(0, patient="p1", recorded=T0)], KEY)  # before the cursor
    rest = await repo.audit.search(AuditQuery(count=3, patient=("p1",)), page.next_cursor)
    assert seqs(page.events) + seqs(rest.events) == [1, 3, 5, 6]
