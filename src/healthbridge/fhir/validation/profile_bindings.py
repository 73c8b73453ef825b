"""Terminology bindings of a profile, every strength: https://hl7.org/fhir/R4/terminologies.html#strength.

A code outside the bound value set is an error for a *required* binding, a warning for an
*extensible* one, information for a *preferred* one and nothing for an *example* one. Membership
comes from the R4 expansions the server ships (``Definitions.value_set``) and otherwise from the
caller's ``CodeCheck``; when neither can tell, only a required binding says so (information).
Per datatype (https://hl7.org/fhir/R4/terminologies.html#binding): a ``code`` (or string, uri)
is looked up without a system, a ``Coding`` or ``Quantity`` by system and code, and a
``CodeableConcept`` is in the value set when any coding is (a text-only concept is acceptable
for extensible and preferred bindings, not for required ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import Severity

CodeCheck = Callable[[str, str | None, str], bool | None]
"""(value set url, system, code) -> is the code a member? None when it cannot be told."""

SEVERITY: Final[dict[str, Severity]] = {
    "required": "error",
    "extensible": "warning",
    "preferred": "information",
}

_CODED: Final = frozenset({"code", "string", "uri", "Coding", "CodeableConcept", "Quantity"})


def _pairs(value: object, type_code: str) -> list[tuple[str | None, str]] | None:
    """The (system, code) pairs of a coded value; None when it carries nothing to check."""
    if type_code in ("code", "string", "uri"):
        return [(None, value)] if isinstance(value, str) else None
    if not isinstance(value, dict):
        return None
    if type_code == "CodeableConcept":
        codings = value.get("coding")
        items = codings if isinstance(codings, list) else []
        return [p for c in items for p in (_pairs(c, "Coding") or ())]
    code, system = value.get("code"), value.get("system")
    if not isinstance(code, str):
        return None
    return [(system if isinstance(system, str) else None, code)]


class Membership:
    """Answers "is this code in that value set?" from the shipped expansions, then the caller."""

    __slots__ = ("_codes", "_definitions")

    def __init__(self, definitions: Definitions, codes: CodeCheck | None) -> None:
        self._definitions = definitions
        self._codes = codes

    def __call__(self, value_set: str, system: str | None, code: str) -> bool | None:
        known = self._definitions.value_set(value_set)
        if known is not None:
            return code in known.codes if system is None else (system, code) in known.pairs
        if self._codes is None:
            return None
        try:
            return self._codes(value_set, system, code)
        except Exception:
            return None


def _describe(pairs: list[tuple[str | None, str]]) -> str:
    shown = [code if system is None else f"{system}|{code}" for system, code in pairs[:4]]
    return ", ".join(repr(s) for s in shown)


def binding_issue(
    value: Any, type_code: str, strength: str, value_set: str, member: Membership
) -> tuple[Severity, str, str] | None:
    """``(severity, issue code, message)`` when ``value`` breaks the binding, else None."""
    if strength not in SEVERITY or type_code not in _CODED:
        return None
    pairs = _pairs(value, type_code)
    if pairs is None:
        return None
    if not pairs:  # a CodeableConcept with text only
        if strength != "required" or not isinstance(value, dict) or "text" not in value:
            return None
        return "error", "code-invalid", f"has no coding from the required value set {value_set}"
    answers = [member(value_set, system, code) for system, code in pairs]
    if True in answers:
        return None
    if None in answers:
        if strength != "required":
            return None
        message = f"cannot check {_describe(pairs)} against the required value set {value_set}"
        return "information", "informational", message
    kind = "coding" if type_code != "code" else "code"
    message = f"{kind} {_describe(pairs)} is not in the {strength} value set {value_set}"
    return SEVERITY[strength], "code-invalid", message


MAX_VALUE_SET: Final = "http://hl7.org/fhir/StructureDefinition/elementdefinition-maxValueSet"
"""https://hl7.org/fhir/R4/extension-elementdefinition-maxvalueset.html: the codes an
extensible or preferred binding may never go beyond."""


def max_value_set(binding: object) -> str | None:
    """The ``maxValueSet`` extension of an ``ElementDefinition.binding``, if any."""
    extensions = binding.get("extension") if isinstance(binding, dict) else None
    for ext in extensions if isinstance(extensions, list) else ():
        if isinstance(ext, dict) and ext.get("url") == MAX_VALUE_SET:
            found = ext.get("valueCanonical") or ext.get("valueUri")
            return found if isinstance(found, str) else None
    return None


def max_value_set_issue(
    value: Any, type_code: str, value_set: str, member: Membership
) -> tuple[Severity, str, str] | None:
    """An error when ``value`` has no code in the maximum value set, whatever the binding
    strength (a CodeableConcept needs one coding in it, as for any binding); information when
    membership cannot be decided."""
    pairs = _pairs(value, type_code) if type_code in _CODED else None
    if not pairs:
        return None
    answers = [member(value_set, system, code) for system, code in pairs]
    if True in answers:
        return None
    if None in answers:
        message = f"cannot check {_describe(pairs)} against the maximum value set {value_set}"
        return "information", "informational", message
    kind = "coding" if type_code != "code" else "code"
    message = f"{kind} {_describe(pairs)} is not in the maximum value set {value_set}"
    return "error", "code-invalid", message
