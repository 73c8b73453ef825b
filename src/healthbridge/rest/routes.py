"""The FHIR REST router: https://hl7.org/fhir/R4/http.html#summary (URL shapes).

One explicit table maps (URL shape, HTTP method) to an interaction. The CapabilityStatement is
generated from the same table and the operation registry, so it never claims what is not served.
``X-HTTP-Method-Override`` and ``_method`` are deliberately not honoured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from healthbridge.fhir.errors import MethodNotAllowed, NotFound
from healthbridge.rest.context import RestContext
from healthbridge.rest.interactions import create, delete, history, read, update, vread
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
# "version" = [type]/[id]/_history/[vid], "system-history" = _history.
TABLE: dict[tuple[str, str], Interaction] = {
    ("instance", "GET"): Interaction("read", "instance", read.handle),
    ("version", "GET"): Interaction("vread", "instance", vread.handle),
    ("instance", "PUT"): Interaction("update", "instance", update.handle),
    ("instance", "DELETE"): Interaction("delete", "instance", delete.handle),
    ("instance-history", "GET"): Interaction("history-instance", "instance", history.handle),
    ("type-history", "GET"): Interaction("history-type", "type", history.handle),
    ("type", "POST"): Interaction("create", "type", create.handle),
    ("system-history", "GET"): Interaction("history-system", "system", history.handle),
}


def _negotiate(request: Request) -> None:
    """406 before any work when the client cannot take FHIR JSON."""
    format_param = request.query_params.get("_format") if request.scope["query_string"] else None
    check_format(format_param, request.headers.get("accept"))


class Router:
    """Dispatches FHIR URLs under ``/fhir`` to interactions and operations."""

    def __init__(self, ctx: RestContext, operations: OperationRegistry) -> None:
        self.ctx = ctx
        self.operations = operations

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

    async def one(self, request: Request) -> Response:
        first: str = request.path_params["type"]
        if first.startswith("$"):
            request.path_params.pop("type")
            return await self._operation(first[1:], "system", request, None)
        if first == "_history":
            request.path_params.pop("type")
            return await self._dispatch("system-history", request)
        return await self._dispatch("type", request)

    async def two(self, request: Request) -> Response:
        second: str = request.path_params["id"]
        if second.startswith("$"):
            request.path_params.pop("id")
            return await self._operation(second[1:], "type", request, request.path_params["type"])
        if second == "_history":
            request.path_params.pop("id")
            return await self._dispatch("type-history", request)
        return await self._dispatch("instance", request)

    async def three(self, request: Request) -> Response:
        third: str = request.path_params.pop("third")
        if third.startswith("$"):
            resource_type = request.path_params["type"]
            return await self._operation(third[1:], "instance", request, resource_type)
        if third == "_history":
            return await self._dispatch("instance-history", request)
        raise NotFound(f"No FHIR endpoint at {request.url.path}", code="not-supported")

    async def four(self, request: Request) -> Response:
        if request.path_params.pop("third") != "_history":
            raise NotFound(f"No FHIR endpoint at {request.url.path}", code="not-supported")
        return await self._dispatch("version", request)

    def routes(self) -> list[Route]:
        methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
        return [
            Route("/fhir/{type}", self.one, methods=methods),
            Route("/fhir/{type}/{id}", self.two, methods=methods),
            Route("/fhir/{type}/{id}/{third}", self.three, methods=methods),
            Route("/fhir/{type}/{id}/{third}/{vid}", self.four, methods=methods),
        ]
