"""Conditional update: ``PUT [base]/[type]?[search parameters]``
(https://hl7.org/fhir/R4/http.html#cond-update).

No match: the body is created (under its own id when it has one); one match: that resource is
updated (a body id, if given, must be its id); several: 412. ``If-Match`` applies to the
matched resource. Concurrent conditional updates with the same criteria take turns.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.rest import negotiation
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import conditional_criteria, read_resource, write_response


async def handle(ctx: RestContext, request: Request) -> Response:
    resource_type = request.path_params["type"]
    ctx.service.check_type(resource_type)
    criteria = conditional_criteria(request, resource_type, "PUT")
    header = request.headers.get("if-match")
    if_match = negotiation.parse_etag(header, "If-Match") if header is not None else None
    body = await read_resource(request, ctx.limits)
    stored, created = await ctx.service.conditional_update(resource_type, body, criteria, if_match)
    return write_response(stored, request, ctx.limits, 201 if created else 200)
