"""The CapabilityStatement served at ``GET [base]/metadata``:
https://hl7.org/fhir/R4/capabilitystatement.html and http.html#capabilities.

Generated from the router's interaction table, the operation registry and the R4 search
parameters the server evaluates (https://hl7.org/fhir/R4/search.html), so it lists exactly what
the server does: per type its search parameters with their type and documentation,
``searchInclude``/``searchRevInclude``; at system level search-system, the Resource-level
parameters and the compartments (compartmentdefinition.html); per type, ``supportedProfile`` lists
the profiles installed on the server and the ones it requires (rebuilt when they change).
Built once at start-up;
``?mode=full`` and ``?mode=normative`` return the same statement; ``?mode=terminology`` the
TerminologyCapabilities (:mod:`healthbridge.rest.terminology.capabilities`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import Definitions, SearchParameter
from healthbridge.fhir.meta import format_instant
from healthbridge.fhir.search.parse import MODIFIERS
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import base_url, json_response
from healthbridge.rest.interactions.search import FULL_TEXT
from healthbridge.rest.negotiation import check_format
from healthbridge.rest.operations.registry import OperationRegistry
from healthbridge.rest.routes import TABLE

FHIR_VERSION = "4.0.1"
_PREFIXED = frozenset({"number", "date", "quantity"})
SYSTEM_PARAMS = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_content")


def supported(param: SearchParameter) -> bool:
    """The parameters the server evaluates (not ``_query``, ``_list``, ``_contained``)."""
    if param.code in FULL_TEXT or param.code in ("_filter", "near"):
        return True
    return bool(param.expression) and param.type != "special"


def _expression(definitions: Definitions, param: SearchParameter, resource_type: str) -> str:
    """The part of a shared expression (``A.code | B.code``) that concerns ``resource_type``."""
    if param.type == "composite":
        parts = [definitions.search_parameter(c.definition) for c in param.component]
        return "$".join(p.code for p in parts if p is not None) + " (composite)"
    alternatives = str(param.expression).split(" | ")
    own = [a for a in alternatives if a.lstrip("(").startswith((f"{resource_type}.", "Resource."))]
    return " | ".join(own or alternatives)


def _documentation(definitions: Definitions, param: SearchParameter, resource_type: str) -> str:
    if param.code in FULL_TEXT:
        return f"Full text: {FULL_TEXT[param.code]}; no modifiers"
    if param.code == "_filter":
        return (
            "https://hl7.org/fhir/R4/search_filter.html: and/or/not over this type's "
            "parameters; operators eq ne co sw ew gt lt ge le sa eb ap po pr re"
        )
    if param.code == "near":
        return "latitude|longitude|distance|units (UCUM length; km by default; 10 km if omitted)"
    parts = [_expression(definitions, param, resource_type)]
    if param.type == "reference" and param.target:
        parts.append(f"refers to {', '.join(param.target)}")
    modifiers = sorted(MODIFIERS.get(param.type, frozenset()))
    if param.type == "reference":
        modifiers.append("[type]")
    if modifiers:
        parts.append("modifiers " + " ".join(f":{m}" for m in modifiers))
    if param.type in _PREFIXED:
        parts.append("prefixes eq ne gt lt ge le sa eb ap")
    return "; ".join(parts)


def _search_param(
    definitions: Definitions, param: SearchParameter, resource_type: str
) -> dict[str, Any]:
    return {
        "name": param.code,
        "definition": param.url,
        "type": param.type,
        "documentation": _documentation(definitions, param, resource_type),
    }


def _reverse_includes(definitions: Definitions) -> dict[str, list[str]]:
    """For each type, the ``Source:param`` references that may point at it (searchRevInclude)."""
    out: dict[str, list[str]] = {t: [] for t in definitions.resource_types}
    for source in sorted(definitions.resource_types):
        for code, param in sorted(definitions.search_parameters(source).items()):
            if param.type != "reference" or not supported(param):
                continue
            for target in param.target or sorted(definitions.resource_types):
                if target in out:
                    out[target].append(f"{source}:{code}")
    return out


def _search_entry(
    definitions: Definitions, resource_type: str, revincludes: list[str]
) -> dict[str, Any]:
    params = [p for _, p in sorted(definitions.search_parameters(resource_type).items())]
    params = [p for p in params if supported(p)]
    includes = [f"{resource_type}:{p.code}" for p in params if p.type == "reference"]
    return {
        "searchInclude": ["*", f"{resource_type}:*", *includes],
        "searchRevInclude": revincludes,
        "searchParam": [
            *(_search_param(definitions, p, resource_type) for p in params),
            _LIST_PARAM,
        ],
    }


_LIST_PARAM = {
    "name": "_list",
    "type": "token",
    "documentation": "https://hl7.org/fhir/R4/search.html#list: the resources List/[id] names "
    "(_list=[id]); functional lists ($current-...) are not supported",
}


def _resource_entry(
    resource_type: str, operations: OperationRegistry, search: dict[str, Any], multiple: bool
) -> dict[str, Any]:
    codes = sorted({i.code for i in TABLE.values() if i.level != "system"})
    entry: dict[str, Any] = {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": code} for code in codes],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalUpdate": True,
        "conditionalRead": "full-support",
        "conditionalDelete": "multiple" if multiple else "single",
        **search,
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


def _system_interactions() -> list[str]:
    """The system-level codes; ``POST [base]`` serves both transaction and batch."""
    codes = list(dict.fromkeys(i.code for i in TABLE.values() if i.level == "system"))
    if "transaction" in codes:
        codes.insert(codes.index("transaction") + 1, "batch")
    return codes


def _system_search(definitions: Definitions) -> dict[str, Any]:
    params = definitions.search_parameters("Resource")
    found = [
        _search_param(definitions, params[code], "Resource")
        for code in SYSTEM_PARAMS
        if code in params
    ]
    found.append(
        {
            "name": "_type",
            "type": "token",
            "documentation": "Limits a system-level search to these resource types (comma list)",
        }
    )
    compartments = [
        f"http://hl7.org/fhir/CompartmentDefinition/{name[0].lower()}{name[1:]}"
        for name in sorted(definitions.compartments)
    ]
    return {"searchParam": found, "compartment": compartments}


Profiles = Callable[[], Mapping[str, Sequence[str]]]
"""Resource type -> the profiles the server supports for it (installed or required)."""


def _with_profiles(entries: list[dict[str, Any]], profiles: Profiles | None) -> None:
    """``supportedProfile`` (https://hl7.org/fhir/R4/capabilitystatement-definitions.html
    #CapabilityStatement.rest.resource.supportedProfile) for the types that have some."""
    known = profiles() if profiles is not None else {}
    for entry in entries:
        urls = known.get(entry["type"])
        if urls:
            entry["supportedProfile"] = list(urls)


Extensions = Callable[[], Mapping[str, Sequence[dict[str, Any]]]]
"""Resource type -> extensions of its ``rest.resource`` entry, from features (the Subscriptions
Backport IG's ``capabilitystatement-subscriptiontopic-canonical`` on ``Subscription``)."""


def _with_extensions(entries: list[dict[str, Any]], extensions: Extensions | None) -> None:
    known = extensions() if extensions is not None else {}
    for entry in entries:
        found = known.get(entry["type"])
        if found:
            entry["extension"] = [*entry.get("extension", []), *found]


def capability_statement(
    ctx: RestContext,
    operations: OperationRegistry,
    security: dict[str, Any] | None = None,
    profiles: Profiles | None = None,
    extensions: Extensions | None = None,
) -> dict[str, Any]:
    """The statement; ``security`` is ``rest.security`` (how to get a token), None when the
    server runs without authorization."""
    definitions = ctx.search.definitions  # core + searchable custom SearchParameters
    types = sorted(definitions.resource_types)
    revincludes = _reverse_includes(definitions)
    system_ops = [
        {"name": op.name, "definition": op.definition}
        for op in operations.all()
        if "system" in op.levels
    ]
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "HealthBridge FHIR R4 REST API",
        "resource": [
            _resource_entry(
                t,
                operations,
                _search_entry(definitions, t, revincludes[t]),
                ctx.limits.conditional_delete_multiple,
            )
            for t in types
        ],
        "interaction": [{"code": code} for code in _system_interactions()],
        **_system_search(definitions),
    }
    _with_profiles(rest["resource"], profiles)
    _with_extensions(rest["resource"], extensions)
    if system_ops:
        rest["operation"] = system_ops
    if security is not None:
        rest = {"mode": rest.pop("mode"), "documentation": rest.pop("documentation"),
                "security": security, **rest}  # fmt: skip
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(datetime.now(UTC)),
        "publisher": "HealthBridge",
        "kind": "instance",
        "software": {"name": "HealthBridge", "version": ctx.software_version},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [rest],
    }


