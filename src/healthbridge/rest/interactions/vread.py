"""vread: ``GET [base]/[type]/[id]/_history/[vid]`` (https://hl7.org/fhir/R4/http.html#vread).

A version that records a delete answers 410 Gone; an unknown version 404.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.rest.context import RestContext
from healthbridge.rest.interactions.read import respond


async def handle(ctx: RestContext, request: Request) -> Response:
    params = request.path_params
    stored = await ctx.service.vread(params["type"], params["id"], params["vid"])
    return respond(ctx, stored, request)
