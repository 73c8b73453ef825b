"""$validate: https://hl7.org/fhir/R4/resource-operation-validate.html.

``POST [base]/[type]/$validate`` and ``POST|GET [base]/[type]/[id]/$validate``. The body is the
resource itself or a Parameters resource with ``resource``, ``mode`` and ``profile``; ``profile``
may also be given as a query parameter (``?profile=url``, repeatable). The answer is 200 with an
OperationOutcome listing every issue (severity, code, FHIRPath location) whether or not the
content is valid; only a request that cannot be read at all is a 4xx.

Besides the base R4 rules, the resource is validated against the profiles asked for (one the
server does not know is an error naming ``healthbridge packages install``), the profiles it
claims in ``meta.profile`` (unknown ones: a warning) and the profiles the server requires for
its type (:mod:`healthbridge.rest.profiles.rules`); must-support information is reported here,
never on writes.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import Gone, InvalidRequest, Issue
from healthbridge.fhir.outcome import operation_outcome
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import read_resource, resource_json
from healthbridge.rest.operations.registry import Operation

MODES = frozenset({"create", "update", "delete"})


def _unwrap(body: Any, resource_type: str) -> tuple[Any, str | None, list[str]]:
    """Split a Parameters wrapper into (resource, mode, profiles)."""
    if not (isinstance(body, dict) and body.get("resourceType") == "Parameters"):
        return body, None, []
    params = body.get("parameter")
    if not isinstance(params, list) or (
        resource_type == "Parameters"
        and not any(isinstance(p, dict) and p.get("name") == "resource" for p in params)
    ):
        return body, None, []
    resource: Any = None
    mode: str | None = None
    profiles: list[str] = []
    for param in params:
        if not isinstance(param, dict):
            continue
        name = param.get("name")
        if name == "resource":
            resource = param.get("resource")
        elif name == "mode":
            mode = param.get("valueCode") or param.get("valueString")
        elif name == "profile":
            profiles.append(str(param.get("valueUri") or param.get("valueCanonical") or ""))
    return resource, mode, profiles


async def _stored_resource(ctx: RestContext, resource_type: str, id: str) -> Any:
    stored = await ctx.service.read(resource_type, id)
    return jsonformat.loads(stored.content)


async def handle(ctx: RestContext, request: Request) -> Response:
    resource_type: str = request.path_params["type"]
    id: str | None = request.path_params.get("id")
    ctx.service.check_type(resource_type)
    issues: list[Issue] = []
    if request.method == "GET":
        if id is None:
            raise InvalidRequest("GET $validate needs an instance: [type]/[id]/$validate")
        resource, mode = await _stored_resource(ctx, resource_type, id), None
        profiles: list[str] = []
    else:
        body = await read_resource(request, ctx.limits)
        resource, mode, profiles = _unwrap(body, resource_type)
    profiles += [p for p in request.query_params.getlist("profile") if p]
    if mode is not None and mode not in MODES:
        raise InvalidRequest(
            f"mode={mode!r} is not one of create, update, delete", code="value", expression="mode"
        )
    if mode == "delete":
        if id is None:
            raise InvalidRequest("mode=delete needs an instance: [type]/[id]/$validate")
        try:
            await ctx.service.read(resource_type, id)
        except Gone:
            issues.append(Issue("warning", "deleted", f"{resource_type}/{id} is already deleted"))
        return resource_json(operation_outcome(issues), request)
    if resource is None:
        raise InvalidRequest("Nothing to validate: send a resource", code="required")
    issues.extend(ctx.service.validate(resource, resource_type))
    if (
        mode == "update"
        and id is not None
        and isinstance(resource, dict)
        and resource.get("id") != id
    ):
        issues.append(
            Issue(
                "error",
                "invalid",
                f"id must be {id!r} to update {resource_type}/{id}",
                (f"{resource_type}.id",),
            )
        )
    issues.extend(_profile_issues(ctx, resource, resource_type, profiles))
    return resource_json(operation_outcome(issues), request)


def _profile_issues(
    ctx: RestContext, resource: Any, resource_type: str, profiles: list[str]
) -> list[Issue]:
    rules = ctx.service.profiles
    if rules is None:  # a service built without profile validation (some tests, tools)
        return [
            Issue("information", "not-supported", f"Profile {p} was not checked") for p in profiles
        ]
    if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
        return []  # the base validation has said what is wrong
    return rules.validate(resource, resource_type, [p for p in profiles if p])


OPERATION = Operation(
    name="validate",
    definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
    levels=frozenset({"type", "instance"}),
    methods=frozenset({"POST", "GET"}),
    handler=handle,
)
