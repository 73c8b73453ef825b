"""Conditional delete: ``DELETE [base]/[type]?[search parameters]``
(https://hl7.org/fhir/R4/http.html#cdelete).

No match: 204, nothing changed. One match: it is deleted (204). Several: 412, unless the
server is configured to delete several (``HEALTHBRIDGE_CONDITIONAL_DELETE_MULTIPLE``), then up
to 100 are deleted together. Criteria with a parameter the server does not know are 400.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.rest.context import RestContext
from healthbridge.rest.http import conditional_criteria


async def handle(ctx: RestContext, request: Request) -> Response:
    resource_type = request.path_params["type"]
    ctx.service.check_type(resource_type)
    criteria = conditional_criteria(request, resource_type, "DELETE")
    await ctx.service.conditional_delete(
        resource_type, criteria, multiple=ctx.limits.conditional_delete_multiple
    )
    return Response(status_code=204, headers={"Cache-Control": "no-store"})
