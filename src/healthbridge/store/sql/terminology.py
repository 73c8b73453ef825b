"""The SQL :class:`~healthbridge.store.terminology.TerminologyStore`: the ``term_*`` tables.

https://hl7.org/fhir/R4/terminology-service.html. A load is a ``term_system`` row in state
``loading``; each batch of concepts (rows of :mod:`.terminology_rows`) is written with its new
``done`` count in one atomic write, with ``INSERT ... ON CONFLICT DO NOTHING`` so that a replayed
batch is harmless. ``finish_load`` counts the concepts, drops the previous complete copy of the
same version, flips the row to ``complete`` and refreshes the tables' planner statistics in one
transaction, so readers (who only see complete rows) switch at once. No closure table is built
(SNOMED CT's would hold millions of rows): the is-a edges are indexed both ways and walked by
recursive queries (:mod:`.terminology_queries`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, select, update

from healthbridge.fhir.errors import TooCostly
from healthbridge.fhir.terminology.concept_index import ConceptIndex
from healthbridge.fhir.terminology.concepts import CodeSystemInfo, Concept
from healthbridge.fhir.terminology.words import words
from healthbridge.store.sql.compiled import Statement, Step, bound_values, compile_statement
from healthbridge.store.sql.engine import Engine, Session
from healthbridge.store.sql.tables import (
    term_concept,
    term_edge,
    term_property,
    term_system,
    term_word,
)
from healthbridge.store.sql.terminology_queries import (
    Page,
    Queries,
    descends,
    is_regex,
    shape_args,
    shape_of,
)
from healthbridge.store.sql.terminology_rows import (
    concept_row,
    decode_concept,
    decode_info,
    edge_rows,
    encode_info,
    property_rows,
    word_rows,
)
from healthbridge.store.terminology import ConceptQuery, LoadProgress

_s = term_system.c
DATA_TABLES = (term_concept, term_edge, term_property, term_word)
REGEX_SCAN = 200_000
"""Concepts a ``regex`` filter may test (in Python) before the query is refused as too costly."""
CODES_PER_STATEMENT = 500
CLIMB_FROM_WORDS = 5_000
"""At most this many concepts matching a text filter: ``is-a`` climbs from them rather than
descending from the value (measured on 100k concepts: 190 ms down a 49k-concept subtree, a few
ms up from a hundred matches)."""


def _require_version(info: CodeSystemInfo) -> str:
    if not info.version:
        raise ValueError(f"loading {info.url} needs a version")
    return info.version


class _Writes:
    def __init__(self, engine: Engine) -> None:
        d = engine.dialect
        c = compile_statement
        self.inserts = {
            t.name: c(d.insert_if_absent(t).values(**bound_values(t, skip=())), d, many=True)
            for t in DATA_TABLES
        }
        self.find = c(
            select(_s.id, _s.fingerprint, _s.done).where(
                _s.url == bindparam("url"),
                _s.version == bindparam("version"),
                _s.state == bindparam("state"),
            ),
            d,
        )
        self.purge = {
            t.name: c(delete(t).where(t.c.system_id == bindparam("id")), d) for t in DATA_TABLES
        }
        self.drop = c(delete(term_system).where(_s.id == bindparam("id")), d)
        self.create = c(
            term_system.insert().values(**bound_values(term_system, skip=("id",))).returning(_s.id),
            d,
        )
        self.progress = c(
            update(term_system).where(_s.id == bindparam("id")).values(done=bindparam("done")), d
        )
        self.relabel = c(
            update(term_system).where(_s.id == bindparam("id")).values(info=bindparam("info")), d
        )
        self.count = c(
            select(func.count())
            .select_from(term_concept)
            .where(term_concept.c.system_id == bindparam("id")),
            d,
        )
        newest = select(func.coalesce(func.max(_s.finished), 0) + 1).scalar_subquery()
        # Fresh statistics: without them SQLite walks the hierarchy from the wrong side (a scan
        # of every edge per step instead of a primary-key probe).
        self.analyze = [(Statement(f"ANALYZE {t.name}", (), {}), ()) for t in DATA_TABLES]
        self.complete = c(
            update(term_system)
            .where(_s.id == bindparam("id"))
            .values(state="complete", finished=newest, info=bindparam("info")),
            d,
        )


def _rows(statement: Statement, rows: Sequence[dict[str, Any]]) -> Step:
    return statement, [statement.bind(**row) for row in rows]


def _named(table: Table, values: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip((c.name for c in table.columns), values, strict=True))


class SqlTerminology:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._q = Queries(engine.dialect)
        self._w = _Writes(engine)

    # --- reading -------------------------------------------------------------------------
    async def code_systems(self) -> list[CodeSystemInfo]:
        rows = await self._engine.fetch_all(self._q.systems, self._q.systems.bind())
        return [decode_info(row[0]) for row in rows]

    async def code_system(self, url: str, version: str | None = None) -> CodeSystemInfo | None:
        statement = self._q.latest if version is None else self._q.system
        row = await self._engine.fetch_one(statement, statement.bind(url=url, version=version))
        return None if row is None else decode_info(row[0])

    async def concepts(self, url: str, version: str, codes: Sequence[str]) -> dict[str, Concept]:
        found: dict[str, Concept] = {}
        unique = list(dict.fromkeys(codes))
        for start in range(0, len(unique), CODES_PER_STATEMENT):
            chunk = unique[start : start + CODES_PER_STATEMENT]
            statement = self._q.by_codes(len(chunk))
            named = {f"c{i}": code for i, code in enumerate(chunk)}
            args = statement.bind(url=url, version=version, **named)
            for row in await self._engine.fetch_all(statement, args):
                found[row[0]] = decode_concept(row)
        return found

    async def subsumes(self, url: str, version: str, ancestor: str, code: str) -> bool:
        statement = self._q.subsumes
        args = statement.bind(url=url, version=version, code=code, ancestor=ancestor)
        row = await self._engine.fetch_one(statement, args)
        return row is not None and bool(row[0])

    async def children(self, url: str, version: str, code: str) -> list[str]:
        statement = self._q.children
        rows = await self._engine.fetch_all(
            statement, statement.bind(url=url, version=version, code=code)
        )
        return [row[0] for row in rows]

    async def _select(
        self, url: str, version: str, query: ConceptQuery, page: Page, **extra: Any
    ) -> list[Any]:
        text = words(query.text)
        shape = shape_of(query, text, page)
        if text and descends(query):
            few = ConceptQuery(text=query.text, active_only=False)
            matching = await self._select(url, version, few, "count")
            shape = replace(shape, upward=int(matching[0][0]) <= CLIMB_FROM_WORDS)
        statement = self._q.shaped(shape)
        args = statement.bind(url=url, version=version, **shape_args(query, text), **extra)
        return await self._engine.fetch_all(statement, args)

    async def _regex_matches(self, url: str, version: str, query: ConceptQuery) -> list[Concept]:
        """Every match of a query with ``regex`` filters: the SQL part, then the regexes."""
        rows = await self._select(url, version, query, "all")
        if len(rows) > REGEX_SCAN:
            raise TooCostly(
                f"A regex filter would test {len(rows):,} concepts of {url}; narrow the "
                "value set with other filters"
            )
        index = ConceptIndex(decode_concept(row) for row in rows)
        regexes = [rule for rule in query.filters if is_regex(rule)]
        codes = index.select(regexes, None, active_only=False)
        return [index.concepts[code] for code in codes]

    async def find(self, url: str, version: str, query: ConceptQuery) -> list[Concept]:
        limit = max(query.limit, 0)
        if any(is_regex(rule) for rule in query.filters):
            found = await self._regex_matches(url, version, query)
            after = query.after_code
            return [c for c in found if after is None or c.code > after][:limit]
        page: Page = "first" if query.after_code is None else "after"
        rows = await self._select(url, version, query, page, after=query.after_code, limit=limit)
        return [decode_concept(row) for row in rows]

    async def find_from(
        self, url: str, version: str, query: ConceptQuery, offset: int
    ) -> list[Concept]:
        limit, offset = max(query.limit, 0), max(offset, 0)
        if any(is_regex(rule) for rule in query.filters):
            return (await self._regex_matches(url, version, query))[offset : offset + limit]
        rows = await self._select(url, version, query, "offset", offset=offset, limit=limit)
        return [decode_concept(row) for row in rows]

    async def count(self, url: str, version: str, query: ConceptQuery) -> int:
        if any(is_regex(rule) for rule in query.filters):
            return len(await self._regex_matches(url, version, query))
        rows = await self._select(url, version, query, "count")
        return int(rows[0][0])

    # --- loading -------------------------------------------------------------------------
    async def _find(self, session: Session, url: str, version: str, state: str) -> Any:
        statement = self._w.find
        args = statement.bind(url=url, version=version, state=state)
        return await session.fetch_one(statement, args)

    async def _purge(self, session: Session, system_id: int) -> None:
        steps = [(s, s.bind(id=system_id)) for s in self._w.purge.values()]
        await session.execute([*steps, (self._w.drop, self._w.drop.bind(id=system_id))])

    async def start_load(self, info: CodeSystemInfo, fingerprint: str) -> LoadProgress:
        version = _require_version(info)

        async def work(session: Session) -> int:
            row = await self._find(session, info.url, version, "loading")
            if row is not None and row[1] == fingerprint:
                relabel = self._w.relabel
                await session.execute([(relabel, relabel.bind(id=row[0], info=encode_info(info)))])
                return int(row[2])
            if row is not None:
                await self._purge(session, int(row[0]))
            create = self._w.create
            values = {"url": info.url, "version": version, "state": "loading", "done": 0}
            args = create.bind(
                **values, fingerprint=fingerprint, finished=None, info=encode_info(info)
            )
            await session.fetch_one(create, args)
            return 0

        done = await self._engine.write_all(work)
        return LoadProgress(info.url, version, fingerprint, done)

    async def _loading_id(self, session: Session, url: str, version: str) -> int:
        row = await self._find(session, url, version, "loading")
        if row is None:
            raise LookupError(f"no load of {url}|{version} was started")
        return int(row[0])

    async def load_concepts(
        self, url: str, version: str, concepts: Sequence[Concept], done: int
    ) -> None:
        async def work(session: Session) -> None:
            sid = await self._loading_id(session, url, version)
            rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in DATA_TABLES}
            for concept in concepts:
                rows["term_concept"].append(_named(term_concept, concept_row(sid, concept)))
                for table, make in (
                    (term_edge, edge_rows),
                    (term_property, property_rows),
                    (term_word, word_rows),
                ):
                    rows[table.name].extend(_named(table, r) for r in make(sid, concept))
            steps = [_rows(self._w.inserts[name], batch) for name, batch in rows.items() if batch]
            progress = self._w.progress
            await session.execute([*steps, (progress, progress.bind(id=sid, done=done))])

        await self._engine.write_all(work)

    async def finish_load(self, url: str, version: str) -> CodeSystemInfo:
        async def work(session: Session) -> CodeSystemInfo:
            row = await self._find(session, url, version, "loading")
            if row is None:
                raise LookupError(f"no load of {url}|{version} was started")
            sid = int(row[0])
            counted = await session.fetch_one(self._w.count, self._w.count.bind(id=sid))
            previous = await self._find(session, url, version, "complete")
            if previous is not None:
                await self._purge(session, int(previous[0]))
            loaded = await self._loaded_info(session, sid)
            info = replace(loaded, count=int(counted[0]) if counted else 0)
            complete = self._w.complete
            steps = [(complete, complete.bind(id=sid, info=encode_info(info))), *self._w.analyze]
            await session.execute(steps)
            return info

        return await self._engine.write_all(work)

    async def _loaded_info(self, session: Session, system_id: int) -> CodeSystemInfo:
        statement = self._q.info_by_id
        row = await session.fetch_one(statement, statement.bind(id=system_id))
        assert row is not None
        return decode_info(row[0])

    async def delete_code_system(self, url: str, version: str) -> bool:
        async def work(session: Session) -> bool:
            found = False
            for state in ("loading", "complete"):
                row = await self._find(session, url, version, state)
                if row is not None:
                    await self._purge(session, int(row[0]))
                    found = True
            return found

        return await self._engine.write_all(work)
