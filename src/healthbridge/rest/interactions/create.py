"""create: ``POST [base]/[type]`` (https://hl7.org/fhir/R4/http.html#create).

The server assigns the id (any id in the body is ignored) and answers 201 with ``Location``,
``ETag`` and ``Last-Modified``; the body follows ``Prefer: return=``.
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
    stored = await ctx.service.create(resource_type, body)
    return write_response(stored, request, ctx.limits, 201)
