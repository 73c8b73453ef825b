"""The ``_filter`` parameter: https://hl7.org/fhir/R4/search_filter.html.

A filter is a boolean expression over the same search parameters as ordinary search::

    name co "pet" and (birthdate ge 2014-10-10 or not (gender eq male))
    subject.name sw "pet"       code eq http://loinc.org|1234-5       name pr true

Each comparison becomes an ordinary :class:`~healthbridge.fhir.search.query.Clause` (parsed by
the :class:`~healthbridge.fhir.search.parse.SearchParser`, so the value syntax, chains and limits
are exactly those of plain search); ``and``, ``or``, ``not`` and parentheses combine them into a
tree (:data:`FilterExpr`) that the backends evaluate. Operators by parameter type:

* every type: ``pr`` (present: ``:missing``);
* string: ``eq`` ``ne`` (equal ignoring case and accents), ``co``, ``sw``, ``ew``;
* token: ``eq`` ``ne``; reference: ``eq`` ``re``; uri: ``eq`` ``ne`` ``sw`` (``:below``);
* number, date, quantity: ``eq ne gt lt ge le sa eb ap``, and ``po`` (overlaps) on dates.

Sub-filters on a path (``related[type eq has-component].target``) and the terminology
operators ``ss``, ``sb``, ``in``, ``ni`` are refused as not supported. Precedence: ``not``
binds tightest, then ``and``, then ``or``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import Clause, FilterAnd, FilterExpr, FilterNot, FilterOr

if TYPE_CHECKING:
    from healthbridge.fhir.search.parse import SearchParser

NAME = "_filter"
MAX_LENGTH = 4096
MAX_DEPTH = 16
STRING_EQUALS = "equals"
"""Internal string modifier: equal after normalisation (case and accents ignored)."""
STRING_ENDS = "ends-with"
"""Internal string modifier: ends with, after normalisation."""


_TOKEN = re.compile(
    r'\s*(?:(?P<open>\()|(?P<close>\))|"(?P<string>(?:[^"\\]|\\.)*)"|(?P<word>[^\s()"]+))'
)
_PREFIXED = {"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}
_UNSUPPORTED = {"ss", "sb", "in", "ni"}


def _bad(text: str) -> InvalidRequest:
    return InvalidRequest(f"_filter: {text}", code="value", expression=NAME)


@dataclass(slots=True)
class _Word:
    text: str
    quoted: bool = False


def _lex(text: str) -> list[_Word | str]:
    out: list[_Word | str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise _bad(f"cannot read {text[position : position + 20]!r}")
        position = match.end()
        if match["open"] or match["close"]:
            out.append(match["open"] or match["close"])
        elif match["string"] is not None:
            out.append(_Word(re.sub(r"\\(.)", r"\1", match["string"]), quoted=True))
        else:
            out.append(_Word(match["word"]))
    return out


class _Parser:
    def __init__(self, tokens: list[_Word | str], search: SearchParser, resource_type: str) -> None:
        self.tokens = tokens
        self.position = 0
        self.search = search
        self.resource_type = resource_type

    def peek_word(self) -> str | None:
        token = self.tokens[self.position] if self.position < len(self.tokens) else None
        return token.text.lower() if isinstance(token, _Word) and not token.quoted else None

    def take(self) -> _Word | str:
        if self.position >= len(self.tokens):
            raise _bad("the expression ends too early")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expression(self, depth: int = 0) -> FilterExpr:
        if depth > MAX_DEPTH:
            raise InvalidRequest("_filter nests too deeply", code="too-costly", expression=NAME)
        items = [self.conjunction(depth)]
        while self.peek_word() == "or":
            self.position += 1
            items.append(self.conjunction(depth))
        return items[0] if len(items) == 1 else FilterOr(tuple(items))

    def conjunction(self, depth: int) -> FilterExpr:
        items = [self.unary(depth)]
        while self.peek_word() == "and":
            self.position += 1
            items.append(self.unary(depth))
        return items[0] if len(items) == 1 else FilterAnd(tuple(items))

    def unary(self, depth: int) -> FilterExpr:
        if self.peek_word() == "not":
            self.position += 1
            return FilterNot(self.group(depth))
        if self.position < len(self.tokens) and self.tokens[self.position] == "(":
            return self.group(depth)
        return self.comparison()

    def group(self, depth: int) -> FilterExpr:
        if self.take() != "(":
            raise _bad("expected '('")
        inner = self.expression(depth + 1)
        if self.take() != ")":
            raise _bad("expected ')'")
        return inner

    def comparison(self) -> FilterExpr:
        path, operator, value = self.take(), self.take(), self.take()
        if (
            not isinstance(path, _Word)
            or not isinstance(operator, _Word)
            or not isinstance(value, _Word)
        ):
            raise _bad("expected: parameter operator value")
        if "[" in path.text:
            raise InvalidRequest(
                "_filter: sub-filters on a path ([...]) are not supported",
                code="not-supported",
                expression=NAME,
            )
        return comparison(
            self.search, self.resource_type, path.text, operator.text.lower(), value.text
        )


def _escaped(value: str) -> str:
    """``value`` as one search value (commas would otherwise split it)."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


