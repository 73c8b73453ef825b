"""The operation registry: https://hl7.org/fhir/R4/operations.html.

Operations are registered explicitly (no import-time magic); the router dispatches
``[base]/$op``, ``[base]/[type]/$op`` and ``[base]/[type]/[id]/$op`` through it, and the
CapabilityStatement lists exactly what is registered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir.errors import MethodNotAllowed, NotFound
from healthbridge.rest.context import RestContext

Level = Literal["system", "type", "instance"]
Handler = Callable[[RestContext, Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str  # without the "$"
    definition: str  # canonical URL of the OperationDefinition
    levels: frozenset[Level]
    methods: frozenset[str]
    handler: Handler
    resource_types: frozenset[str] | None = None  # None: every type


class OperationRegistry:
    def __init__(self) -> None:
        self._operations: dict[str, Operation] = {}

    def register(self, operation: Operation) -> None:
        if operation.name in self._operations:
            raise ValueError(f"operation ${operation.name} registered twice")
        self._operations[operation.name] = operation

    def all(self) -> list[Operation]:
        return sorted(self._operations.values(), key=lambda op: op.name)

    def resolve(self, name: str, level: Level, method: str, resource_type: str | None) -> Operation:
        operation = self._operations.get(name)
        if (
            operation is None
            or level not in operation.levels
            or (
                resource_type is not None
                and operation.resource_types is not None
                and resource_type not in operation.resource_types
            )
        ):
            where = f"{resource_type} " if resource_type else ""
            raise NotFound(
                f"Operation ${name} is not supported at {where}{level} level; "
                "see /fhir/metadata for the operations this server offers",
                code="not-supported",
            )
        if method not in operation.methods:
            raise MethodNotAllowed(
                f"${name} does not accept {method}; use {' or '.join(sorted(operation.methods))}",
                headers={"Allow": ", ".join(sorted(operation.methods))},
            )
        return operation
