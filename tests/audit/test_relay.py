"""The outbox relay: every committed change becomes exactly one AuditEvent naming its author,
also when relayed twice, after a restart or a crash, with one relay among several processes,
and when PostgreSQL commits seqs out of order (SECURITY.md: side effects through the outbox,
at least once, deduplicated by event number; IHE BALP)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from healthbridge.audit.events import AuditSource
from healthbridge.audit.patients import PatientFinder
from healthbridge.audit.recorder import AuditRecorder
from healthbridge.audit.records import AuditRecord, Who
from healthbridge.audit.relay import RELAY_JOB, OutboxRelay
from healthbridge.audit.startup import start_audit
from healthbridge.audit.verify import verify
from healthbridge.fhir.definitions import load_definitions
from healthbridge.store.actor import acting_as
from healthbridge.store.audit import AuditQuery, StoredAuditEvent
from healthbridge.store.repository import Change, OutboxEvent, Repository
from tests.support.clock import FakeClock

KEY = b"k" * 32
SOURCE = AuditSource("http://localhost/fhir")
ALICE = Who(subject="alice", fhir_user="Practitioner/7", client_id="app", jti="t1")
BOB = Who(subject="bob", client_id="app")


@pytest.fixture(scope="module")
def finder() -> PatientFinder:
    return PatientFinder(load_definitions())


def observation(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": f"Patient/{patient}"},
    }


async def write_some(repo: Repository) -> None:
    with acting_as(ALICE.actor()):
        await repo.create("Patient", {"resourceType": "Patient"}, "p1")
        await repo.create("Observation", observation("p1"), "o1")
    with acting_as(BOB.actor()):
        await repo.apply(
            [
                Change("create", "Observation", "o2", observation("p2")),
                Change("create", "Observation", "o3", observation("p1")),
            ]
        )
        await repo.delete("Observation", "o1")


async def events(repo: Repository) -> list[StoredAuditEvent]:
    return (await repo.audit.search(AuditQuery(count=100))).events


def summary(rows: list[StoredAuditEvent]) -> list[tuple[Any, ...]]:
    out = []
    for row in rows:
        resource = json.loads(row.content)
        what = next(e["what"]["reference"] for e in resource["entity"] if e["role"]["code"] == "4")
        out.append((row.source_seq, row.subtype, what, row.patient, row.agent))
    return out


EXPECTED = [
    (1, "create", "Patient/p1/_history/1", "p1", "Practitioner/7"),
    (2, "create", "Observation/o1/_history/1", "p1", "Practitioner/7"),
    (3, "create", "Observation/o2/_history/1", "p2", "bob"),
    (4, "create", "Observation/o3/_history/1", "p1", "bob"),
    (5, "delete", "Observation/o1/_history/2", "p1", "bob"),  # the patient of the version before
]


def relay(
    repo: Repository, finder: PatientFinder | None, owner: str, **options: Any
) -> OutboxRelay:
    return OutboxRelay(repo, KEY, SOURCE, finder, owner=owner, **options)


async def test_each_change_becomes_one_event_naming_its_author(
    repo: Repository, finder: PatientFinder
) -> None:
    await write_some(repo)
    first = relay(repo, finder, "a")
    assert await first.claim()
    assert await first.step() == 5
    assert await first.step() == 0  # nothing new
    assert summary(await events(repo)) == EXPECTED
    assert first.state.cursor == 5
    assert (await verify(repo.audit, KEY)).ok


async def test_a_restart_goes_on_from_the_saved_cursor(
    repo: Repository, finder: PatientFinder
) -> None:
    await write_some(repo)
    first = relay(repo, finder, "a")
    assert await first.claim()
    await first.step()
    await first.release()  # orderly shutdown: cursor saved, job ended
    await repo.create("Patient", {"resourceType": "Patient"}, "p9")
    second = relay(repo, finder, "b")
    assert await second.claim()  # at once: the previous job ended
    assert second.state.cursor == 5
    assert await second.step() == 1
    assert sorted(r.source_seq or 0 for r in await events(repo)) == [1, 2, 3, 4, 5, 6]
    running = await repo.jobs.jobs(RELAY_JOB, "running")
    assert [j.owner for j in running] == ["b"]


async def test_a_crash_before_the_cursor_is_saved_relays_again_but_stores_once(
    repo: Repository, finder: PatientFinder, clock: FakeClock
) -> None:
    await write_some(repo)
    crashed = relay(repo, finder, "a")
    assert await crashed.claim()
    await crashed.step()  # appended; the process dies before saving its cursor
    successor = relay(repo, finder, "b")
    assert not await successor.claim()  # the owner's heartbeat is recent
    clock.advance(seconds=31)
    assert await successor.claim()  # taken over from the silent owner
    assert successor.state.cursor == 0
    assert await successor.step() == 5  # relayed again ...
    assert summary(await events(repo)) == EXPECTED  # ... and stored once
    assert await successor.save(force=True)
    assert not await crashed.save(force=True)  # the old owner lost the job
    assert crashed.job is None


async def test_two_processes_starting_together_run_one_relay(repo: Repository) -> None:
    a, b = relay(repo, None, "a"), relay(repo, None, "b")
    assert await a.claim()
    assert not await b.claim()
    await a.release()
    assert await b.claim()


class Delayed:
    """A repository whose outbox hides some seqs for a while: on PostgreSQL a transaction that
    took seq 2 may commit after the one that took seq 3."""

    def __init__(self, repo: Repository, hidden: set[int]) -> None:
        self.repo = repo
        self.hidden = hidden

    async def outbox_since(self, after_seq: int, limit: int = 100) -> list[OutboxEvent]:
        found = await self.repo.outbox_since(after_seq, limit + len(self.hidden))
        return [e for e in found if e.seq not in self.hidden][:limit]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.repo, name)


async def test_a_seq_committed_late_is_not_skipped(repo: Repository) -> None:
    await write_some(repo)
    delayed = Delayed(repo, {2})
    late = OutboxRelay(delayed, KEY, SOURCE, None, owner="a")  # type: ignore[arg-type]
    assert await late.claim()
    assert await late.step() == 4
    assert late.state.cursor == 1 and set(late.state.gaps) == {2}  # the cursor waits at the gap
    delayed.hidden.clear()  # seq 2's transaction commits
    assert await late.step() == 1
    assert late.state.cursor == 5 and not late.state.gaps
    assert sorted(r.source_seq or 0 for r in await events(repo)) == [1, 2, 3, 4, 5]


async def test_a_gap_that_never_fills_is_given_up_after_the_timeout(repo: Repository) -> None:
    await write_some(repo)
    now = [0.0]
    delayed = Delayed(repo, {3})
    late = OutboxRelay(  # type: ignore[arg-type]
        delayed, KEY, SOURCE, None, owner="a", gap_timeout=60, clock=lambda: now[0]
    )
    assert await late.claim()
    await late.step()
    assert late.state.cursor == 2
    now[0] = 61  # a rolled-back transaction's seq never appears
    await late.step()
    assert late.state.cursor == 5 and not late.state.gaps


async def test_start_audit_records_requests_and_relays_writes(
    repo: Repository, clock: FakeClock
) -> None:
    recorder: AuditRecorder = await start_audit(
        repo, key=KEY, base_url="http://localhost/fhir", flush_seconds=0.01
    )
    await write_some(repo)
    recorder.record(
        AuditRecord(
            interaction="read", resource_type="Patient", id="p1", who=ALICE, patients=("p1",)
        )
    )
    assert recorder.relay is not None
    for _ in range(300):
        if recorder.relay.state.cursor == 5:
            break
        await _sleep()
    await recorder.close()
    rows = await events(repo)
    assert sorted(r.subtype or "" for r in rows) == ["create"] * 4 + ["delete", "read"]
    by_patient = await repo.audit.search(AuditQuery(patient=("p1",), count=100))
    assert len(by_patient.events) == 5
    assert (await verify(repo.audit, KEY)).ok
    [job] = await repo.jobs.jobs(RELAY_JOB)
    assert (job.state, job.cursor) == ("done", "5")


async def _sleep() -> None:
    await asyncio.sleep(0.01)
