"""create: ``POST [base]/[type]`` (https://hl7.org/fhir/R4/http.html#create).

The server assigns the id (any id in the body is ignored) and answers 201 with ``Location``,
``ETag`` and ``Last-Modified``; the body follows ``Prefer: return=``. With ``If-None-Exist:
[search parameters]`` it is a conditional create (http.html#ccreate): created (201) when nothing
matches, the one match returned as is (200), 412 when several match; concurrent conditional
creates with the same criteria make exactly one resource.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.rest.context import RestContext
from healthbridge.rest.http import read_resource, write_response


async def handle(ctx: RestContext, request: Request) -> Response:
    resource_type = request.path_params["type"]
    ctx.service.check_type(resource_type)  # 404 before reading a body we would not store
    body = await read_resource(request, ctx.limits)
    criteria = request.headers.get("if-none-exist")
    if criteria is None:
        stored = await ctx.service.create(resource_type, body)
        return write_response(stored, request, ctx.limits, 201)
    stored, created = await ctx.service.conditional_create(
        resource_type, body, criteria.lstrip("?").removeprefix(f"{resource_type}?")
    )
    return write_response(stored, request, ctx.limits, 201 if created else 200)
