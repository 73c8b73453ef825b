"""SQL for reading loaded code systems: https://hl7.org/fhir/R4/terminology-service.html.

Every read names its code system version by (url, version) through a scalar subquery on the
unique ``(url, version, state)`` index, so it is one statement. The hierarchy is walked with
recursive queries over ``term_edge``, up by its primary key (code -> parents) and down by its
``(system_id, parent, code)`` index: ``subsumes`` climbs from the code (a few dozen rows even in
SNOMED CT), ``is-a`` descends from the value. Text matches use ``term_word`` prefix ranges, one
semi-join per word. Statements are compiled once per query *shape* (filter operators, list
lengths, number of words) and cached. ``regex`` filters are applied by the caller in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Select,
    bindparam,
    exists,
    func,
    select,
)
from sqlalchemy.sql.elements import BindParameter

from healthbridge.fhir.terminology.concept_index import HIERARCHY_PROPERTIES
from healthbridge.store.sql.compiled import Statement, compile_statement
from healthbridge.store.sql.dialects import Dialect
from healthbridge.store.sql.tables import (
    term_concept,
    term_edge,
    term_property,
    term_system,
    term_word,
)
from healthbridge.store.terminology import ConceptFilter, ConceptQuery

_s = term_system.c
_c = term_concept.c
_e = term_edge.c
_p = term_property.c
_w = term_word.c
CONCEPT_COLUMNS = (_c.code, _c.display, _c.inactive, _c.data)
Page = Literal["first", "after", "offset", "count", "all"]
TOP = "\U0010ffff"
"""Above every character: ``word < prefix + TOP`` bounds a prefix range by code point."""


def system_id() -> Any:
    """The id of the complete version ``:url|:version``."""
    return (
        select(_s.id)
        .where(_s.url == bindparam("url"), _s.version == bindparam("version"))
        .where(_s.state == bindparam("complete", "complete"))
        .scalar_subquery()
    )


def _walk(name: str, code: BindParameter[Any], down: bool) -> Any:
    """The concept ``code`` and its descendants (``down``) or ancestors, recursively."""
    sid = system_id()
    seed = select(_c.code).where(_c.system_id == sid, _c.code == code).cte(name, recursive=True)
    if down:
        step = select(_e.code).where(_e.system_id == sid, _e.parent == seed.c.code)
    else:
        step = select(_e.parent).where(_e.system_id == sid, _e.code == seed.c.code)
    return seed.union(step)


@dataclass(frozen=True, slots=True)
class Shape:
    filters: tuple[tuple[str, str, int], ...]  # (kind, op, list length)
    words: int
    active_only: bool
    page: Page
    upward: bool = False
    """``is-a``/``descendent-of`` climb from the concepts matching the words, instead of
    descending from the value: cheaper when few concepts match the words."""


def _upward(name: str, words: int) -> Any:
    """(origin, ancestor-or-self) pairs of the concepts whose names hold every word."""
    sid = system_id()
    t = term_concept.alias(f"t{name}")
    matching = [t.c.code.in_(_word_hits(j)) for j in range(words)]
    seed = (
        select(t.c.code.label("origin"), t.c.code.label("code"))
        .where(t.c.system_id == sid, *matching)
        .cte(name, recursive=True)
    )
    step = select(seed.c.origin, _e.parent).where(_e.system_id == sid, _e.code == seed.c.code)
    return seed.union(step)


def _kind(rule: ConceptFilter) -> str:
    if rule.property in HIERARCHY_PROPERTIES:
        return "code"
    if rule.property in ("display", "inactive"):
        return rule.property
    return "property"


def is_regex(rule: ConceptFilter) -> bool:
    return rule.op == "regex"


def descends(query: ConceptQuery) -> bool:
    """The query walks down a hierarchy (which :attr:`Shape.upward` may walk up instead)."""
    return any(
        r.property in HIERARCHY_PROPERTIES and r.op in ("is-a", "descendent-of")
        for r in query.filters
    )


def shape_of(query: ConceptQuery, words: Sequence[str], page: Page) -> Shape:
    filters = []
    for rule in query.filters:
        if is_regex(rule):
            continue
        op: str = rule.op
        if op == "exists":
            op = "exists" if rule.value.lower() != "false" else "absent"
        arity = len(rule.value.split(",")) if op in ("in", "not-in") else 1
        filters.append((_kind(rule), op, arity))
    return Shape(tuple(filters), len(words), query.active_only, page)


def shape_args(query: ConceptQuery, words: Sequence[str]) -> dict[str, Any]:
    """The named arguments of the statement :func:`shape_of` describes."""
    args: dict[str, Any] = {}
    rules = [r for r in query.filters if not is_regex(r)]
    for i, rule in enumerate(rules):
        args[f"p{i}"] = rule.property
        if rule.op in ("in", "not-in"):
            for j, value in enumerate(rule.value.split(",")):
                args[f"v{i}_{j}"] = value.strip()
        elif rule.property == "inactive":
            args[f"v{i}"] = rule.value.lower() == "true"
        else:
            args[f"v{i}"] = rule.value
    for j, word in enumerate(words):
        args[f"w{j}"] = word
        args[f"wh{j}"] = word + TOP
    return args


def _listed(i: int, arity: int) -> list[BindParameter[Any]]:
    return [bindparam(f"v{i}_{j}") for j in range(arity)]


def _code_condition(i: int, op: str, arity: int, words: int = 0) -> ColumnElement[bool]:
    value: BindParameter[Any] = bindparam(f"v{i}")
    if words and op in ("is-a", "descendent-of"):
        up = _upward(f"u{i}", words)
        found = _c.code.in_(select(up.c.origin).where(up.c.code == value))
        return found if op == "is-a" else found & (_c.code != value)
    if op in ("is-a", "descendent-of", "is-not-a"):
        below = select(_walk(f"h{i}", value, down=True).c.code)
        if op == "is-not-a":
            return _c.code.not_in(below)
        found = _c.code.in_(below)
        return found if op == "is-a" else found & (_c.code != value)
    if op == "generalizes":
        return _c.code.in_(select(_walk(f"h{i}", value, down=False).c.code))
    if op == "=":
        return _c.code == value
    if op == "in":
        return _c.code.in_(_listed(i, arity))
    if op == "not-in":
        return _c.code.not_in(_listed(i, arity))
    raise ValueError(f"the filter concept {op} is not supported")


def _property_condition(i: int, op: str, arity: int) -> ColumnElement[bool]:
    having = select(_p.code).where(_p.system_id == system_id(), _p.property == bindparam(f"p{i}"))
    if op == "exists":
        return _c.code.in_(having)
    if op == "absent":
        return _c.code.not_in(having)
    if op == "=":
        return _c.code.in_(having.where(_p.value == bindparam(f"v{i}")))
    if op in ("in", "not-in"):
        listed = having.where(_p.value.in_(_listed(i, arity)))
        return _c.code.in_(listed) if op == "in" else _c.code.not_in(listed)
    raise ValueError(f"the filter operator {op} is not supported on properties")


def _condition(i: int, kind: str, op: str, arity: int, words: int) -> ColumnElement[bool]:
    if kind == "code":
        return _code_condition(i, op, arity, words)
    if kind == "display" and op == "=":
        return _c.display == bindparam(f"v{i}")
    if kind == "inactive" and op == "=":
        return _c.inactive == bindparam(f"v{i}", type_=Boolean)
    if kind == "property":
        return _property_condition(i, op, arity)
    raise ValueError(f"the filter {kind} {op} is not supported")


def _word_hits(j: int) -> Select[Any]:
    return select(_w.code).where(
        _w.system_id == system_id(), _w.word >= bindparam(f"w{j}"), _w.word < bindparam(f"wh{j}")
    )


def _word(j: int) -> ColumnElement[bool]:
    return _c.code.in_(_word_hits(j))


def build(shape: Shape) -> Select[Any]:
    conditions = [_c.system_id == system_id()]
    if shape.active_only:
        conditions.append(_c.inactive == bindparam("false", False, type_=Boolean))
    climb = shape.words if shape.upward else 0
    conditions += [_condition(i, *rule, climb) for i, rule in enumerate(shape.filters)]
    conditions += [_word(j) for j in range(shape.words)]
    if shape.page == "count":
        return select(func.count()).select_from(term_concept).where(*conditions)
    query = select(*CONCEPT_COLUMNS).where(*conditions).order_by(_c.code)
    if shape.page == "after":
        query = query.where(_c.code > bindparam("after"))
    if shape.page == "offset":
        query = query.offset(bindparam("offset"))
    if shape.page != "all":
        query = query.limit(bindparam("limit"))
    return query


class Queries:
    """The read statements of one dialect, compiled on first use."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._shapes: dict[Shape, Statement] = {}
        self._by_codes: dict[int, Statement] = {}
        c = self.compile
        info = select(_s.info)
        self.systems = c(info.where(_s.state == "complete").order_by(_s.url, _s.version))
        self.system = c(
            info.where(_s.url == bindparam("url"), _s.version == bindparam("version")).where(
                _s.state == "complete"
            )
        )
        self.latest = c(
            info.where(_s.url == bindparam("url"), _s.state == "complete")
            .order_by(_s.finished.desc())
            .limit(1)
        )
        self.info_by_id = c(info.where(_s.id == bindparam("id")))
        up = _walk("up", bindparam("code"), down=False)
        self.subsumes = c(
            select(exists(select(up.c.code).where(up.c.code == bindparam("ancestor"))))
        )
        self.children = c(
            select(_e.code)
            .where(_e.system_id == system_id(), _e.parent == bindparam("code"))
            .order_by(_e.code)
        )

    def compile(self, statement: Any) -> Statement:
        return compile_statement(statement, self.dialect)

    def shaped(self, shape: Shape) -> Statement:
        found = self._shapes.get(shape)
        if found is None:
            found = self._shapes[shape] = self.compile(build(shape))
        return found

    def by_codes(self, count: int) -> Statement:
        found = self._by_codes.get(count)
        if found is None:
            codes: list[BindParameter[Any]] = [bindparam(f"c{i}") for i in range(count)]
            query = select(*CONCEPT_COLUMNS).where(_c.system_id == system_id(), _c.code.in_(codes))
            found = self._by_codes[count] = self.compile(query)
        return found
