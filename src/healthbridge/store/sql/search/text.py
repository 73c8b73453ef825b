"""``_text`` and ``_content`` in SQL: https://hl7.org/fhir/R4/search.html#text.

A value matches a resource whose narrative (``_text``) or whole content (``_content``) holds
every word of it, through the full-text index of :mod:`healthbridge.store.sql.text_index`
(SQLite FTS5, PostgreSQL ``tsvector``); comma-separated values are ORed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import false, or_

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import Clause, StringQuery
from healthbridge.fhir.search.text import TEXT_PARAMS, query_words
from healthbridge.store.sql.search.conditions import RANK_RANGE, Candidate, Condition
from healthbridge.store.sql.search.scope import Bool, Scope
from healthbridge.store.sql.text_index import Field, text_condition


@dataclass(frozen=True)
class Words(Condition):
    scope: Scope
    column: Field
    values: tuple[tuple[str, ...], ...]
    rank: int | None = RANK_RANGE
    drives_itself: bool = True

    def where(self, candidate: Candidate) -> Bool:
        dialect = self.scope.dialect
        tests = [text_condition(dialect, candidate.rkey, self.column, list(w)) for w in self.values]
        return or_(false(), *tests)


def text_search(scope: Scope, clause: Clause) -> Condition:
    if clause.modifier is not None:
        raise InvalidRequest(
            f"{clause.name}: modifiers are not supported for {clause.param}",
            code="not-supported",
            expression=clause.name,
        )
    values: list[tuple[str, ...]] = []
    for value in clause.values:
        if not isinstance(value, StringQuery):
            raise InvalidRequest(f"{clause.name}: expected words", expression=clause.name)
        try:
            values.append(tuple(query_words(value.value)))
        except ValueError as exc:
            raise InvalidRequest(
                f"{clause.name}: {exc}", code="value", expression=clause.name
            ) from None
    return Words(scope, TEXT_PARAMS[clause.param], tuple(values))
