"""The SQL :class:`~healthbridge.store.audit.AuditLog`: ``audit_event`` and ``audit_head``.

An append is one database transaction (:meth:`Engine.write_all`): read the head, locked
(``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the group-commit writer holds the database's
write lock), create it on first use, drop entries whose outbox event is stored already, chain the
rest (:func:`~healthbridge.store.audit.chained`), insert them (a binary ``COPY`` on PostgreSQL,
one ``executemany`` on SQLite) and move the head. Appends from several server processes
therefore form one chain without gaps. Searches are keyset-paged on ``(recorded, seq)`` with the
indexes of :data:`~.tables.audit_event`. Shapes: https://hl7.org/fhir/R4/auditevent.html.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, insert, or_, select, update

from healthbridge.fhir.errors import NotFound
from healthbridge.store.audit import (
    GENESIS,
    AuditEntry,
    AuditHead,
    AuditPage,
    AuditQuery,
    StoredAuditEvent,
    chained,
    decode_cursor,
    encode_cursor,
    unique_sources,
)
from healthbridge.store.sql.compiled import Statement, Step, bound_values, compile_statement
from healthbridge.store.sql.engine import Engine, Row, Session
from healthbridge.store.sql.tables import audit_event, audit_head

SEARCH_TIMEOUT_S = 30.0
"""Longest an audit search may run (it scans a large table when filters are loose)."""
FILTERS = ("patient", "agent", "type", "subtype", "action", "outcome")
COLUMNS = tuple(c.name for c in audit_event.columns)
assert StoredAuditEvent._fields == COLUMNS
Shape = tuple[tuple[int, ...], bool, bool, bool, bool]
"""Values per filter, since given, before given, after a cursor, descending."""


def _bytes(value: Any) -> bytes:
    # SQLite stores whatever it is given: text written into a BLOB column by hand comes back
    # as str, and must still reach the verifier (as a mismatch) rather than crash it.
    return value.encode() if isinstance(value, str) else bytes(value)


def _stored(row: Row) -> StoredAuditEvent:
    values = list(row)
    values[10], values[11], values[12] = _bytes(row[10]), _bytes(row[11]), _bytes(row[12])
    return StoredAuditEvent(*values)


class SqlAuditLog:
    def __init__(self, engine: Engine, search_timeout_s: float = SEARCH_TIMEOUT_S) -> None:
        self._engine = engine
        self._timeout_s = search_timeout_s
        d = engine.dialect
        c = compile_statement
        head = (audit_head.c.seq, audit_head.c.chain)
        self._head = c(select(*head).where(audit_head.c.id == 1), d)
        self._lock_head = c(select(*head).where(audit_head.c.id == 1).with_for_update(), d)
        self._create_head = c(
            d.insert_if_absent(audit_head).values(
                id=1, seq=0, chain=bindparam("genesis", type_=audit_head.c.chain.type)
            ),
            d,
        )
        self._move_head = c(
            update(audit_head)
            .where(audit_head.c.id == 1)
            .values(seq=bindparam("seq"), chain=bindparam("chain")),
            d,
        )
        source = audit_event.c.source_seq
        self._sources = c(
            select(source).where(source >= bindparam("low"), source <= bindparam("high")), d
        )
        if d.writes_in_one_statement:  # PostgreSQL: binary COPY
            self._insert = Statement("", COLUMNS, {}, copy=audit_event.name)
        else:
            self._insert = c(
                insert(audit_event).values(**bound_values(audit_event, skip=())), d, many=True
            )
        columns = [audit_event.c[name] for name in COLUMNS]
        self._read = c(select(*columns).where(audit_event.c.seq == bindparam("seq")), d)
        self._scan = c(
            select(*columns)
            .where(audit_event.c.seq > bindparam("after"))
            .order_by(audit_event.c.seq)
            .limit(bindparam("limit")),
            d,
        )
        self._searches: dict[Shape, tuple[Statement, Statement]] = {}

    # --- append --------------------------------------------------------------------------

    async def append(self, entries: Sequence[AuditEntry], key: bytes) -> list[int]:
        if not entries:
            return []

        async def work(session: Session) -> list[int]:
            head = await self._locked_head(session)
            kept = unique_sources(entries, await self._stored_sources(session, entries))
            if not kept:
                return []
            rows, new_head = chained(kept, key, head)
            steps: list[Step] = [
                (self._insert, rows),  # each row a tuple in column order
                (self._move_head, self._move_head.bind(seq=new_head.seq, chain=new_head.chain)),
            ]
            await session.execute(steps)
            return [row.seq for row in rows]

        return await self._engine.write_all(work)

    async def _locked_head(self, session: Session) -> AuditHead:
        lock = self._lock_head.bind()
        row = await session.fetch_one(self._lock_head, lock)
        if row is None:  # first append (or an emptied table): make the head, then lock it
            await session.execute([(self._create_head, self._create_head.bind(genesis=GENESIS))])
            row = await session.fetch_one(self._lock_head, lock)
            assert row is not None
        return AuditHead(int(row[0]), bytes(row[1]))

    async def _stored_sources(self, session: Session, entries: Sequence[AuditEntry]) -> set[int]:
        sources = [e.source_seq for e in entries if e.source_seq is not None]
        if not sources:
            return set()
        args = self._sources.bind(low=min(sources), high=max(sources))
        rows = await session.fetch_all(self._sources, args)
        return {int(row[0]) for row in rows}

    # --- reads ---------------------------------------------------------------------------

    async def read(self, seq: int) -> StoredAuditEvent:
        row = await self._engine.fetch_one(self._read, self._read.bind(seq=seq))
        if row is None:
            raise NotFound(f"AuditEvent {seq} is not known")
        return _stored(row)

    async def scan(self, after_seq: int, limit: int) -> list[StoredAuditEvent]:
        rows = await self._engine.fetch_all(
            self._scan, self._scan.bind(after=after_seq, limit=limit)
        )
        return [_stored(row) for row in rows]

    async def head(self) -> AuditHead | None:
        row = await self._engine.fetch_one(self._head, self._head.bind())
        return None if row is None else AuditHead(int(row[0]), bytes(row[1]))

    async def search(self, query: AuditQuery, cursor: str | None = None) -> AuditPage:
        after = decode_cursor(cursor, query) if cursor is not None else None
        counts = tuple(len(getattr(query, name)) for name in FILTERS)
        shape = (counts, query.since is not None, query.before is not None)
        shape_all: Shape = (*shape, after is not None, query.descending)
        page_sql, count_sql = self._statements(shape_all)
        values: dict[str, Any] = {
            f"{name}_{i}": value for name in FILTERS for i, value in enumerate(getattr(query, name))
        }
        values |= {"since": query.since, "before": query.before, "limit": query.count + 1}
        if after is not None:
            values |= {"after_recorded": after[0], "after_seq": after[1]}
        async with self._engine.bounded_snapshot(self._timeout_s) as reader:
            found = await reader.fetch_all(page_sql, page_sql.bind(**values))
            rows = [_stored(r) for r in found]
            total = None
            if query.total:
                counted = await reader.fetch_one(count_sql, count_sql.bind(**values))
                total = 0 if counted is None else int(counted[0])
        more = len(rows) > query.count
        rows = rows[: query.count]
        next_cursor = encode_cursor(rows[-1], query) if more and rows else None
        return AuditPage(rows, next_cursor, total)

    def _statements(self, shape: Shape) -> tuple[Statement, Statement]:
        """The page and count statements of one query shape, compiled once (parameters named
        ``patient_0``..., ``since``, ``before``, ``after_recorded``, ``after_seq``, ``limit``)."""
        found = self._searches.get(shape)
        if found is not None:
            return found
        counts, since, before, after, descending = shape
        conditions: list[ColumnElement[bool]] = []
        for name, count in zip(FILTERS, counts, strict=True):
            if count:
                column = audit_event.c[name]
                names = [bindparam(f"{name}_{i}", type_=column.type) for i in range(count)]
                conditions.append(column.in_(names))
        recorded, seq = audit_event.c.recorded, audit_event.c.seq
        if since:
            conditions.append(recorded >= bindparam("since"))
        if before:
            conditions.append(recorded < bindparam("before"))
        count_query = select(func.count()).select_from(audit_event).where(*conditions)
        if after:
            r = bindparam("after_recorded", type_=recorded.type)
            s = bindparam("after_seq", type_=seq.type)
            if descending:
                conditions.append(or_(recorded < r, and_(recorded == r, seq < s)))
            else:
                conditions.append(or_(recorded > r, and_(recorded == r, seq > s)))
        order = (recorded.desc(), seq.desc()) if descending else (recorded, seq)
        page = (
            select(*(audit_event.c[name] for name in COLUMNS))
            .where(*conditions)
            .order_by(*order)
            .limit(bindparam("limit"))
        )
        d = self._engine.dialect
        compiled = (compile_statement(page, d), compile_statement(count_query, d))
        self._searches[shape] = compiled
        return compiled
