"""The common shapes of invariants as Python predicates: https://hl7.org/fhirpath/#existence.

Most profile invariants test only whether elements are present: ``text.`div`.exists()``,
``dataAbsentReason.empty() or value.empty()``, ``low.exists() or high.exists() or
text.exists()``, ``lastModified.exists().not() or ...``. :func:`compile_shape` turns an
expression made only of

* paths of element names (``component.value``, ``text.`div```), each followed by ``exists()``,
  ``empty()`` or ``contains('literal')``,
* ``not()``, ``and``, ``or``, ``implies`` and parentheses,

into a predicate that walks the JSON directly, about two orders of magnitude faster than
interpreting it. Anything else (functions with arguments, comparisons, type names, variables)
is left to fhirpathpy. The predicate follows fhirpathpy's rules exactly: members are looked up
with its R4 model (``value`` of an Observation finds ``valueQuantity``; a primitive's ``_name``
counts as present), the logic is three-valued (https://hl7.org/fhirpath/#boolean-logic; None
is the empty collection) and both sides of an operator are evaluated. Where fhirpathpy would
raise (``contains`` on a non-string or on several values) the predicate raises
:class:`Fallback`, and the caller asks fhirpathpy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from fhirpathpy.models import models

Predicate = Callable[[object, str], bool | None]
"""(focus, its type path such as ``Observation.component``) -> truth; None is empty."""

_MODEL: Final[Mapping[str, Any]] = models["r4"]
_ELSEWHERE: Final[Mapping[str, str]] = _MODEL["pathsDefinedElsewhere"]
_CHOICES: Final[Mapping[str, list[str]]] = _MODEL["choiceTypePaths"]
_TYPES: Final[Mapping[str, str]] = _MODEL["path2Type"]
_TOKEN: Final = re.compile(r"\s*(?:(`[A-Za-z_]\w*`|[A-Za-z_]\w*)|('[^'\\]*')|([().]))")
_KEYWORDS: Final = frozenset({"and", "or", "implies"})

Nodes = list[tuple[Any, str]]


class Fallback(Exception):
    """The predicate met a case only the full engine decides (it would raise an error)."""


def _tokens(expression: str) -> list[str] | None:
    found: list[str] = []
    position = 0
    while position < len(expression.rstrip()):
        match = _TOKEN.match(expression, position)
        if match is None:
            return None
        found.append(match.group(match.lastindex or 0))
        position = match.end()
    return found


def _step(nodes: Nodes, key: str) -> Nodes:
    """fhirpathpy's member invocation (``create_reduce_member_invocation``) on plain JSON."""
    following: Nodes = []
    for data, path in nodes:
        if not isinstance(data, Mapping):
            continue
        child = _ELSEWHERE.get(f"{path}.{key}", f"{path}.{key}")
        values: tuple[Any, Any] = (None, None)
        for suffix in _CHOICES.get(child, ()):
            values = data.get(key + suffix), data.get(f"_{key}{suffix}")
            if values != (None, None):
                child += suffix
                break
        else:
            if not _CHOICES.get(child):
                values = data.get(key), data.get("_" + key)
                child = "Extension" if key == "extension" else child
        child = _TYPES.get(child, child)
        for value in values:
            if value is None or value == []:
                continue
            for each in value if isinstance(value, list) else (value,):
                typed = each.get("resourceType") if isinstance(each, Mapping) else None
                following.append((each, typed if isinstance(typed, str) else child))
    return following


def _root(focus: object, base: str) -> Nodes:
    typed = focus.get("resourceType") if isinstance(focus, Mapping) else None
    return [(focus, typed if isinstance(typed, str) else base)]


def _test(path: tuple[str, ...], function: str, argument: str) -> Predicate:
    def predicate(focus: object, base: str) -> bool | None:
        nodes = _root(focus, base)
        for key in path:
            nodes = _step(nodes, key)
        if function == "exists":
            return bool(nodes)
        if function == "empty":
            return not nodes
        if not nodes:
            return None
        if len(nodes) > 1 or not isinstance(nodes[0][0], str):
            raise Fallback("contains() needs one string")
        return argument in nodes[0][0]

    return predicate


def _not(inner: Predicate) -> Predicate:
    def predicate(focus: object, base: str) -> bool | None:
        found = inner(focus, base)
        return None if found is None else not found

    return predicate


