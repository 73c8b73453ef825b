"""The FHIR REST router: https://hl7.org/fhir/R4/http.html#summary (URL shapes).

One explicit table maps (URL shape, HTTP method) to an interaction. Search
(https://hl7.org/fhir/R4/http.html#search) is served by GET on ``[base]``, ``[base]/[type]`` and
the compartment ``[base]/[Compartment]/[id]/[type]``, and by POST on the same URLs followed by
``/_search``. The CapabilityStatement is generated from the same table and the operation
registry, so it never claims what is not served. ``X-HTTP-Method-Override`` and ``_method`` are
deliberately not honoured.

Authorization (SMART App Launch, https://hl7.org/fhir/smart-app-launch/): every request but
``metadata`` is authenticated first (401 without a valid token); the handlers then run over the
request's access-controlled repository (:mod:`healthbridge.security.access`), so no handler
checks permissions itself. Bundle entries answered as requests of their own inherit the
outer request's access context.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from healthbridge.audit.recorder import AuditRecorder
from healthbridge.fhir.errors import FhirError, Forbidden, MethodNotAllowed, NotFound
from healthbridge.rest import auditing
from healthbridge.rest.context import RestContext
from healthbridge.rest.cors import exposing, has_origin, is_preflight, preflight
from healthbridge.rest.errors import error_response
from healthbridge.rest.http import ACCESS, CHARGE, ENTRY, INTERACTION, PREFIX
from healthbridge.rest.interactions import (
    audit_events,
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
from healthbridge.rest.write_hooks import collecting
from healthbridge.security.access import AUDITED, AccessPolicy, is_admin, may_audit
from healthbridge.security.context import MEMO_SIZE, UNRESTRICTED, AccessContext, Authenticator
from healthbridge.security.ratelimit import RateLimiter

Handler = Callable[[RestContext, Request], Awaitable[Response]]
AUDIT_SHAPES = frozenset({("type", "GET"), ("type-search", "POST"), ("instance", "GET")})
"""The AuditEvent URLs served from the audit trail (search and read; writes are refused)."""
ADMIN_OPERATIONS = frozenset({"reindex"})
"""Operations that change the server itself: administrators and system-wide backend services
only."""


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


def _authorization(scope: Scope) -> str | None:
    """The ``Authorization`` header, read from the ASGI scope (ASGI header names are lower
    case) without building Starlette's Headers."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


def _negotiate(request: Request) -> None:
    """406 before any work when the client cannot take FHIR JSON."""
    format_param = request.query_params.get("_format") if request.scope["query_string"] else None
    check_format(format_param, request.headers.get("accept"))


