"""The SQL :class:`~healthbridge.store.records.RecordStore`: the ``record`` table (:mod:`.tables`).

Every write is one statement, so it is atomic on SQLite and PostgreSQL alike without locks:
``add_record`` is ``INSERT ... ON CONFLICT DO UPDATE ... WHERE <the old row expired>``,
``take_record`` is ``DELETE ... RETURNING`` (of concurrent deletes only one sees the row), and a
conditional ``put_record`` is ``UPDATE ... WHERE version = :if_version``. Expired rows count as
absent in every read. State of the authorization server (RFC 6749
https://www.rfc-editor.org/rfc/rfc6749): see :mod:`healthbridge.store.records`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, literal, or_, select, update

from healthbridge.store.instants import Clock, from_micros, to_micros
from healthbridge.store.records import MAX_KEYS, Record
from healthbridge.store.signals import ChangeSignal, LocalSignal
from healthbridge.store.sql.compiled import Statement, compile_statement
from healthbridge.store.sql.dialects import upsert_insert
from healthbridge.store.sql.engine import Engine, Row, Session
from healthbridge.store.sql.tables import record

_t = record.c


def _encode(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _micros(moment: datetime | None) -> int | None:
    return None if moment is None else to_micros(moment)


class SqlRecords:
    def __init__(self, engine: Engine, clock: Clock, signal: ChangeSignal | None = None) -> None:
        self._engine = engine
        self._clock = clock
        self.signal: ChangeSignal = signal or LocalSignal()
        d = engine.dialect
        c = compile_statement
        live = or_(_t.expires.is_(None), _t.expires > bindparam("now"))
        at_key = and_(_t.kind == bindparam("kind"), _t.key == bindparam("key"))
        self._live = live
        columns = (_t.value, _t.version, _t.expires)
        self._get = c(select(*columns).where(at_key, live), d)
        listed = select(_t.key, *columns).where(_t.kind == bindparam("kind"), live)
        self._first = c(listed.order_by(_t.key).limit(bindparam("limit")), d)
        self._after = c(
            listed.where(_t.key > bindparam("after")).order_by(_t.key).limit(bindparam("limit")),
            d,
        )
        values = {
            "kind": bindparam("kind"),
            "key": bindparam("key"),
            "value": bindparam("value"),
            "version": literal(1),
            "expires": bindparam("expires"),
        }
        insert = upsert_insert(d, record).values(values)
        replace = {
            "value": insert.excluded.value,
            "expires": insert.excluded.expires,
            "version": _t.version + 1,
        }
        expired = and_(_t.expires.is_not(None), _t.expires <= bindparam("now"))
        self._add = c(
            insert.on_conflict_do_update(
                index_elements=[_t.kind, _t.key], set_=replace, where=expired
            ).returning(_t.version),
            d,
        )
        self._put = c(
            insert.on_conflict_do_update(index_elements=[_t.kind, _t.key], set_=replace).returning(
                _t.version
            ),
            d,
        )
        self._put_if = c(
            update(record)
            .where(at_key, live, _t.version == bindparam("if_version"))
            .values(value=bindparam("value"), expires=bindparam("expires"), version=_t.version + 1)
            .returning(_t.version),
            d,
        )
        self._take = c(delete(record).where(at_key).returning(*columns), d)
        self._purge = c(delete(record).where(expired).returning(_t.kind), d)
        self._any: dict[int, Statement] = {}

    def _now(self) -> int:
        return to_micros(self._clock())

    def _any_statement(self, count: int) -> Statement:
        """``SELECT EXISTS (...) OR EXISTS (...)``: one primary-key probe per key (an ``OR`` of
        the pairs in one WHERE made SQLite scan, about four times slower)."""
        statement = self._any.get(count)
        if statement is None:
            probes = [
                exists().where(
                    _t.kind == bindparam(f"kind{i}"), _t.key == bindparam(f"key{i}"), self._live
                )
                for i in range(count)
            ]
            query = select(or_(*probes))
            statement = self._any[count] = compile_statement(query, self._engine.dialect)
        return statement

    async def _write(self, statement: Statement, **values: Any) -> Row | None:
        """One statement as a single durable change; the row it returned, if any."""

        async def work(session: Session) -> Row | None:
            return await session.fetch_one(statement, statement.bind(**values))

        return await self._engine.write_one(work)

    async def get_record(self, kind: str, key: str) -> Record | None:
        args = self._get.bind(kind=kind, key=key, now=self._now())
        row = await self._engine.fetch_one(self._get, args)
        return None if row is None else _record(kind, key, row)

    async def records(
        self, kind: str, *, after_key: str | None = None, limit: int = 1000
    ) -> list[Record]:
        statement = self._first if after_key is None else self._after
        args = statement.bind(kind=kind, after=after_key, limit=max(limit, 0), now=self._now())
        rows = await self._engine.fetch_all(statement, args)
        return [_record(kind, row[0], row[1:]) for row in rows]

    async def add_record(
        self, kind: str, key: str, value: dict[str, Any], expires: datetime | None = None
    ) -> bool:
        row = await self._write(
            self._add,
            kind=kind,
            key=key,
            value=_encode(value),
            expires=_micros(expires),
            now=self._now(),
        )
        return row is not None

    async def put_record(
        self,
        kind: str,
        key: str,
        value: dict[str, Any],
        expires: datetime | None = None,
        if_version: int | None = None,
    ) -> Record | None:
        encoded = _encode(value)
        micros = _micros(expires)
        if if_version is None:
            row = await self._write(self._put, kind=kind, key=key, value=encoded, expires=micros)
        else:
            row = await self._write(
                self._put_if,
                kind=kind,
                key=key,
                value=encoded,
                expires=micros,
                if_version=if_version,
                now=self._now(),
            )
        if row is None:
            return None
        return Record(
            kind,
            key,
            json.loads(encoded),
            int(row[0]),
            None if micros is None else from_micros(micros),
        )

    async def take_record(self, kind: str, key: str) -> Record | None:
        row = await self._write(self._take, kind=kind, key=key)
        if row is None or (row[2] is not None and row[2] <= self._now()):
            return None
        return _record(kind, key, row)

    async def delete_record(self, kind: str, key: str) -> bool:
        return await self.take_record(kind, key) is not None

    async def any_record(self, keys: Sequence[tuple[str, str]]) -> bool:
        if not keys:
            return False
        if len(keys) > MAX_KEYS:
            raise ValueError(f"any_record takes at most {MAX_KEYS} keys")
        statement = self._any_statement(len(keys))
        named: dict[str, Any] = {"now": self._now()}
        for i, (kind, key) in enumerate(keys):
            named[f"kind{i}"] = kind
            named[f"key{i}"] = key
        row = await self._engine.fetch_one(statement, statement.bind(**named))
        return row is not None and bool(row[0])

    async def purge_expired_records(self) -> int:
        async with self._engine.unit_of_work() as session:
            rows = await session.fetch_all(self._purge, self._purge.bind(now=self._now()))
        return len(rows)


def _record(kind: str, key: str, row: Row) -> Record:
    value, version, expires = row
    return Record(
        kind,
        key,
        json.loads(value),
        int(version),
        None if expires is None else from_micros(expires),
    )