def _both(operator: str, left: Predicate, right: Predicate) -> Predicate:
    """``and`` / ``or`` / ``implies`` in three-valued logic, both sides always evaluated."""

    def predicate(focus: object, base: str) -> bool | None:
        a, b = left(focus, base), right(focus, base)
        if operator == "and":
            return False if False in (a, b) else (True if a is b is True else None)
        if operator == "or":
            return True if True in (a, b) else (False if a is b is False else None)
        if a is False or b is True:
            return True
        return b if a is True else None

    return predicate


class _Parser:
    """Recursive descent over the tokens: implies < or < and < ``.not()`` < term."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self, offset: int = 0) -> str:
        at = self.position + offset
        return self.tokens[at] if at < len(self.tokens) else ""

    def take(self, *expected: str) -> None:
        for token in expected:
            if self.peek() != token:
                raise ValueError(f"expected {token!r}")
            self.position += 1

    def expression(self) -> Predicate:
        found = self.operands("or")
        while self.peek() == "implies":
            self.position += 1
            found = _both("implies", found, self.operands("or"))
        return found

    def operands(self, operator: str) -> Predicate:
        inner = "and" if operator == "or" else ""
        found = self.operands(inner) if inner else self.unary()
        while self.peek() == operator:
            self.position += 1
            found = _both(operator, found, self.operands(inner) if inner else self.unary())
        return found

    def unary(self) -> Predicate:
        if self.peek() == "(":
            self.take("(")
            found = self.expression()
            self.take(")")
        else:
            found = self.term()
        while self.peek() == "." and self.peek(1) == "not":
            self.take(".", "not", "(", ")")
            found = _not(found)
        return found

    def term(self) -> Predicate:
        path: list[str] = []
        while self.peek(1) == ".":
            path.append(self.name(self.peek()))
            self.take(self.peek(), ".")
        function = self.peek()
        if not path or function not in ("exists", "empty", "contains"):
            raise ValueError("not an existence test on a path")
        self.take(function, "(")
        argument = ""
        if function == "contains":
            argument = self.peek()
            if not argument.startswith("'"):
                raise ValueError("contains() needs a string literal")
            self.take(argument)
            argument = argument[1:-1]
        self.take(")")
        return _test(tuple(path), function, argument)

    @staticmethod
    def name(token: str) -> str:
        key = token.strip("`")
        if not key[:1].islower() or token in _KEYWORDS or key in ("length", "not"):
            raise ValueError(f"{token!r} is not an element name")
        return key


def _parse(tokens: list[str]) -> Predicate | None:
    if not tokens:
        return None
    parser = _Parser(tokens)
    try:
        found = parser.expression()
    except ValueError:
        return None
    return found if parser.position == len(tokens) else None


_OR: Final = re.compile(r"\s+or\s+")


def _operands(expression: str) -> list[str]:
    """The operands of the top-level ``or`` chain, as text (quotes and parentheses respected;
    an expression with a top-level ``implies`` or ``xor`` is one operand)."""
    found: list[str] = []
    depth, start, quoted = 0, 0, False
    for position, char in enumerate(expression):
        if position < start:
            continue
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        elif not quoted and depth == 0 and (match := _OR.match(expression, position)):
            found.append(expression[start:position])
            start = match.end()
    found.append(expression[start:])
    if any(re.search(r"\b(implies|xor)\b", part) for part in found):
        return [expression]
    return found


def _guarded(guard: Predicate) -> Predicate:
    def predicate(focus: object, base: str) -> bool | None:
        if guard(focus, base) is True:
            return True
        raise Fallback("the rest of the expression decides")

    return predicate


def compile_shape(expression: str) -> Predicate | None:
    """The predicate of ``expression``, or None when it is not one of the shapes handled.

    ``A or B or rest`` where only ``A or B`` has a handled shape becomes a guard: true when
    ``A or B`` is (whatever ``rest`` gives, true or empty, the whole is true), else the engine
    decides (``obs-7``: ``value.empty() or component.code.where(...).empty()``)."""
    whole = _parse(_tokens(expression) or [])
    if whole is not None:
        return whole
    head: list[str] = []
    for operand in _operands(expression)[:-1]:
        tokens = _tokens(operand)
        if not tokens or _parse(tokens) is None:
            break
        head += [*(["or"] if head else []), *tokens]
    guard = _parse(head) if head else None
    return _guarded(guard) if guard is not None else None
