"""The administrators' API: client registration (RFC 7591 https://www.rfc-editor.org/rfc/rfc7591,
``POST /auth/register``; read ``GET`` and disable ``DELETE /auth/register/{client_id}``) and
EHR launch contexts (``POST /auth/launch``, :mod:`.launch`).

Not open dynamic registration: every call needs an access token of this server whose roles
include ``admin`` (for launches also ``ehr``), verified like any FHIR request (401 without
one, 403 without the role). The client secret of a new secret-based client is shown once in the
201 answer and stored only as a digest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from healthbridge.auth.clients import Client, ClientError, ClientStore
from healthbridge.auth.events import AuthEvent, EventSink
from healthbridge.auth.launch import LaunchStore
from healthbridge.auth.patients import PatientDirectory
from healthbridge.auth.tokens import TokenVerifier
from healthbridge.auth.users import ROLE
from healthbridge.fhir.errors import Unauthorized
from healthbridge.security.context import AccessContext

MAX_BODY = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _error(status: int, error: str, description: str, **headers: str) -> Response:
    body = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **headers})


async def _caller(
    verifier: TokenVerifier, request: Request, roles: Collection[str]
) -> AccessContext | Response:
    try:
        access = await verifier.authenticate(request.headers.get("authorization"))
    except Unauthorized as exc:
        return _error(401, "invalid_token", str(exc), **exc.headers)
    if not access.roles & set(roles):
        return _error(403, "insufficient_scope", f"This needs the role {' or '.join(roles)}.")
    return access


async def _json_body(request: Request) -> dict[str, Any] | Response:
    body = await request.body()
    if len(body) > MAX_BODY:
        return _error(413, "invalid_request", "The body is too large.")
    try:
        value = json.loads(body)
    except ValueError:
        return _error(400, "invalid_request", "The body must be a JSON object.")
    if not isinstance(value, dict):
        return _error(400, "invalid_request", "The body must be a JSON object.")
    return value


def client_from_metadata(body: dict[str, Any]) -> Client:
    """A client from RFC 7591 metadata (ClientError when malformed)."""

    def strings(name: str) -> tuple[str, ...]:
        value = body.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ClientError(f"{name} must be a list of strings")
        return tuple(value)

    roles = frozenset(strings("roles"))
    if any(not ROLE.fullmatch(r) for r in roles):
        raise ClientError("roles must be lower-case names")
    method = body.get("token_endpoint_auth_method", "client_secret_basic")
    grants = frozenset(strings("grant_types") or ("authorization_code",))
    jwks = body.get("jwks")
    if jwks is not None and not isinstance(jwks, dict):
        raise ClientError("jwks must be a JSON Web Key Set")
    return Client(
        client_id="",
        name=str(body.get("client_name") or ""),
        auth_method=str(method),
        redirect_uris=strings("redirect_uris"),
        grant_types=grants,
        scope=str(body.get("scope") or ""),
        jwks=jwks,
        jwks_uri=body.get("jwks_uri") if isinstance(body.get("jwks_uri"), str) else None,
        roles=roles,
    )


class AdminApi:
    def __init__(
        self,
        verifier: TokenVerifier,
        clients: ClientStore,
        launches: LaunchStore,
        patients: PatientDirectory,
        events: EventSink,
        fhir_base: str,
    ) -> None:
        self._verifier = verifier
        self._clients = clients
        self._launches = launches
        self._patients = patients
        self._events = events
        self._fhir_base = fhir_base

    async def register(self, request: Request) -> Response:
        access = await _caller(self._verifier, request, ("admin",))
        if isinstance(access, Response):
            return access
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        try:
            client, secret = await self._clients.register(client_from_metadata(body))
        except ClientError as exc:
            return _error(400, "invalid_client_metadata", str(exc))
        await self._events(
            AuthEvent("client-registered", subject=access.subject, client_id=client.client_id)
        )
        answer = {**client.metadata(), "client_id_issued_at": int(time.time())}
        if secret is not None:
            answer.update(client_secret=secret, client_secret_expires_at=0)
        return JSONResponse(answer, status_code=201, headers=NO_STORE)

    async def read(self, request: Request) -> Response:
        access = await _caller(self._verifier, request, ("admin",))
        if isinstance(access, Response):
            return access
        client = await self._clients.get(request.path_params["client_id"])
        if client is None:
            return _error(404, "invalid_client", "There is no such client.")
        return JSONResponse(client.metadata(), headers=NO_STORE)

    async def disable(self, request: Request) -> Response:
        access = await _caller(self._verifier, request, ("admin",))
        if isinstance(access, Response):
            return access
        try:
            await self._clients.update(request.path_params["client_id"], disabled=True)
        except ClientError:
            return _error(404, "invalid_client", "There is no such client.")
        return Response(status_code=204, headers=NO_STORE)

    async def launch(self, request: Request) -> Response:
        access = await _caller(self._verifier, request, ("admin", "ehr"))
        if isinstance(access, Response):
            return access
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        patient, encounter = body.get("patient"), body.get("encounter")
        client_id = body.get("client_id")
        if not isinstance(patient, str) or not await self._patients.exists(patient):
            return _error(400, "invalid_request", "patient must be the id of an existing Patient.")
        if encounter is not None and (
            not isinstance(encounter, str)
            or await self._patients.read("Encounter", encounter) is None
        ):
            return _error(400, "invalid_request", "encounter must be the id of an Encounter.")
        if client_id is not None and (
            not isinstance(client_id, str) or await self._clients.active(client_id) is None
        ):
            return _error(400, "invalid_request", "client_id must name an active client.")
        launch = await self._launches.create(
            patient, encounter, client_id=client_id, created_by=access.subject
        )
        answer = {"launch": launch.launch, "iss": self._fhir_base, "expires_in": 15 * 60}
        return JSONResponse(answer, status_code=201, headers=NO_STORE)
