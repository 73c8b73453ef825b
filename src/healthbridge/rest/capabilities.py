"""The CapabilityStatement served at ``GET [base]/metadata``:
https://hl7.org/fhir/R4/capabilitystatement.html and http.html#capabilities.

Generated from the router's interaction table and the operation registry, so it lists exactly
what the server does. Built once at start-up; ``?mode=full`` and ``?mode=normative`` return the
same statement (no TerminologyCapabilities yet).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.meta import format_instant
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import base_url, json_response
from healthbridge.rest.negotiation import check_format
from healthbridge.rest.operations.registry import OperationRegistry
from healthbridge.rest.routes import TABLE

FHIR_VERSION = "4.0.1"


def _resource_entry(resource_type: str, operations: OperationRegistry) -> dict[str, Any]:
    codes = sorted({i.code for i in TABLE.values() if i.level != "system"})
    entry: dict[str, Any] = {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": code} for code in codes],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": False,
        "conditionalRead": "full-support",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
    }
    ops = [
        {"name": op.name, "definition": op.definition}
        for op in operations.all()
        if op.levels & {"type", "instance"}
        and (op.resource_types is None or resource_type in op.resource_types)
    ]
    if ops:
        entry["operation"] = ops
    return entry


def capability_statement(ctx: RestContext, operations: OperationRegistry) -> dict[str, Any]:
    types = sorted(ctx.service.definitions.resource_types)
    system_ops = [
        {"name": op.name, "definition": op.definition}
        for op in operations.all()
        if "system" in op.levels
    ]
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "HealthBridge FHIR R4 REST API",
        "resource": [_resource_entry(t, operations) for t in types],
        "interaction": [{"code": i.code} for i in TABLE.values() if i.level == "system"],
    }
    if system_ops:
        rest["operation"] = system_ops
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(datetime.now(UTC)),
        "publisher": "HealthBridge",
        "kind": "instance",
        "software": {"name": "HealthBridge", "version": ctx.software_version},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [rest],
    }


class Capabilities:
    def __init__(self, ctx: RestContext, operations: OperationRegistry) -> None:
        self.ctx = ctx
        self.statement = capability_statement(ctx, operations)
        self._encoded: dict[str, bytes] = {}

    async def handle(self, request: Request) -> Response:
        check_format(request.query_params.get("_format"), request.headers.get("accept"))
        base = base_url(request, self.ctx.limits)
        body = self._encoded.get(base)
        if body is None:
            statement = dict(self.statement)
            statement["implementation"] = {"description": "HealthBridge", "url": base}
            body = jsonformat.dumps(statement)
            if len(self._encoded) < 16:
                self._encoded[base] = body
        return json_response(body, request)
