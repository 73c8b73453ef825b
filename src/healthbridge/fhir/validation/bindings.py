"""Required terminology bindings: https://hl7.org/fhir/R4/terminologies.html#required.

"To be conformant, the concept in this element SHALL be from the specified value set." Per
datatype (https://hl7.org/fhir/R4/terminologies.html#binding):

* ``code``: the value is one of the value set's codes;
* ``Coding``: its ``system``/``code`` pair is in the value set;
* ``CodeableConcept``: at least one of its codings is in the value set (a text-only concept does
  not conform).

Codes come from the generated expansions. Value sets that could not be expanded when the data
was generated (``Definitions.unexpanded_value_sets``: BCP-13 mime types and UCUM units, which are
grammars, and LOINC answer list LL379-9, which is not in the core package) are skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from healthbridge.fhir.definitions import ValueSetCodes

BindingCheck = Callable[[object], str | None]

_SHOWN_CODES: Final = 12


def _allowed(value_set: ValueSetCodes) -> str:
    codes = sorted(value_set.codes)
    shown = ", ".join(codes[:_SHOWN_CODES])
    more = f", ... ({len(codes)} codes)" if len(codes) > _SHOWN_CODES else ""
    return f"{shown}{more}"


def _code_check(value_set: ValueSetCodes) -> BindingCheck:
    codes = value_set.codes

    def check(value: object) -> str | None:
        if value in codes:
            return None
        return (
            f"code {value!r} is not in the required value set {value_set.url} "
            f"(allowed: {_allowed(value_set)})"
        )

    return check


def _pair(coding: object) -> tuple[str | None, str | None] | None:
    """``(system, code)`` of a Coding object, or None when it is malformed (the structure pass
    reports that)."""
    if type(coding) is not dict:
        return None
    system, code = coding.get("system"), coding.get("code")
    if (system is None or type(system) is str) and (code is None or type(code) is str):
        return system, code
    return None


def _coding_check(value_set: ValueSetCodes) -> BindingCheck:
    pairs = value_set.pairs

    def check(value: object) -> str | None:
        pair = _pair(value)
        if pair is None or pair in pairs:
            return None  # a non-object is reported by the structure pass
        system, code = pair
        return (
            f"coding {system}|{code} is not in the required value set {value_set.url} "
            f"(allowed codes: {_allowed(value_set)})"
        )

    return check


def _concept_check(value_set: ValueSetCodes) -> BindingCheck:
    pairs = value_set.pairs

    def check(value: object) -> str | None:
        if type(value) is not dict:
            return None
        codings = value.get("coding")
        if type(codings) is list and any(_pair(c) in pairs for c in codings):
            return None
        return (
            f"none of the codings is in the required value set {value_set.url} "
            f"(allowed codes: {_allowed(value_set)})"
        )

    return check


def binding_check(type_code: str, value_set: ValueSetCodes | None) -> BindingCheck | None:
    """The check for an element of ``type_code`` bound *required* to ``value_set``, or None when
    the value set was not expanded or the type carries no code."""
    if value_set is None:
        return None
    if type_code in ("code", "string", "uri"):
        return _code_check(value_set)
    if type_code == "Coding":
        return _coding_check(value_set)
    if type_code == "CodeableConcept":
        return _concept_check(value_set)
    return None
