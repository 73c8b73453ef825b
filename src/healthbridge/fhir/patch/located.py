"""FHIRPath paths evaluated to *located* elements, for FHIRPath Patch.

https://hl7.org/fhir/R4/fhirpatch.html: each operation names the elements it changes with a
FHIRPath (https://hl7.org/fhir/R4/fhirpath.html) expression. Changing them needs more than their
values: where each one sits in the resource's JSON (the object holding it, its property, its
list index). So the path is parsed strictly with fhirpathpy's grammar and walked here, step by
step, over :class:`Node` s:

* member steps (``Patient.contact.name``; a choice by its name ``deceased`` or JSON name
  ``deceasedBoolean``; a leading type name such as ``Patient`` selects the resource),
* indexers (``identifier[0]``), ``X as T``, and the functions ``where()``, ``first()``,
  ``last()``, ``tail()``, ``skip()``, ``take()``, ``single()``, ``ofType()``, ``as()`` and
  ``extension(url)``.

Arguments (``where()`` criteria, indexes, urls) are evaluated by fhirpathpy, with ``%resource``
the resource being patched. Anything else in a path (unions, operators, ``resolve()``) cannot
name a place in this resource and is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream  # type: ignore[import-untyped]
from antlr4.tree.Tree import ParseTreeWalker  # type: ignore[import-untyped]
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import InvalidRequest, Unprocessable
from healthbridge.fhir.patch.elements import (
    ANY_RESOURCE,
    Json,
    Slot,
    is_a,
    slots_named,
    values_at,
)

Ast = dict[str, Any]
_apply = cast(Callable[..., list[Any]], fhirpathpy.apply_parsed_path)
_node = cast(Callable[[Any, str, Any], Any], ResourceNode.create_node)
_listener = cast(Callable[[], Any], ASTPathListener)
_GENERIC_TYPES = frozenset({"Resource", "DomainResource"})
_DIV_MEMBER = re.compile(r"\.\s*div(?![\w`])")


@dataclass(frozen=True, slots=True)
class Node:
    """One element a path selected: its JSON ``value`` (for a primitive, the value, or None
    when it has only an id or extensions, which are in ``extras``), the object ``holder`` it
    is a property of, its ``slot`` and list ``index``. The resource itself has no holder."""

    value: Any
    extras: Json | None = None
    holder: Json | None = None
    slot: Slot | None = None
    index: int | None = None
    parent: Node | None = None

    @property
    def is_resource(self) -> bool:
        return self.slot is None or self.slot.type_code == ANY_RESOURCE

    @property
    def type_code(self) -> str:
        """The element's type (``HumanName``, ``string``); a resource's ``resourceType``."""
        if self.is_resource:
            return str(self.value.get("resourceType", "")) if isinstance(self.value, dict) else ""
        return self.slot.type_code if self.slot is not None else ""

    @property
    def type_path(self) -> str:
        """Where the definitions of this element's children are."""
        if self.is_resource or self.slot is None:
            return self.type_code
        return self.slot.type_path

    @property
    def members(self) -> Json | None:
        """The JSON object holding this element's children (a primitive's ``_name`` object)."""
        if self.slot is not None and self.slot.primitive:
            return self.extras
        return self.value if isinstance(self.value, dict) else None


def parse_path(path: str) -> Ast:
    """The fhirpathpy syntax tree of ``path``; a syntax error is InvalidRequest (fhirpathpy's
    own ``parse`` recovers from errors silently)."""
    lexer = FHIRPathLexer(InputStream(_quote_keywords(path)))
    lexer.removeErrorListeners()
    lexer.recover = _raise
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    try:
        tree = cast(Any, parser).entireExpression()
    except Exception:  # the lexer met a character no FHIRPath token starts with
        tree = None
    if tree is None or parser.getNumberOfSyntaxErrors():
        raise InvalidRequest(f"{path!r} is not a valid FHIRPath expression", code="invalid")
    listener = _listener()
    ParseTreeWalker().walk(listener, tree)
    root: Ast = listener.parentStack[0]
    return cast(Ast, root["children"][0]["children"][0])  # EntireExpression -> expression