class Capabilities:
    def __init__(
        self,
        ctx: RestContext,
        operations: OperationRegistry,
        security: dict[str, Any] | None = None,
        terminology: Callable[[Request], Awaitable[Response]] | None = None,
        profiles: Profiles | None = None,
        extensions: Extensions | None = None,
    ) -> None:
        self.ctx = ctx
        self._profiles = profiles
        self._extensions = extensions
        self._terminology = terminology
        """Answers ``?mode=terminology`` (TerminologyCapabilities, rest/terminology/)."""
        self._operations = operations
        self._security = security
        self.statement = capability_statement(ctx, operations, security, profiles, extensions)
        self._encoded: dict[str, bytes] = {}

    def refresh(self) -> None:
        """Rebuild the statement (the searchable parameters changed: a $reindex finished; the
        installed profiles changed)."""
        self.statement = capability_statement(
            self.ctx, self._operations, self._security, self._profiles, self._extensions
        )
        self._encoded = {}

    async def handle(self, request: Request) -> Response:
        check_format(request.query_params.get("_format"), request.headers.get("accept"))
        if self._terminology is not None and request.query_params.get("mode") == "terminology":
            return await self._terminology(request)
        base = base_url(request, self.ctx.limits)
        body = self._encoded.get(base)
        if body is None:
            statement = dict(self.statement)
            statement["implementation"] = {"description": "HealthBridge", "url": base}
            body = jsonformat.dumps(statement)
            if len(self._encoded) < 16:
                self._encoded[base] = body
        return json_response(body, request)
