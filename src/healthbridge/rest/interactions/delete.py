"""delete: ``DELETE [base]/[type]/[id]`` (https://hl7.org/fhir/R4/http.html#delete).

Deleting records a new version with no content; a later read answers 410 Gone and history keeps
every version. Deleting something absent or already deleted is not an error (204).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.outcome import information
from healthbridge.rest import negotiation
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import json_response


async def handle(ctx: RestContext, request: Request) -> Response:
    params = request.path_params
    header = request.headers.get("if-match")
    if_match = negotiation.parse_etag(header, "If-Match") if header is not None else None
    stored = await ctx.service.delete(params["type"], params["id"], if_match)
    headers = {"Cache-Control": "no-store"}
    if stored is not None:
        headers["ETag"] = stored.etag
    if negotiation.prefer_return(request.headers.get("prefer")) == "OperationOutcome":
        text = (
            f"Deleted {params['type']}/{params['id']} (version {stored.version_id})"
            if stored is not None
            else f"{params['type']}/{params['id']} did not exist or was already deleted"
        )
        return json_response(jsonformat.dumps(information(text)), request, 200, headers)
    return Response(status_code=204, headers=headers)