def _quote_keywords(path: str) -> str:
    """``Patient.text.div`` as ``Patient.text.`div```: after a ``.`` the narrative's ``div`` is an
    element name, but the grammar reads the keyword (the operator) unless it is delimited."""
    out: list[str] = []
    quote, index = "", 0
    while index < len(path):
        char, member = path[index], _DIV_MEMBER.match(path, index)
        if quote and char == "\\":
            out.append(path[index : index + 2])
            index += 2
            continue
        if quote:
            quote = "" if char == quote else quote
        elif char in "'`":
            quote = char
        elif member is not None:
            out.append(".`div`")
            index = member.end()
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _raise(error: Exception) -> None:
    raise error


class Paths:
    """Evaluates patch paths on one resource (re-create it after each change)."""

    def __init__(self, definitions: Definitions, resource: Json) -> None:
        self._defs = definitions
        self.root = Node(resource)
        self._vars = {"resource": resource, "rootResource": resource}

    def select(self, path: str) -> list[Node]:
        """The elements ``path`` selects, in document order."""
        return self._eval(parse_path(path), [self.root])

    def select_list(self, path: str) -> tuple[Node, Slot]:
        """For ``insert`` and ``move``: the one element holding the list ``path`` names (its
        last step must be an element name, as in ``Patient.identifier``) and the list's slot."""
        ast = parse_path(path)
        kind, children = ast.get("type"), ast.get("children", [])
        if kind == "InvocationExpression" and children[1]["type"] == "MemberInvocation":
            holders, name = self._eval(children[0], [self.root]), _identifier(children[1])
        elif kind == "TermExpression" and _term_member(ast) not in (None, self.root.type_code):
            holders, name = [self.root], str(_term_member(ast))
        else:
            raise Unprocessable(f"{path!r} is not the path of a list, such as Patient.identifier")
        if len(holders) != 1:
            raise Unprocessable(f"{path!r}: the list's parent matches {len(holders)} elements")
        slots = self._slots(holders[0], name)
        if len(slots) != 1 or not slots[0].repeats:
            raise Unprocessable(f"{path!r} is not a repeating element")
        return holders[0], slots[0]

    # -- evaluation ----------------------------------------------------------------------
    def _eval(self, ast: Ast, focus: list[Node]) -> list[Node]:
        kind, children = ast.get("type"), ast.get("children", [])
        if kind == "TermExpression":
            return self._term(children[0], focus)
        if kind == "InvocationExpression":
            return self._invoke(children[1], self._eval(children[0], focus))
        if kind == "IndexerExpression":
            selected, index = self._eval(children[0], focus), self._integer(children[1])
            return selected[index : index + 1]
        if kind == "TypeExpression" and ast["terminalNodeText"] == ["as"]:
            return self._of_type(self._eval(children[0], focus), _type_name(children[1]))
        raise Unprocessable(
            "a patch path selects elements of the resource: unions, operators and literals "
            "are not supported"
        )

    def _term(self, term: Ast, focus: list[Node]) -> list[Node]:
        if term["type"] == "ParenthesizedTerm":
            return self._eval(term["children"][0], focus)
        if term["type"] != "InvocationTerm":
            raise Unprocessable("a patch path must start with the resource type or an element")
        invocation = term["children"][0]
        if invocation["type"] == "MemberInvocation":
            name = _identifier(invocation)
            if name in _GENERIC_TYPES or (focus and name == focus[0].type_code):
                return [node for node in focus if node.is_resource]
            if self._defs.is_resource_type(name) and focus and focus[0].is_resource:
                raise Unprocessable(f"the path starts with {name}: this is a {self.root.type_code}")
        return self._invoke(invocation, focus)

    def _invoke(self, invocation: Ast, focus: list[Node]) -> list[Node]:
        kind = invocation["type"]
        if kind == "MemberInvocation":
            return self._members(focus, _identifier(invocation))
        if kind == "ThisInvocation":
            return focus
        if kind == "FunctionInvocation":
            return self._function(invocation["children"][0], focus)
        raise Unprocessable(f"{kind} cannot appear in a patch path")

    def _members(self, focus: list[Node], name: str) -> list[Node]:
        slots_by_node = [(node, slots_named(self._defs, node.type_path, name)) for node in focus]
        if focus and not any(slots for _, slots in slots_by_node):
            types = sorted({node.type_path for node in focus})
            raise Unprocessable(f"{' or '.join(types)} has no element {name!r}", code="not-found")
        found: list[Node] = []
        for node, slots in slots_by_node:
            holder = node.members
            if holder is None:
                continue
            for slot in slots:
                for value, extras, index in values_at(holder, slot):
                    found.append(Node(value, extras, holder, slot, index, node))
        return found

    def _slots(self, holder: Node, name: str) -> list[Slot]:
        slots = slots_named(self._defs, holder.type_path, name)
        if not slots:
            raise Unprocessable(f"{holder.type_path} has no element {name!r}", code="not-found")
        return slots

    # -- functions -----------------------------------------------------------------------
    def _function(self, functn: Ast, focus: list[Node]) -> list[Node]:
        name = _identifier(functn)
        params = functn["children"][1]["children"] if len(functn["children"]) > 1 else []
        expected = _ARITY.get(name)
        if expected is None:
            raise Unprocessable(f"{name}() is not supported in a patch path", code="not-supported")
        if len(params) not in expected:
            raise InvalidRequest(f"{name}() takes {' or '.join(map(str, expected))} argument(s)")
        if name == "where":
            return [node for node in focus if self._test(params[0], node)]
        if name in ("ofType", "as"):
            return self._of_type(focus, _type_name(params[0]))
        if name == "extension":
            url = self._constant(params[0])
            found = self._members(focus, "extension")
            return [n for n in found if isinstance(n.value, dict) and n.value.get("url") == url]
        if name == "single" and len(focus) > 1:
            raise Unprocessable(f"single() met {len(focus)} elements")
        number = self._integer(params[0]) if params else 0
        return _SUBSETS[name](focus, number)

    def _of_type(self, focus: list[Node], type_name: str) -> list[Node]:
        return [node for node in focus if is_a(self._defs, node.type_code, type_name)]

    def _test(self, criteria: Ast, node: Node) -> bool:
        data = _node(node.value, node.type_path, node.extras)
        result = self._fhirpath(criteria, data)
        if result in ([], [False]):
            return False
        if result == [True]:
            return True
        raise Unprocessable(f"where() criteria gave {result!r}, not a boolean")

    def _integer(self, ast: Ast) -> int:
        value = self._constant(ast)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidRequest(f"an index must be a non-negative integer, not {value!r}")
        return value

    def _constant(self, ast: Ast) -> Any:
        result = self._fhirpath(ast, self.root.value)
        if len(result) != 1:
            raise InvalidRequest("a function argument must give exactly one value")
        return result[0]

    def _fhirpath(self, ast: Ast, focus: Any) -> list[Any]:
        try:
            return list(_apply(focus, {"children": [ast]}, self._vars, models["r4"]))
        except Exception as exc:  # fhirpathpy raises plain exceptions for evaluation errors
            raise Unprocessable(f"the path cannot be evaluated: {exc}") from None


