"""read: ``GET [base]/[type]/[id]`` (https://hl7.org/fhir/R4/http.html#read), with
``If-None-Match`` / ``If-Modified-Since`` (http.html#cread) and ``_summary`` / ``_elements``.

The stored bytes are returned as they are unless a subset is asked for.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.summary import SUMMARY_MODES, select_elements, summarize
from healthbridge.rest import negotiation
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import json_response, version_headers
from healthbridge.store.repository import StoredResource


def subset(ctx: RestContext, stored: StoredResource, request: Request) -> bytes:
    """Apply ``_summary`` / ``_elements`` from the query, or return the stored bytes."""
    if not request.scope["query_string"]:
        return stored.content
    params = request.query_params
    mode = params.get("_summary")
    elements = params.get("_elements")
    if mode is None and elements is None:
        return stored.content
    if mode is not None and mode not in SUMMARY_MODES - {"count"}:
        raise InvalidRequest(
            f"_summary={mode!r} is not one of true, text, data, false",
            code="value",
            expression="_summary",
        )
    definitions = ctx.service.definitions
    mandatory = definitions.mandatory_elements(stored.resource_type)
    resource = jsonformat.loads(stored.content)
    if mode is not None:
        summary = definitions.summary_elements(stored.resource_type)
        resource = summarize(resource, mode, summary, mandatory)
    elif elements is not None:
        resource = select_elements(resource, elements.split(","), mandatory)
    return jsonformat.dumps(resource)


def not_modified(stored: StoredResource, request: Request) -> bool:
    """RFC 9110 13.2.2: If-None-Match wins over If-Modified-Since."""
    none_match = request.headers.get("if-none-match")
    if none_match is not None:
        return negotiation.etag_matches(none_match, stored.version_id)
    since = request.headers.get("if-modified-since")
    if since is not None:
        moment = negotiation.parse_http_date(since)
        return moment is not None and stored.last_updated.replace(microsecond=0) <= moment
    return False


def respond(ctx: RestContext, stored: StoredResource, request: Request) -> Response:
    headers = version_headers(stored)
    if not_modified(stored, request):
        return Response(status_code=304, headers={"Cache-Control": "no-store", **headers})
    return json_response(subset(ctx, stored, request), request, 200, headers)


async def handle(ctx: RestContext, request: Request) -> Response:
    params = request.path_params
    stored = await ctx.service.read(params["type"], params["id"])
    return respond(ctx, stored, request)
