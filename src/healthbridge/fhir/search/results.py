"""Result parameters of a search: https://hl7.org/fhir/R4/search.html#return (``_count``,
``_sort``, ``_include``/``_revinclude`` with ``:iterate``, ``_summary``, ``_elements``,
``_total``) and ``_type`` for system-level search (search.html#all)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import Clause, Include, SearchQuery, SortKey
from healthbridge.fhir.summary import SUMMARY_MODES

if TYPE_CHECKING:
    from healthbridge.fhir.search.parse import SearchParser

TOTALS = frozenset({"none", "estimate", "accurate"})
IGNORED = frozenset({"_format", "_pretty", "_cursor"})  # handled by the REST layer


@dataclass(slots=True)
class ResultParams:
    count: int
    sort: tuple[SortKey, ...] = ()
    includes: list[Include] = field(default_factory=list)
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str | None = None
    types: tuple[str, ...] = ()

    def query(
        self, resource_type: str | None, clauses: tuple[Clause, ...], unknown: tuple[str, ...]
    ) -> SearchQuery:
        return SearchQuery(
            resource_type,
            clauses,
            self.count,
            self.sort,
            tuple(self.includes),
            self.summary,
            self.elements,
            self.total,
            self.types,
            unknown=unknown,
        )


def _bad(name: str, text: str) -> InvalidRequest:
    return InvalidRequest(f"{name}: {text}", code="value", expression=name)


def parse_result_param(
    parser: SearchParser, resource_type: str | None, name: str, raw: str, out: ResultParams
) -> bool:
    """Consume ``name`` if it is a result parameter; False when it is a search parameter."""
    base, _, modifier = name.partition(":")
    if name in IGNORED:
        return True
    if name == "_count":
        if not raw.isdigit() or len(raw) > 9:
            raise _bad(name, f"{raw!r} must be a non-negative integer")
        out.count = min(int(raw), parser.limits.max_count)
    elif name == "_sort":
        out.sort = _sort(parser, resource_type or "Resource", raw)
    elif base in ("_include", "_revinclude") and modifier in ("", "iterate"):
        for item in raw.split(","):
            out.includes.append(_include(parser, name, item, base == "_revinclude", bool(modifier)))
        if len(out.includes) > parser.limits.max_includes:
            raise InvalidRequest(
                f"More than {parser.limits.max_includes} includes",
                code="too-costly",
                expression=name,
            )
    elif name == "_summary":
        if raw not in SUMMARY_MODES:
            raise _bad(name, f"{raw!r} is not one of {', '.join(sorted(SUMMARY_MODES))}")
        out.summary = raw
    elif name == "_elements":
        out.elements = tuple(e.strip() for e in raw.split(",") if e.strip())
    elif name == "_total":
        if raw not in TOTALS:
            raise _bad(name, f"{raw!r} is not one of none, estimate, accurate")
        out.total = raw
    elif name == "_type" and resource_type is None:
        out.types = _types(parser, raw)
    else:
        return False
    return True


def _sort(parser: SearchParser, resource_type: str, raw: str) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    for item in raw.split(","):
        descending = item.startswith("-")
        code = item[1:] if descending else item
        definition = parser.definitions.search_parameters(resource_type).get(code)
        if definition is None or definition.type in ("composite", "special"):
            raise _bad("_sort", f"cannot sort {resource_type} by {code!r}")
        keys.append(SortKey(code, definition.type, descending))
    return tuple(keys)


def _include(parser: SearchParser, name: str, item: str, reverse: bool, iterate: bool) -> Include:
    if item == "*":
        return Include("*", None, None, iterate, reverse)
    parts = item.split(":")
    if len(parts) not in (2, 3):
        raise _bad(name, f"{item!r} must be Type:param or Type:param:TargetType")
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if not parser.definitions.is_resource_type(source):
        raise _bad(name, f"{source!r} is not a resource type")
    if target is not None and not parser.definitions.is_resource_type(target):
        raise _bad(name, f"{target!r} is not a resource type")
    if code == "*":
        return Include(source, None, target, iterate, reverse)
    definition = parser.definitions.search_parameters(source).get(code)
    if definition is None or definition.type != "reference":
        raise _bad(name, f"{source} has no reference parameter {code!r}")
    return Include(source, code, target, iterate, reverse)


def _types(parser: SearchParser, raw: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in raw.split(",") if t.strip())
    for type_name in names:
        if not parser.definitions.is_resource_type(type_name):
            raise _bad("_type", f"{type_name!r} is not a resource type")
    return names
