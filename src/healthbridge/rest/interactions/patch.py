"""patch: ``PATCH [base]/[type]/[id]`` and the conditional ``PATCH [base]/[type]?criteria``
(https://hl7.org/fhir/R4/http.html#patch).

The body is one of:

* a JSON Patch (``Content-Type: application/json-patch+json``, RFC 6902), a list of operations;
* a FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html): a ``Parameters`` resource sent as
  FHIR JSON (``application/fhir+json``, or any JSON media type of
  :data:`~healthbridge.rest.negotiation.JSON_TYPES` such as ``application/json``).

Either applies to the current version; ``If-Match`` makes it version-aware (412 on mismatch).
The answer is that of an update (200, honouring ``Prefer: return=``). A malformed patch is 400;
a patch that does not apply, a failed ``test``, or a result that is not a valid resource of the
same type and id is 422. Other media types, and a JSON Patch list sent as FHIR JSON, are 415.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import InvalidRequest, UnsupportedMediaType
from healthbridge.fhir.patch.json_patch import MEDIA_TYPE as JSON_PATCH
from healthbridge.rest import negotiation
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import conditional_criteria, read_body, write_response

_SUPPORTED = (
    f"PATCH takes a JSON Patch (Content-Type: {JSON_PATCH}) or a FHIRPath Patch Parameters "
    "resource (Content-Type: application/fhir+json)"
)


async def handle(ctx: RestContext, request: Request) -> Response:
    params = request.path_params
    ctx.service.check_type(params["type"])
    ctx.service.check_id(params["id"])
    patch, if_match = await _read(ctx, request)
    stored = await ctx.service.patch(params["type"], params["id"], patch, if_match)
    return write_response(stored, request, ctx.limits, 200, location=False)


async def handle_conditional(ctx: RestContext, request: Request) -> Response:
    """``PATCH [type]?criteria`` (http.html#patch, conditional): the one match is patched;
    none is 404, several are 412."""
    resource_type = request.path_params["type"]
    ctx.service.check_type(resource_type)
    criteria = conditional_criteria(request, resource_type, "PATCH")
    patch, if_match = await _read(ctx, request)
    stored = await ctx.service.conditional_patch(resource_type, criteria, patch, if_match)
    return write_response(stored, request, ctx.limits, 200, location=False)


async def _read(ctx: RestContext, request: Request) -> tuple[Any, int | None]:
    media = _media_type(request.headers.get("content-type"))
    header = request.headers.get("if-match")
    if_match = negotiation.parse_etag(header, "If-Match") if header is not None else None
    return _checked(media, jsonformat.loads(await read_body(request, ctx.limits))), if_match


def _media_type(content_type: str | None) -> str:
    """``application/json-patch+json`` or a FHIR JSON media type; anything else is 415."""
    try:
        return negotiation.check_content_type(content_type, extra=frozenset({JSON_PATCH}))
    except UnsupportedMediaType:
        raise UnsupportedMediaType(
            f"{_SUPPORTED}; got {content_type or 'no Content-Type'}"
        ) from None


def _checked(media: str, body: Any) -> Any:
    """The body must be of the kind its media type announces."""
    if media == JSON_PATCH:
        if isinstance(body, dict) and "resourceType" in body:
            raise InvalidRequest(
                "A JSON Patch is a JSON array of operations (RFC 6902); send a FHIRPath Patch "
                "Parameters resource as application/fhir+json",
                code="structure",
            )
        return body  # the JSON Patch code reports any other body that is not a list
    if isinstance(body, list):
        raise UnsupportedMediaType(f"{_SUPPORTED}: a JSON Patch list needs {JSON_PATCH}")
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequest(
            "A FHIR JSON PATCH body must be a Parameters resource (FHIRPath Patch, "
            "https://hl7.org/fhir/R4/fhirpatch.html)",
            code="structure",
        )
    return body
