"""Thin Starlette glue shared by the interaction modules: body reading with limits, FHIR
responses built from stored bytes, and the base URL.

https://hl7.org/fhir/R4/http.html#2.21.0.3 (headers), http.html#mime-type, http.html#ops (Prefer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import InvalidRequest, PayloadTooLarge
from healthbridge.fhir.outcome import information
from healthbridge.fhir.types import Resource
from healthbridge.rest import negotiation
from healthbridge.rest.errors import FHIR_JSON
from healthbridge.store.repository import StoredResource

Filter = Callable[[bytes], bytes]
PREFIX = "/fhir/"
BASE_PATH = "/fhir"
"""Where the FHIR API is mounted (every FHIR URL starts with PREFIX, or is BASE_PATH)."""
ACCESS = "healthbridge.access"
"""The ASGI scope key holding the request's :class:`~healthbridge.security.context.AccessContext`
once it is authenticated (set by the router, inherited by bundle entries)."""
INTERACTION = "healthbridge.interaction"
"""The ASGI scope key holding the interaction code (or ``$operation``) a request was routed to."""
ENTRY = "healthbridge.entry"
"""The ASGI scope key marking a Bundle entry answered as a request of its own."""
CHARGE = "healthbridge.charge"
"""The ASGI scope key holding ``async charge(units)``, which spends from the client's rate-limit
budget: set for transaction and batch requests, which are charged by their number of entries
once the Bundle is read (:func:`healthbridge.security.ratelimit.bundle_cost`)."""


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_body_bytes: int
    default_page_size: int
    max_page_size: int
    public_base_url: str | None
    conditional_delete_multiple: bool = False


def base_url(request: Request, limits: HttpLimits) -> str:
    """The FHIR base URL clients use, e.g. ``http://127.0.0.1:8080/fhir``."""
    if limits.public_base_url:
        return limits.public_base_url.rstrip("/")
    scope = request.scope
    host = request.headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}/fhir"


async def read_body(request: Request, limits: HttpLimits) -> bytes:
    """The request body, refusing (413) anything over the limit before it is parsed."""
    declared = request.headers.get("content-length")
    too_big = PayloadTooLarge(
        f"The body is larger than the limit of {limits.max_body_bytes} bytes; "
        "split it or ask the operator to raise HEALTHBRIDGE_MAX_BODY_BYTES"
    )
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("Content-Length is not a number", code="structure")
        if int(declared) > limits.max_body_bytes:
            raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def read_resource(request: Request, limits: HttpLimits) -> Any:
    """Check Content-Type (415), size (413) and JSON well-formedness (400)."""
    negotiation.check_content_type(request.headers.get("content-type"))
    body = await read_body(request, limits)
    if not body.strip():
        raise InvalidRequest("The request body is empty; send a FHIR resource", code="required")
    return jsonformat.loads(body)


def pretty_requested(request: Request) -> bool:
    if not request.scope["query_string"]:
        return False
    return request.query_params.get("_pretty", "").lower() == "true"


class FhirResponse(Response):
    """A FHIR JSON response built straight into ASGI header tuples (Starlette's generic
    header handling is a measurable share of a cached read). PHI is never cached."""

    def __init__(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None):
        self.body = body
        self.status_code = status
        self.background = None
        raw = [
            (b"content-type", _FHIR_JSON_BYTES),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if headers:
            raw.extend(
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
            )
        self.raw_headers = raw


_FHIR_JSON_BYTES = FHIR_JSON.encode()


def json_response(
    body: bytes,
    request: Request,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """A FHIR JSON response; PHI is never cached (``Cache-Control: no-store``)."""
    if pretty_requested(request) and body:
        body = jsonformat.pretty(body)
    return FhirResponse(body, status, headers)


def resource_json(resource: Resource, request: Request, status: int = 200) -> Response:
    return json_response(jsonformat.dumps(resource), request, status)


def version_headers(stored: StoredResource) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": negotiation.http_date(stored.last_updated),
    }


def write_response(
    stored: StoredResource,
    request: Request,
    limits: HttpLimits,
    status: int,
    *,
    location: bool = True,
) -> Response:
    """Answer a create/update honouring ``Prefer: return=``."""
    headers = version_headers(stored)
    if location:
        headers["Location"] = (
            f"{base_url(request, limits)}/{stored.resource_type}/{stored.id}"
            f"/_history/{stored.version_id}"
        )
    mode = negotiation.prefer_return(request.headers.get("prefer"))
    if mode == "minimal":
        return Response(b"", status_code=status, headers={"Cache-Control": "no-store", **headers})
    if mode == "OperationOutcome":
        text = f"{stored.resource_type}/{stored.id} stored as version {stored.version_id}"
        body = jsonformat.dumps(information(text))
        return json_response(body, request, status, headers)
    return json_response(stored.content, request, status, headers)


def conditional_criteria(request: Request, resource_type: str, verb: str) -> str:
    """The search criteria of a conditional ``PUT``/``DELETE [type]?...`` (400 without any)."""
    criteria: str = request.scope["query_string"].decode("latin-1")
    if not criteria:
        raise InvalidRequest(
            f"{verb} needs an id ({resource_type}/[id]) or search criteria ({resource_type}?...)"
        )
    return criteria
