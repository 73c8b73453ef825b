"""transaction and batch: ``POST [base]`` with a Bundle
(https://hl7.org/fhir/R4/http.html#transaction).

The body is read under the size limit (413 before parsing), processed by
:class:`~healthbridge.rest.bundle.BundleProcessor` and answered with the ``transaction-response``
or ``batch-response`` Bundle (200). A failing transaction is answered with the failing entry's
status and an OperationOutcome naming it; nothing of it was written. Response entries carry the
resource only when ``Prefer: return=representation`` asks for it (http.html#ops).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import MethodNotAllowed
from healthbridge.rest import negotiation
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import CHARGE, base_url, json_response, read_resource
from healthbridge.security.ratelimit import bundle_cost


async def handle(ctx: RestContext, request: Request) -> Response:
    if ctx.bundles is None:
        raise MethodNotAllowed("This server does not process transaction or batch Bundles")
    body = await read_resource(request, ctx.limits)
    charge = request.scope.get(CHARGE)
    if charge is not None:  # the client's budget pays for every entry (429 before any work)
        entries = body.get("entry") if isinstance(body, dict) else None
        await charge(bundle_cost(len(entries) if isinstance(entries, list) else 0))
    prefer = request.headers.get("prefer")
    response = await ctx.bundles.process(
        body,
        base_url=base_url(request, ctx.limits),
        request=request,
        prefer=negotiation.prefer_return(prefer) if prefer else "minimal",
    )
    return json_response(jsonformat.dumps(response), request)
