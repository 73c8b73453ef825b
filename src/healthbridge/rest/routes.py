"""The FHIR REST router: https://hl7.org/fhir/R4/http.html#summary (URL shapes).

One explicit table maps (URL shape, HTTP method) to an interaction. Search
(https://hl7.org/fhir/R4/http.html#search) is served by GET on ``[base]``, ``[base]/[type]`` and
the compartment ``[base]/[Compartment]/[id]/[type]``, and by POST on the same URLs followed by
``/_search``. The CapabilityStatement is generated from the same table and the operation
registry, so it never claims what is not served. ``X-HTTP-Method-Override`` and ``_method`` are
deliberately not honoured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from healthbridge.fhir.errors import FhirError, MethodNotAllowed, NotFound
from healthbridge.rest.context import RestContext
from healthbridge.rest.errors import error_response
from healthbridge.rest.http import PREFIX
from healthbridge.rest.interactions import (
    bundle,
    conditional_delete,
    conditional_update,
    create,
    delete,
    history,
    patch,
    read,
    search,
    update,
    vread,
)
from healthbridge.rest.negotiation import check_format
from healthbridge.rest.operations.registry import Level, OperationRegistry

Handler = Callable[[RestContext, Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Interaction:
    code: str  # CapabilityStatement interaction code
    level: str  # "instance", "type" or "system"
    handler: Handler


# (shape, method) -> interaction. Shapes: "type" = [type], "instance" = [type]/[id],
# "type-history" = [type]/_history, "instance-history" = [type]/[id]/_history,
# "version" = [type]/[id]/_history/[vid], "system-history" = _history, "system" = [base],
# "system-search" = _search, "type-search" = [type]/_search, "compartment" =
# [Compartment]/[id]/[type] and "compartment-search" = [Compartment]/[id]/[type]/_search.
# The "compartment" level is listed with the type's interactions in the CapabilityStatement.
TABLE: dict[tuple[str, str], Interaction] = {
    ("instance", "GET"): Interaction("read", "instance", read.handle),
    ("version", "GET"): Interaction("vread", "instance", vread.handle),
    ("instance", "PUT"): Interaction("update", "instance", update.handle),
    ("instance", "DELETE"): Interaction("delete", "instance", delete.handle),
    ("instance", "PATCH"): Interaction("patch", "instance", patch.handle),
    ("instance-history", "GET"): Interaction("history-instance", "instance", history.handle),
    ("type-history", "GET"): Interaction("history-type", "type", history.handle),
    ("type", "POST"): Interaction("create", "type", create.handle),
    ("type", "PUT"): Interaction("update", "type", conditional_update.handle),
    ("type", "DELETE"): Interaction("delete", "type", conditional_delete.handle),
    ("type", "PATCH"): Interaction("patch", "type", patch.handle_conditional),
    ("system-history", "GET"): Interaction("history-system", "system", history.handle),
    ("type", "GET"): Interaction("search-type", "type", search.handle),
    ("type-search", "POST"): Interaction("search-type", "type", search.handle),
    ("compartment", "GET"): Interaction("search-type", "compartment", search.handle),
    ("compartment-search", "POST"): Interaction("search-type", "compartment", search.handle),
    ("system", "GET"): Interaction("search-system", "system", search.handle),
    ("system", "POST"): Interaction("transaction", "system", bundle.handle),
    ("system-search", "POST"): Interaction("search-system", "system", search.handle),
}


def _negotiate(request: Request) -> None:
    """406 before any work when the client cannot take FHIR JSON."""
    format_param = request.query_params.get("_format") if request.scope["query_string"] else None
    check_format(format_param, request.headers.get("accept"))


class Router:
    """Dispatches FHIR URLs under ``/fhir`` to interactions and operations."""

    def __init__(
        self,
        ctx: RestContext,
        operations: OperationRegistry,
        capabilities: Callable[[Request], Awaitable[Response]],
    ) -> None:
        self.ctx = ctx
        self.operations = operations
        self.capabilities = capabilities
        if ctx.bundles is not None:  # bundle entries are answered as requests of their own
            ctx.bundles.dispatch = self.handle

    async def _dispatch(self, shape: str, request: Request) -> Response:
        _negotiate(request)
        method = "GET" if request.method == "HEAD" else request.method
        interaction = TABLE.get((shape, method))
        if interaction is None:
            allowed = sorted(m for (s, m) in TABLE if s == shape)
            raise MethodNotAllowed(
                f"{request.method} is not supported on this URL; allowed: {', '.join(allowed)}"
                if allowed
                else f"{request.method} is not supported on this URL",
                headers={"Allow": ", ".join(allowed)} if allowed else None,
            )
        return await interaction.handler(self.ctx, request)

    async def _operation(
        self, name: str, level: Level, request: Request, resource_type: str | None
    ) -> Response:
        _negotiate(request)
        if resource_type is not None:
            self.ctx.service.check_type(resource_type)
        operation = self.operations.resolve(name, level, request.method, resource_type)
        return await operation.handler(self.ctx, request)

    async def handle(self, request: Request) -> Response:
        """Resolve ``[base]/...`` by its path segments and run the interaction or operation."""
        parts = request.scope["path"][len(PREFIX) :].removesuffix("/").split("/")
        params: dict[str, str] = {}
        request.scope["path_params"] = params
        first = parts[0]
        if len(parts) == 1:
            if first == "":
                return await self._dispatch("system", request)
            if first == "metadata":
                if request.method not in ("GET", "HEAD"):
                    raise MethodNotAllowed("metadata is read with GET", headers={"Allow": "GET"})
                return await self.capabilities(request)
            if first.startswith("$"):
                return await self._operation(first[1:], "system", request, None)
            if first == "_history":
                return await self._dispatch("system-history", request)
            if first == "_search":
                return await self._dispatch("system-search", request)
            params["type"] = first
            return await self._dispatch("type", request)
        params["type"] = first
        second = parts[1]
        if len(parts) == 2:
            if second.startswith("$"):
                return await self._operation(second[1:], "type", request, first)
            if second == "_history":
                return await self._dispatch("type-history", request)
            if second == "_search":
                return await self._dispatch("type-search", request)
            params["id"] = second
            return await self._dispatch("instance", request)
        params["id"] = second
        third = parts[2]
        if len(parts) == 3 and third.startswith("$"):
            return await self._operation(third[1:], "instance", request, first)
        if len(parts) == 3 and third == "_history":
            return await self._dispatch("instance-history", request)
        if len(parts) == 4 and third == "_history":
            params["vid"] = parts[3]
            return await self._dispatch("version", request)
        if not third.startswith(("_", "$")) and (len(parts) == 3 or parts[3:] == ["_search"]):
            params["compartment"], params["type"] = first, third
            return await self._dispatch(
                "compartment" if len(parts) == 3 else "compartment-search", request
            )
        raise NotFound(f"No FHIR endpoint at {request.scope['path']}", code="not-supported")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry for every path under ``/fhir/``: FhirError becomes its OperationOutcome."""
        request = Request(scope, receive)
        try:
            response = await self.handle(request)
        except FhirError as exc:
            response = error_response(exc)
        await response(scope, receive, send)
