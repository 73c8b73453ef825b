"""Single changes on the SQL backends: group commit on SQLite, one statement on PostgreSQL.

Spec: https://hl7.org/fhir/R4/http.html#transactional-integrity (a change is applied whole or not
at all) and #versioning. A plain create, update or delete is acknowledged only once it is
durable. On SQLite, changes queued together share one transaction and one COMMIT, each in its own
savepoint, so one change failing leaves the others alone, and a COMMIT that fails acknowledges
none of them. On PostgreSQL a create is one autocommitted statement and an update two (read, then
compare-and-set); neither opens an explicit transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from healthbridge.fhir.errors import Conflict, NotFound, PreconditionFailed, Unavailable
from healthbridge.fhir.types import Resource
from healthbridge.store.repository import HistoryQuery, Repository, StoredResource
from healthbridge.store.sql import asyncpg_engine as pg
from healthbridge.store.sql import migrate, open_repository
from healthbridge.store.sql.apsw_engine import ApswEngine
from healthbridge.store.sql.group_commit import MAX_BATCH
from healthbridge.store.sql.repository import SqlRepository
from healthbridge.store.sql.transaction import SqlTransaction
from healthbridge.store.sql.urls import parse_url
from tests.support import databases
from tests.support.clock import FakeClock

PATIENT = {"resourceType": "Patient"}
Calls = list[Coroutine[Any, Any, Any]]


class Commits:
    """Counts the writer's COMMITs (https://sqlite.org/c3ref/commit_hook.html); vetoes those
    after ``allow`` of them when told to, which makes SQLite roll the transaction back."""

    def __init__(self) -> None:
        self.count = 0
        self.allow: int | None = None

    def __call__(self) -> bool:
        self.count += 1
        return self.allow is not None and self.count > self.allow


@dataclass
class Sqlite:
    repo: SqlRepository
    engine: ApswEngine
    commits: Commits


@pytest.fixture
async def sqlite(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Sqlite]:
    url = databases.sqlite_url(tmp_path)
    migrate(url)
    engine = await ApswEngine.open(parse_url(url))
    commits = Commits()
    await engine.on_writer(lambda connection: connection.set_commit_hook(commits))
    repo = SqlRepository(engine, clock)
    try:
        yield Sqlite(repo, engine, commits)
    finally:
        await repo.close()


async def queued_together(repo: Repository, calls: Calls) -> list[Any]:
    """Run ``calls`` as one batch: queue them while a unit of work holds the writer thread."""
    async with repo.transaction() as tx:
        with pytest.raises(NotFound):
            await tx.read("Patient", "none")  # the writer thread now serves this unit
        tasks = [asyncio.ensure_future(call) for call in calls]
        for _ in range(3):
            await asyncio.sleep(0)  # every task queues its change
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_queued_changes_share_one_commit_and_fail_alone(sqlite: Sqlite) -> None:
    repo, commits = sqlite.repo, sqlite.commits
    await repo.create("Patient", PATIENT, id="taken")
    await repo.create("Patient", PATIENT, id="p")
    before = commits.count
    results = await queued_together(
        repo,
        [
            repo.create("Patient", PATIENT, id="a"),
            repo.create("Patient", PATIENT, id="taken"),
            repo.update("Patient", "p", PATIENT),
            repo.update("Patient", "p", PATIENT, if_match=1),  # the update before made 2
            repo.update("Patient", "p", PATIENT, if_match=2),
            repo.delete("Patient", "p"),
            repo.create("Patient", PATIENT, id="b"),
        ],
    )
    assert commits.count == before + 2  # the holding unit of work's, then the batch's
    a, taken, second, stale, third, deleted, b = results
    assert isinstance(taken, Conflict) and isinstance(stale, PreconditionFailed)
    assert [a.id, b.id] == ["a", "b"]
    assert [second[0].version_id, third[0].version_id, deleted.version_id] == [2, 3, 4]
    stamps = [second[0].last_updated, third[0].last_updated, deleted.last_updated]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3  # the clock stood still
    events = [(e.id, e.version_id) for e in await repo.outbox_since(0)]
    assert events == [("taken", 1), ("p", 1), ("a", 1), ("p", 2), ("p", 3), ("p", 4), ("b", 1)]


async def test_a_change_failing_half_way_is_undone_to_its_savepoint(sqlite: Sqlite) -> None:
    """A stray history row makes the create of "ghost" fail after its current row was written;
    that row goes too, while the changes around it in the batch stay."""
    repo = sqlite.repo
    await sqlite.engine.on_writer(
        lambda connection: connection.execute(
            "INSERT INTO resource_history VALUES ('Patient', 'ghost', 1, 0, 0, 'create', x'')"
        )
    )
    results = await queued_together(
        repo, [repo.create("Patient", PATIENT, id=id) for id in ("a", "ghost", "b")]
    )
    assert isinstance(results[1], Conflict)
    assert [stored.id for stored in (results[0], results[2])] == ["a", "b"]
    with pytest.raises(NotFound):
        await repo.read("Patient", "ghost")
    assert [e.id for e in await repo.outbox_since(0)] == ["a", "b"]


async def test_a_failed_commit_acknowledges_no_change_of_the_batch(sqlite: Sqlite) -> None:
    repo, commits = sqlite.repo, sqlite.commits
    await repo.create("Patient", PATIENT, id="p")
    commits.allow = commits.count + 1  # the unit of work's commit below; not the batch's
    results = await queued_together(
        repo,
        [repo.create("Patient", PATIENT, id=f"n{n}") for n in range(5)]
        + [repo.update("Patient", "p", PATIENT), repo.create("Patient", PATIENT, id="p")],
    )
    assert [type(result) for result in results] == [Unavailable] * 7
    assert "nothing was written" in str(results[0])
    for n in range(5):
        with pytest.raises(NotFound):
            await repo.read("Patient", f"n{n}")
    assert (await repo.read("Patient", "p")).version_id == 1
    assert [e.id for e in await repo.outbox_since(0)] == ["p"]
    commits.allow = None
    assert (await repo.create("Patient", PATIENT, id="n0")).version_id == 1


async def test_a_batch_holds_at_most_max_batch_changes(sqlite: Sqlite) -> None:
    repo, commits = sqlite.repo, sqlite.commits
    results = await queued_together(
        repo, [repo.create("Patient", PATIENT) for _ in range(MAX_BATCH + 10)]
    )
    assert all(isinstance(result, StoredResource) for result in results)
    assert commits.count == 3  # the holding unit of work's, then two batches
    assert len(await repo.outbox_since(0, limit=1000)) == MAX_BATCH + 10


async def test_a_caller_gone_before_its_turn_writes_nothing(sqlite: Sqlite) -> None:
    repo = sqlite.repo
    async with repo.transaction() as tx:
        await tx.create("Patient", PATIENT, id="first")
        kept = asyncio.ensure_future(repo.create("Patient", PATIENT, id="kept"))
        gone = asyncio.ensure_future(repo.create("Patient", PATIENT, id="gone"))
        await asyncio.sleep(0)
        gone.cancel()
    assert (await kept).id == "kept"
    with pytest.raises(asyncio.CancelledError):
        await gone
    with pytest.raises(NotFound):
        await repo.read("Patient", "gone")
    assert [e.id for e in await repo.outbox_since(0)] == ["first", "kept"]


async def test_a_single_change_does_not_wait_for_company(sqlite: Sqlite) -> None:
    """No timer: an idle writer commits a lone change at once."""
    repo, commits = sqlite.repo, sqlite.commits
    stored = await asyncio.wait_for(repo.create("Patient", PATIENT), timeout=5)
    assert commits.count == 1 and (await repo.read("Patient", stored.id)) == stored


# --- both SQL backends -------------------------------------------------------------------


async def test_acknowledged_changes_survive_reopening(sql_url: str) -> None:
    repo = await open_repository(sql_url, pool_size=8)
    try:
        created = await asyncio.gather(*(repo.create("Patient", PATIENT) for _ in range(100)))
        updated = await asyncio.gather(*(repo.update("Patient", "p", PATIENT) for _ in range(20)))
    finally:
        await repo.close()
    repo = await open_repository(sql_url)
    try:
        for stored in created:
            assert await repo.read("Patient", stored.id) == stored
        assert sorted(stored.version_id for stored, _ in updated) == list(range(1, 21))
        assert (await repo.history(HistoryQuery("Patient", "p"))).total == 20
        assert len(await repo.outbox_since(0, limit=1000)) == 120
    finally:
        await repo.close()


async def test_a_change_that_keeps_losing_the_race_takes_a_lock(
    sql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When another writer wins every compare-and-set, the change runs again in a locking unit
    of work and still makes exactly the next version (http.html#versioning)."""
    insert_next = SqlTransaction._insert_next

    async def lose_when_lock_free(
        self: SqlTransaction, stored: StoredResource, resource: Resource | None
    ) -> bool:
        return self.locking and await insert_next(self, stored, resource)

    repo = await open_repository(sql_url)
    try:
        await repo.create("Patient", PATIENT, id="p")
        monkeypatch.setattr(SqlTransaction, "_insert_next", lose_when_lock_free)
        stored, created = await repo.update("Patient", "p", PATIENT)
        assert (stored.version_id, created) == (2, False)
        assert (await repo.delete("Patient", "p")) is not None
        assert [e.version_id for e in await repo.outbox_since(0)] == [1, 2, 3]
    finally:
        await repo.close()


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture
async def postgres(postgres_database: databases.PostgresDatabase) -> AsyncIterator[Repository]:
    async with databases.open_backend("postgresql", Path(), postgres_database) as repo:
        yield repo


