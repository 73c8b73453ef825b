"""update: ``PUT [base]/[type]/[id]`` (https://hl7.org/fhir/R4/http.html#update), including
update-as-create with a client-chosen id (201) and version-aware updates with ``If-Match``
(http.html#concurrency: 412 on mismatch).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.rest import negotiation
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import read_resource, write_response


async def handle(ctx: RestContext, request: Request) -> Response:
    params = request.path_params
    ctx.service.check_type(params["type"])  # 404/400 before reading a body we would not store
    ctx.service.check_id(params["id"])
    header = request.headers.get("if-match")
    if_match = negotiation.parse_etag(header, "If-Match") if header is not None else None
    body = await read_resource(request, ctx.limits)
    stored, created = await ctx.service.update(params["type"], params["id"], body, if_match)
    return write_response(stored, request, ctx.limits, 201 if created else 200)
