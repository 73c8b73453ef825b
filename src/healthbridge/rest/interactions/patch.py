"""patch: ``PATCH [base]/[type]/[id]`` (https://hl7.org/fhir/R4/http.html#patch).

The body is a JSON Patch (``Content-Type: application/json-patch+json``, RFC 6902) applied to
the current version; ``If-Match`` makes it version-aware (412 on mismatch). The answer is that
of an update (200, honouring ``Prefer: return=``). A malformed patch is 400; a patch that does not
apply, a failed ``test``, or a result that is not a valid resource of the same type and id is
422. FHIRPath Patch (a Parameters body) is not supported yet: 415 names the supported type.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import UnsupportedMediaType
from healthbridge.fhir.patch.json_patch import MEDIA_TYPE
from healthbridge.rest import negotiation
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import read_body, write_response


async def handle(ctx: RestContext, request: Request) -> Response:
    params = request.path_params
    ctx.service.check_type(params["type"])
    ctx.service.check_id(params["id"])
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"PATCH takes a JSON Patch: send Content-Type: {MEDIA_TYPE} "
            "(FHIRPath Patch is not supported yet)"
        )
    header = request.headers.get("if-match")
    if_match = negotiation.parse_etag(header, "If-Match") if header is not None else None
    patch = jsonformat.loads(await read_body(request, ctx.limits))
    stored = await ctx.service.patch(params["type"], params["id"], patch, if_match)
    return write_response(stored, request, ctx.limits, 200, location=False)