def _clause(search: SearchParser, resource_type: str, name: str, value: str) -> Clause:
    clause = search.clause(resource_type, name, _escaped(value))
    if clause is None:
        param = name.split(":", maxsplit=1)[0]
        raise InvalidRequest(
            f"_filter: {param!r} is not a search parameter of {resource_type}",
            code="not-supported",
            expression=NAME,
        )
    return clause


def _kind(search: SearchParser, resource_type: str, path: str) -> str:
    probe = search.clause(resource_type, path + ":missing", "true")
    if probe is None:
        raise InvalidRequest(
            f"_filter: {path!r} is not a search parameter of {resource_type}",
            code="not-supported",
            expression=NAME,
        )
    return probe.param_type


def comparison(
    search: SearchParser, resource_type: str, path: str, operator: str, value: str
) -> FilterExpr:
    """One ``path operator value`` as a clause (or a negated one)."""
    if operator in _UNSUPPORTED:
        raise InvalidRequest(
            f"_filter: operator {operator!r} needs the terminology service",
            code="not-supported",
            expression=NAME,
        )
    if operator == "pr":
        if value.lower() not in ("true", "false"):
            raise _bad(f"pr takes true or false, not {value!r}")
        return _clause(
            search, resource_type, f"{path}:missing", "false" if value.lower() == "true" else "true"
        )
    kind = _kind(search, resource_type, path)
    if kind == "string":
        return _string(search, resource_type, path, operator, value)
    if kind in ("number", "date", "quantity") and operator in (_PREFIXED | {"po"}):
        prefix = "ap" if operator == "po" and kind == "date" else operator
        if prefix == "po":
            raise _bad("po applies to dates only")
        return _clause(search, resource_type, path, prefix + value)
    if kind == "token" and operator in ("eq", "ne"):
        return _clause(search, resource_type, path + (":not" if operator == "ne" else ""), value)
    if kind == "reference" and operator in ("eq", "re"):
        return _clause(search, resource_type, path, value)
    if kind == "uri" and operator in ("eq", "ne", "sw"):
        clause = _clause(
            search, resource_type, path + (":below" if operator == "sw" else ""), value
        )
        return FilterNot(clause) if operator == "ne" else clause
    raise _bad(f"operator {operator!r} does not apply to {kind} parameter {path!r}")


def _string(
    search: SearchParser, resource_type: str, path: str, operator: str, value: str
) -> FilterExpr:
    modifiers = {
        "co": "contains",
        "sw": None,
        "eq": STRING_EQUALS,
        "ne": STRING_EQUALS,
        "ew": STRING_ENDS,
    }
    if operator not in modifiers:
        raise _bad(f"operator {operator!r} does not apply to string parameter {path!r}")
    modifier = modifiers[operator]
    clause = _clause(
        search, resource_type, path + (":contains" if modifier == "contains" else ""), value
    )
    if modifier not in (None, "contains"):
        clause = replace(clause, modifier=modifier)
    return FilterNot(clause) if operator == "ne" else clause


def parse_filter(search: SearchParser, resource_type: str | None, text: str) -> FilterExpr:
    """The tree of one ``_filter`` value (InvalidRequest naming ``_filter`` when malformed)."""
    if resource_type is None:
        raise InvalidRequest("_filter needs a resource type", code="not-supported", expression=NAME)
    if len(text) > MAX_LENGTH:
        raise InvalidRequest(
            f"_filter is longer than {MAX_LENGTH} characters", code="too-costly", expression=NAME
        )
    tokens = _lex(text)
    if not tokens:
        raise _bad("the expression is empty")
    parser = _Parser(tokens, search, resource_type)
    tree = parser.expression()
    if parser.position != len(tokens):
        raise _bad(f"unexpected {tokens[parser.position]!r} after a complete expression")
    return tree


def clauses_of(tree: FilterExpr) -> list[Clause]:
    """Every clause in the tree (for limits and for checking that a backend supports them)."""
    if isinstance(tree, Clause):
        return [tree]
    if isinstance(tree, FilterNot):
        return clauses_of(tree.item)
    return [clause for item in tree.items for clause in clauses_of(item)]
