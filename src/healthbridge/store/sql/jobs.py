"""The SQL :class:`~healthbridge.store.jobs.JobStore`: the ``job`` table (:mod:`.tables`).

Ownership changes are compare-and-set UPDATEs (``WHERE owner = :owner AND state = 'running'``,
or a stale heartbeat for a takeover), so two processes never both believe they run one job,
on SQLite and PostgreSQL alike. Pattern: https://hl7.org/fhir/R4/async.html.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update

from healthbridge.fhir.errors import NotFound
from healthbridge.store.instants import Clock, from_micros, to_micros
from healthbridge.store.jobs import Job, JobState
from healthbridge.store.sql.compiled import Statement, compile_statement
from healthbridge.store.sql.engine import Engine, Row
from healthbridge.store.sql.tables import job

_COLUMNS = (
    "id",
    "kind",
    "state",
    "params",
    "cursor",
    "processed",
    "total",
    "owner",
    "error",
    "created",
    "updated",
)


def _job(row: Row) -> Job:
    id, kind, state, params, cursor, processed, total, owner, error, created, updated = row
    return Job(
        id,
        kind,
        state,
        json.loads(params),
        cursor,
        processed,
        total,
        owner,
        error,
        from_micros(created),
        from_micros(updated),
    )


class SqlJobs:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        d = engine.dialect
        c = compile_statement
        columns = [job.c[name] for name in _COLUMNS]
        self._insert = c(insert(job).values({name: bindparam(name) for name in _COLUMNS}), d)
        self._get = c(select(*columns).where(job.c.id == bindparam("id")), d)
        self._by_kind = c(
            select(*columns).where(job.c.kind == bindparam("kind")).order_by(job.c.created.desc()),
            d,
        )
        running = and_(job.c.kind == bindparam("kind"), job.c.state == "running")
        self._claimable = c(
            select(job.c.id)
            .where(
                running,
                or_(job.c.owner == bindparam("owner"), job.c.updated < bindparam("stale")),
            )
            .order_by(job.c.created)
            .limit(1),
            d,
        )
        self._take = c(
            update(job)
            .where(
                job.c.id == bindparam("id"),
                job.c.state == "running",
                or_(job.c.owner == bindparam("owner"), job.c.updated < bindparam("stale")),
            )
            .values(owner=bindparam("owner"), updated=bindparam("now"))
            .returning(job.c.id),
            d,
        )
        owned = and_(
            job.c.id == bindparam("id"), job.c.owner == bindparam("owner"), job.c.state == "running"
        )
        self._progress = c(
            update(job)
            .where(owned)
            .values(
                cursor=bindparam("cursor"),
                processed=bindparam("processed"),
                updated=bindparam("now"),
            )
            .returning(job.c.id),
            d,
        )
        self._finish = c(
            update(job)
            .where(owned)
            .values(state=bindparam("state"), error=bindparam("error"), updated=bindparam("now"))
            .returning(job.c.id),
            d,
        )
        self._cancel = c(
            update(job)
            .where(job.c.id == bindparam("id"), job.c.state == "running")
            .values(state="cancelled", updated=bindparam("now"))
            .returning(job.c.id),
            d,
        )

    def _now(self) -> int:
        return to_micros(self._clock())

    async def _write(self, statement: Statement, **values: Any) -> bool:
        """Run one conditional write as a unit of work; True when it changed a row."""
        async with self._engine.unit_of_work() as session:
            row = await session.fetch_one(statement, statement.bind(**values))
        return row is not None

    async def create_job(
        self, kind: str, params: dict[str, Any], owner: str, total: int | None = None
    ) -> Job:
        now = self._now()
        id = str(uuid.uuid4())
        values: dict[str, Any] = {
            "id": id,
            "kind": kind,
            "state": "running",
            "params": json.dumps(params, sort_keys=True),
            "cursor": None,
            "processed": 0,
            "total": total,
            "owner": owner,
            "error": None,
            "created": now,
            "updated": now,
        }
        async with self._engine.unit_of_work() as session:
            await session.execute([(self._insert, self._insert.bind(**values))])
        return await self.get_job(id)

    async def get_job(self, id: str) -> Job:
        row = await self._engine.fetch_one(self._get, self._get.bind(id=id))
        if row is None:
            raise NotFound(f"Job {id} is not known")
        return _job(row)

    async def jobs(self, kind: str, state: JobState | None = None) -> list[Job]:
        rows = await self._engine.fetch_all(self._by_kind, self._by_kind.bind(kind=kind))
        found = [_job(row) for row in rows]
        return [j for j in found if state is None or j.state == state]

    async def claim_job(
        self, kind: str, owner: str, stale_after: timedelta = timedelta(seconds=30)
    ) -> Job | None:
        now = self._now()
        stale = now - int(stale_after.total_seconds() * 1_000_000)
        args = self._claimable.bind(kind=kind, owner=owner, stale=stale)
        row = await self._engine.fetch_one(self._claimable, args)
        if row is None:
            return None
        if not await self._write(self._take, id=row[0], owner=owner, stale=stale, now=now):
            return None  # another process took it first
        return await self.get_job(row[0])

    async def record_progress(
        self, id: str, owner: str, cursor: str | None, processed: int
    ) -> bool:
        return await self._write(
            self._progress, id=id, owner=owner, cursor=cursor, processed=processed, now=self._now()
        )

    async def finish_job(
        self, id: str, owner: str, state: JobState, error: str | None = None
    ) -> bool:
        return await self._write(
            self._finish, id=id, owner=owner, state=state, error=error, now=self._now()
        )

    async def cancel_job(self, id: str) -> Job:
        await self._write(self._cancel, id=id, now=self._now())
        return await self.get_job(id)