@pytest.mark.postgres
async def test_postgres_single_changes_are_one_statement_per_step(
    postgres: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create is one round trip, an update or delete two; no BEGIN/COMMIT."""
    statements: list[str] = []
    call, begin = pg._Connection.call, pg._Connection.begin

    async def counted_call(self: Any, method: str, *args: Any) -> Any:
        statements.append(method)
        return await call(self, method, *args)

    async def counted_begin(self: Any, **options: Any) -> Any:
        statements.append("BEGIN")
        return await begin(self, **options)

    monkeypatch.setattr(pg._Connection, "call", counted_call)
    monkeypatch.setattr(pg._Connection, "begin", counted_begin)
    await postgres.create("Patient", PATIENT, id="p")
    assert statements == ["fetchrow"]
    await postgres.update("Patient", "p", PATIENT)
    await postgres.delete("Patient", "p")
    assert statements == ["fetchrow"] * 5


@pytest.mark.postgres
async def test_postgres_a_failed_commit_acknowledges_nothing(
    postgres: Repository, postgres_database: databases.PostgresDatabase
) -> None:
    """A deferred constraint trigger fails at COMMIT time, as a full disk would (SQLSTATE
    53100): every change is Unavailable and none is stored."""
    url = postgres_database.require()
    await postgres.create("Patient", PATIENT, id="p")
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'no space' USING ERRCODE = '53100'; END $$; "
            "CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON outbox "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()"
        )
        results = await asyncio.gather(
            *(postgres.create("Patient", PATIENT, id=f"n{n}") for n in range(5)),
            postgres.update("Patient", "p", PATIENT),
            return_exceptions=True,
        )
    finally:
        await admin.execute(
            "DROP TRIGGER IF EXISTS refuse_commit ON outbox; "
            "DROP FUNCTION IF EXISTS refuse_commit()"
        )
        await admin.close()
    assert [type(result) for result in results] == [Unavailable] * 6
    assert (await postgres.read("Patient", "p")).version_id == 1
    assert [e.id for e in await postgres.outbox_since(0)] == ["p"]
    assert (await postgres.create("Patient", PATIENT, id="n0")).version_id == 1


class Interrupt(BaseException):
    """Not an Exception: what a change's bug or an interpreter exit may raise."""


async def test_a_change_raising_a_base_exception_does_not_stop_the_writer(
    sqlite: Sqlite,
) -> None:
    """The writer thread serves every write of the process: a call on it or a change that
    raises something other than an Exception fails alone, with a clear error, and the writes
    after it go through (before, the thread died and every later write hung)."""
    repo, engine = sqlite.repo, sqlite.engine

    def raising(connection: Any) -> None:
        raise Interrupt

    async def work(session: Any) -> None:
        raise Interrupt

    with pytest.raises(Unavailable, match="nothing was written"):
        await asyncio.wait_for(engine.on_writer(raising), 5)
    with pytest.raises(Unavailable, match="nothing was written"):
        await asyncio.wait_for(engine.write_one(work), 5)
    stored = await asyncio.wait_for(repo.create("Patient", PATIENT, id="after"), 5)
    assert stored.id == "after"
    assert [e.id for e in await repo.outbox_since(0)] == ["after"]