class Router:
    """Dispatches FHIR URLs under ``/fhir`` to interactions and operations.

    ``authenticator`` None means ``--no-auth`` development mode: every request runs
    unrestricted. Otherwise ``policy`` wraps the repository per request, and ``limiter``
    charges the token's client for each interaction (429 when its budget is spent).
    ``recorder`` audits every request, whatever its outcome."""

    def __init__(
        self,
        ctx: RestContext,
        operations: OperationRegistry,
        capabilities: Callable[[Request], Awaitable[Response]],
        *,
        authenticator: Authenticator | None = None,
        policy: AccessPolicy | None = None,
        limiter: RateLimiter | None = None,
        recorder: AuditRecorder | None = None,
        websockets: Mapping[str, ASGIApp] | None = None,
    ) -> None:
        self.ctx = ctx
        self.operations = operations
        self.capabilities = capabilities
        self.authenticator = authenticator
        self.policy = policy
        self.limiter = limiter
        """Spends each client's weighted budget (the per-address one is spent before, by the
        rate-limit middleware); bundle entries are paid for by their Bundle."""
        self.recorder = recorder
        """Audits every request (rest/auditing.py); None only in tests of the router."""
        self.websockets = dict(websockets or {})
        """Websocket endpoints by path (features authenticate their own, e.g. the
        subscriptions' websocket channel with its binding tokens)."""
        if authenticator is not None and policy is None:
            raise ValueError("an authenticator needs an access policy to enforce")
        if ctx.bundles is not None:  # bundle entries are answered as requests of their own
            ctx.bundles.dispatch = self.handle

    async def access(self, request: Request) -> AccessContext:
        """The request's access context: the outer request's for a bundle entry, else from
        its bearer token (401 when there is none or it is not valid)."""
        scope = request.scope
        access: AccessContext | None = scope.get(ACCESS)
        if access is None:
            if self.authenticator is None:
                access = UNRESTRICTED
            else:
                access = await self.authenticator.authenticate(_authorization(scope))
            scope[ACCESS] = access
        return access

    def context(self, access: AccessContext, *, bundles: bool = False) -> RestContext:
        """What the handlers of one request use: the service over the repository as
        ``access`` may use it (and, for ``[base]`` requests, the Bundle processor over it)."""
        ctx = self.ctx
        if access.unrestricted or self.policy is None:
            return ctx
        key = ("rest-context", bundles)  # the same for every request of the token: reused
        built = access.memo.get(key)
        if built is not None and built[0] is ctx:
            return built[1]  # type: ignore[no-any-return]
        scoped_ctx = self._scoped(ctx, access, bundles)
        if len(access.memo) < MEMO_SIZE:
            access.memo[key] = (ctx, scoped_ctx)
        return scoped_ctx

    def _scoped(self, ctx: RestContext, access: AccessContext, bundles: bool) -> RestContext:
        assert self.policy is not None
        scoped = ctx.service.using(self.policy.wrap(ctx.service.unrestricted, access), access)
        processor = ctx.bundles.using(scoped) if bundles and ctx.bundles is not None else None
        return RestContext(  # built directly: dataclasses.replace costs more per request
            service=scoped,
            limits=ctx.limits,
            software_version=ctx.software_version,
            search=ctx.search,
            refresh_search=ctx.refresh_search,
            bundles=processor,
            audit=ctx.audit,
            terminology=ctx.terminology,
        )

    async def _dispatch(self, ctx: RestContext, shape: str, request: Request) -> Response:
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
        request.scope[INTERACTION] = interaction.code
        await self._charge(request, interaction.code)
        if (shape, method) in AUDIT_SHAPES and request.scope["path_params"]["type"] == AUDITED:
            return await self._audit_trail(ctx, shape, request)
        return await interaction.handler(ctx, request)

    async def _audit_trail(self, ctx: RestContext, shape: str, request: Request) -> Response:
        """AuditEvents are read from the audit trail itself, by auditors only."""
        if not may_audit(request.scope[ACCESS]):
            raise Forbidden(
                "The audit trail is readable by auditors only (a user with the auditor role, "
                "or a backend service with system/AuditEvent scopes)",
                code="forbidden",
            )
        if shape == "instance":
            return await audit_events.read(ctx, request)
        return await audit_events.search(ctx, request)

    async def _charge(self, request: Request, interaction: str) -> None:
        client = request.scope[ACCESS].client_id
        limiter = self.limiter
        if limiter is None or client is None or request.scope.get(ENTRY):
            return
        if interaction in ("transaction", "batch"):  # by its entries, once the Bundle is read

            async def charge(units: int) -> None:
                await limiter.check_client(client, "transaction", cost=units)

            request.scope[CHARGE] = charge
            return
        await limiter.check_client(client, interaction)

    async def _operation(
        self,
        ctx: RestContext,
        name: str,
        level: Level,
        request: Request,
        resource_type: str | None,
    ) -> Response:
        _negotiate(request)
        if resource_type is not None:
            ctx.service.check_type(resource_type)
        operation = self.operations.resolve(name, level, request.method, resource_type)
        request.scope[INTERACTION] = f"${name}"
        await self._charge(request, f"${name}")
        if name in ADMIN_OPERATIONS and not is_admin(request.scope[ACCESS]):
            raise Forbidden(
                f"${name} is an administrative operation: it needs an admin user or a backend "
                "service granted system/*.cruds",
                code="forbidden",
            )
        return await operation.handler(ctx, request)

    async def handle(self, request: Request) -> Response:
        """Run the request (:meth:`route`) and audit it, whatever its outcome."""
        recorder = self.recorder
        if recorder is None:
            return await self.route(request)
        token = auditing.acting(request)
        try:
            response = await self.route(request)
        except FhirError as exc:
            auditing.record(recorder, request, None, exc)
            raise
        finally:
            auditing.done(token)
        auditing.record(recorder, request, response, None)
        return response

    async def route(self, request: Request) -> Response:
        """Resolve ``[base]/...`` by its path segments and run the interaction or operation."""
        parts = request.scope["path"][len(PREFIX) :].removesuffix("/").split("/")
        params: dict[str, str] = {}
        request.scope["path_params"] = params
        first = parts[0]
        if len(parts) == 1 and first == "metadata":  # public: how to authorize is in it
            if request.method not in ("GET", "HEAD"):
                raise MethodNotAllowed("metadata is read with GET", headers={"Allow": "GET"})
            return await self.capabilities(request)
        ctx = self.context(await self.access(request), bundles=parts == [""])
        if len(parts) == 1:
            if first == "":
                return await self._dispatch(ctx, "system", request)
            if first.startswith("$"):
                return await self._operation(ctx, first[1:], "system", request, None)
            if first == "_history":
                return await self._dispatch(ctx, "system-history", request)
            if first == "_search":
                return await self._dispatch(ctx, "system-search", request)
            params["type"] = first
            return await self._dispatch(ctx, "type", request)
        params["type"] = first
        second = parts[1]
        if len(parts) == 2:
            if second.startswith("$"):
                return await self._operation(ctx, second[1:], "type", request, first)
            if second == "_history":
                return await self._dispatch(ctx, "type-history", request)
            if second == "_search":
                return await self._dispatch(ctx, "type-search", request)
            params["id"] = second
            return await self._dispatch(ctx, "instance", request)
        params["id"] = second
        third = parts[2]
        if len(parts) == 3 and third.startswith("$"):
            return await self._operation(ctx, third[1:], "instance", request, first)
        if len(parts) == 3 and third == "_history":
            return await self._dispatch(ctx, "instance-history", request)
        if len(parts) == 4 and third == "_history":
            params["vid"] = parts[3]
            return await self._dispatch(ctx, "version", request)
        if not third.startswith(("_", "$")) and (len(parts) == 3 or parts[3:] == ["_search"]):
            params["compartment"], params["type"] = first, third
            return await self._dispatch(
                ctx, "compartment" if len(parts) == 3 else "compartment-search", request
            )
        raise NotFound(f"No FHIR endpoint at {request.scope['path']}", code="not-supported")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry for every path under ``/fhir/``: FhirError becomes its OperationOutcome;
        browser apps get CORS (rest/cors.py). Websockets go to their endpoint, if any."""
        if scope["type"] == "websocket":
            endpoint = self.websockets.get(scope["path"])
            if endpoint is None:
                await send({"type": "websocket.close", "code": 1008, "reason": "no endpoint"})
                return
            await endpoint(scope, receive, send)
            return
        if has_origin(scope):
            if is_preflight(scope):
                await preflight(send)
                return
            send = exposing(send)
        request = Request(scope, receive)
        with collecting() as extra:  # headers write hooks hand out (rest/write_hooks.py)
            try:
                response = await self.handle(request)
            except FhirError as exc:
                response = error_response(exc)
        if response.status_code < 300:
            for name, value in extra:
                response.headers.append(name, value)
        await response(scope, receive, send)
