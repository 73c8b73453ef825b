"""The Parameters resource of a FHIRPath Patch, read into :class:`Operation` s.

https://hl7.org/fhir/R4/fhirpatch.html#parameters: one ``parameter`` named ``operation`` per
operation, in order, each with ``part`` s ``type`` (valueCode: add | insert | delete | replace |
move), ``path`` (valueString, FHIRPath), and as the type needs them ``name`` (valueString),
``value`` (any value[x], a resource or nested parts), ``index``, ``source``, ``destination``
(valueInteger). Anything else is a malformed patch: InvalidRequest, naming the parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.patch.elements import Json
from healthbridge.fhir.patch.values import PatchValue, read_value

MAX_OPERATIONS = 1000
MAX_PATH_LENGTH = 4096

_NEEDS: dict[str, frozenset[str]] = {
    "add": frozenset({"path", "name", "value"}),
    "insert": frozenset({"path", "value", "index"}),
    "delete": frozenset({"path"}),
    "replace": frozenset({"path", "value"}),
    "move": frozenset({"path", "source", "destination"}),
}
"""The parts each operation type takes (besides ``type``); all of them are required."""

_STRINGS = frozenset({"path", "name"})
_INTEGERS = frozenset({"index", "source", "destination"})
_PART_NAMES = frozenset({"type", "value"}) | _STRINGS | _INTEGERS


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation; ``where`` locates it in the Parameters (``Parameters.parameter[0]``)."""

    where: str
    type: str
    path: str
    name: str = ""
    value: PatchValue | None = None
    index: int = 0
    source: int = 0
    destination: int = 0


def read_operations(parameters: Any, definitions: Definitions) -> list[Operation]:
    """The operations of a FHIRPath Patch Parameters resource, in order."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise InvalidRequest("A FHIRPath Patch is a Parameters resource", code="structure")
    items = parameters.get("parameter", [])
    if not isinstance(items, list):
        raise InvalidRequest("Parameters.parameter must be a list", code="structure")
    if len(items) > MAX_OPERATIONS:
        raise InvalidRequest(
            f"A FHIRPath Patch may hold at most {MAX_OPERATIONS} operations", code="too-costly"
        )
    return [
        _operation(item, f"Parameters.parameter[{index}]", definitions)
        for index, item in enumerate(items)
    ]


def _operation(item: Any, where: str, definitions: Definitions) -> Operation:
    if not isinstance(item, dict) or item.get("name") != "operation":
        raise InvalidRequest(f"{where} must be a parameter named 'operation'", expression=where)
    parts = _parts(item.get("part"), where)
    kind = _code(parts.pop("type", (0, None))[1], where)
    needed = _NEEDS[kind]
    missing, extra = sorted(needed - parts.keys()), sorted(parts.keys() - needed)
    if missing or extra:
        problem = f"lacks {', '.join(missing)}" if missing else f"may not have {', '.join(extra)}"
        raise InvalidRequest(
            f"{where}: a {kind} operation takes {', '.join(sorted(needed))}; this one {problem}",
            expression=where,
            code="required" if missing else "structure",
        )
    fields: dict[str, Any] = {}
    for name, (position, part) in parts.items():
        inner = f"{where}.part[{position}]"
        if name in _STRINGS:
            fields[name] = _string(part, inner)
        elif name in _INTEGERS:
            fields[name] = _integer(part, inner)
        else:
            fields[name] = read_value(part, inner, definitions)
    return Operation(where, kind, **fields)


def _parts(parts: Any, where: str) -> dict[str, tuple[int, Json]]:
    """The parts by name, with their positions."""
    if not isinstance(parts, list):
        raise InvalidRequest(
            f"{where} needs parts (type, path, ...)", expression=where, code="required"
        )
    found: dict[str, tuple[int, Json]] = {}
    for position, part in enumerate(parts):
        name = part.get("name") if isinstance(part, dict) else None
        if name not in _PART_NAMES:
            raise InvalidRequest(
                f"{where}: {name!r} is not a FHIRPath Patch part", expression=where
            )
        if name in found:
            raise InvalidRequest(f"{where}: the part {name!r} is given twice", expression=where)
        found[str(name)] = (position, part)
    return found


def _code(part: Json | None, where: str) -> str:
    kind = part.get("valueCode") if part is not None else None
    if kind not in _NEEDS:
        raise InvalidRequest(
            f"{where}: type must be a valueCode, one of {', '.join(_NEEDS)}",
            expression=where,
            code="required" if part is None else "code-invalid",
        )
    return str(kind)


def _string(part: Json, where: str) -> str:
    value = part.get("valueString")
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{where} must be a non-empty valueString", expression=where)
    if len(value) > MAX_PATH_LENGTH:
        raise InvalidRequest(
            f"{where} is longer than {MAX_PATH_LENGTH} characters",
            expression=where,
            code="too-costly",
        )
    return value


def _integer(part: Json, where: str) -> int:
    value = part.get("valueInteger")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequest(
            f"{where} must be a non-negative valueInteger", expression=where, code="value"
        )
    return value