_ARITY: dict[str, tuple[int, ...]] = {
    "where": (1,),
    "ofType": (1,),
    "as": (1,),
    "extension": (1,),
    "first": (0,),
    "last": (0,),
    "tail": (0,),
    "single": (0,),
    "skip": (1,),
    "take": (1,),
}
_SUBSETS: dict[str, Callable[[list[Node], int], list[Node]]] = {
    "first": lambda nodes, _: nodes[:1],
    "last": lambda nodes, _: nodes[-1:],
    "tail": lambda nodes, _: nodes[1:],
    "single": lambda nodes, _: nodes,
    "skip": lambda nodes, n: nodes[n:],
    "take": lambda nodes, n: nodes[:n],
}


def _identifier(ast: Ast) -> str:
    """The name of a MemberInvocation or Functn node (its first Identifier child)."""
    for child in ast.get("children", []):
        if child.get("type") == "Identifier":
            return str(child["text"]).strip("`")
    raise InvalidRequest("a path step has no name")


def _term_member(ast: Ast) -> str | None:
    """``name`` when a term is a bare element name, else None."""
    term = ast["children"][0]
    if term["type"] == "InvocationTerm" and term["children"][0]["type"] == "MemberInvocation":
        return _identifier(term["children"][0])
    return None


def _type_name(ast: Ast) -> str:
    """``Quantity`` from a type specifier or a type argument (``FHIR.Quantity`` too)."""
    text = str(ast.get("text") or "")
    if not text:
        for child in ast.get("children", []):
            text = _type_name(child)
            if text:
                break
    return text.removeprefix("FHIR.").strip("`")
