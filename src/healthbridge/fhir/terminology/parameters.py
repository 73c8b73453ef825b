"""Operation inputs and outputs as ``Parameters``: https://hl7.org/fhir/R4/parameters.html and
https://hl7.org/fhir/R4/operations.html#request (GET query parameters or a POSTed Parameters).

:class:`Inputs` reads both forms alike; a value of the wrong type is an ``InvalidRequest`` naming
the parameter. :func:`parameter` builds one output ``Parameters.parameter``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.terminology.concepts import PropertyValue
from healthbridge.fhir.types import Resource


def _bad(name: str, text: str) -> InvalidRequest:
    return InvalidRequest(f"Parameter {name!r}: {text}", code="value", expression=name)


class Inputs:
    def __init__(self, values: dict[str, list[Any]]) -> None:
        self.values = values

    @classmethod
    def from_query(cls, items: Iterable[tuple[str, str]]) -> Inputs:
        values: dict[str, list[Any]] = {}
        for name, value in items:
            if not name.startswith("_"):
                values.setdefault(name, []).append(value)
        return cls(values)

    @classmethod
    def from_parameters(cls, body: Any) -> Inputs:
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise InvalidRequest("POST a Parameters resource to this operation", code="structure")
        values: dict[str, list[Any]] = {}
        for param in body.get("parameter") or []:
            if not isinstance(param, dict) or not isinstance(param.get("name"), str):
                raise InvalidRequest("Each Parameters.parameter needs a name", code="structure")
            value = param.get("resource")
            if value is None:
                value = next((v for k, v in param.items() if k.startswith("value")), None)
            if value is not None:
                values.setdefault(param["name"], []).append(value)
        return cls(values)

    def has(self, name: str) -> bool:
        return name in self.values

    def all(self, name: str) -> list[Any]:
        return self.values.get(name, [])

    def text(self, name: str) -> str | None:
        found = self.values.get(name)
        if not found:
            return None
        if len(found) > 1:
            raise _bad(name, "give it once")
        if not isinstance(found[0], str) or not found[0]:
            raise _bad(name, "expected a non-empty string")
        return found[0]

    def flag(self, name: str) -> bool | None:
        found = self.values.get(name)
        if not found:
            return None
        value = found[0]
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return bool(value == "true")
        raise _bad(name, f"expected true or false, not {value!r}")

    def number(self, name: str) -> int | None:
        found = self.values.get(name)
        if not found:
            return None
        value = found[0]
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
        raise _bad(name, f"expected a non-negative integer, not {value!r}")

    def resource(self, name: str, resource_type: str) -> Resource | None:
        found = self.values.get(name)
        if not found:
            return None
        value = found[0]
        if not isinstance(value, dict) or value.get("resourceType") != resource_type:
            raise _bad(name, f"expected a {resource_type} resource")
        return value

    def coding(self, name: str) -> dict[str, Any] | None:
        found = self.values.get(name)
        if not found:
            return None
        value = found[0]
        if not isinstance(value, dict) or not isinstance(value.get("code"), str):
            raise _bad(name, "expected a Coding with a code")
        return value

    def codings(self, name: str) -> list[dict[str, Any]] | None:
        """The codings of a CodeableConcept parameter."""
        found = self.values.get(name)
        if not found:
            return None
        value = found[0]
        codings = value.get("coding") if isinstance(value, dict) else None
        if not isinstance(codings, list) or not all(isinstance(c, dict) for c in codings):
            raise _bad(name, "expected a CodeableConcept with codings")
        return codings


def typed_value(value: PropertyValue) -> dict[str, Any]:
    """``value[x]`` of a property value (``code`` values are strings: ``valueCode``)."""
    if isinstance(value, tuple):
        return {"valueCoding": {"system": value[0], "code": value[1]}}
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, Decimal):
        return {"valueDecimal": value}
    return {"valueCode": value} if " " not in value else {"valueString": value}


def parameter(name: str, **value: Any) -> dict[str, Any]:
    return {"name": name, **value}


def parameters(params: Iterable[dict[str, Any]]) -> Resource:
    return {"resourceType": "Parameters", "parameter": list(params)}
